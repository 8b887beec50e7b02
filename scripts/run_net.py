"""A quantized ONNX model through the engine: ``doublesparse run-net``.

The model is imported (``sim/onnx_import.py``); every engine layer runs through the RTL in
simulation (``batch`` images per simulator run), each image's result checked bit-exact
against the golden model, and its output feeds the next step, so the whole network runs
on the hardware; host steps run in float32 as the ONNX reference does. Every engine
layer's output and the model's outputs are compared with ``onnx.reference``'s
``ReferenceEvaluator`` on the same model and input, in output LSBs (an int8 tensor's LSB
is 1; a raw layer's is ``s_in * s_w[k]``). With ``sim = "none"`` the golden model stands
in for the RTL (no cycles, only the performance model's prediction).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..sim.config import Config
from ..sim.conv import LayerError, fold_kernel, make_job
from ..sim.engine_model import engine_cycles
from ..sim.onnx_import import (
    EngineLayer,
    OnnxImportError,
    Program,
    golden_engine,
    import_model,
    run_program,
)
from .layer import LayerSpec, run_layers
from .progress import Progress

__all__ = ["NetRun", "run_net", "reference_outputs", "lsb_diff", "print_table", "should_fold"]


def should_fold(w_shape: tuple[int, ...], cfg: Config) -> bool:
    """Whether a convolution runs folded (``sim.conv.fold_kernel``): fewer input channels
    than the scan width and a kernel larger than 1x1."""
    return w_shape[1] < cfg.scan_width and w_shape[2] * w_shape[3] > 1


@dataclass
class NetRun:
    """What :func:`run_net` measured: the model's outputs, per-layer figures, the
    comparison with the ONNX reference and every RTL-vs-golden mismatch."""

    outputs: dict[str, np.ndarray]
    layers: list[dict]
    final: dict
    failures: list[str] = field(default_factory=list)
    seconds: dict = field(default_factory=dict)

    @property
    def bit_exact(self) -> bool:
        return not self.failures


def reference_outputs(prog: Program, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every tensor of the model as ``onnx.reference.ReferenceEvaluator`` computes it."""
    from onnx.reference import ReferenceEvaluator

    x = np.asarray(x, np.float32)
    if x.ndim == len(prog.input_shape) - 1:
        x = x[None]
    ref = ReferenceEvaluator(prog.model)
    return ref.run(None, {prog.input_name: x}, intermediate=True)


def lsb_diff(got: np.ndarray, want: np.ndarray, lsb) -> np.ndarray:
    """|got - want| in units of ``lsb`` (a scalar, or per channel along axis 1)."""
    lsb = np.asarray(lsb, np.float64)
    if lsb.ndim == 1 and got.ndim >= 2 and lsb.size == got.shape[1]:
        lsb = lsb.reshape((1, -1) + (1,) * (got.ndim - 2))
    elif lsb.size != 1:
        lsb = np.float64(np.min(lsb))
    d = np.abs(got.astype(np.float64) - np.asarray(want).astype(np.float64))
    return d / lsb


class _RtlEngine:
    """The engine callback of :func:`run_program`: the RTL (or the golden model for
    ``sim == "none"``), with per-layer figures."""

    def __init__(self, cfg: Config, sim: str, batch: int, fold: bool, bar: Progress | None):
        self.cfg, self.sim, self.batch, self.fold, self.bar = cfg, sim, batch, fold, bar
        self.stats: dict[str, dict] = {}
        self.failures: list[str] = []

    def spec(self, layer: EngineLayer, a: np.ndarray) -> tuple[LayerSpec, bool]:
        w, stride, pad = layer.w, layer.stride, layer.pad
        folded = self.fold and should_fold(w.shape, self.cfg)
        if folded:
            w, a = fold_kernel(w, a, stride, pad)
            stride, pad = 1, 0
        return LayerSpec(w, a, stride, pad, layer.requant, layer.relu, bias=layer.bias), folded

    def __call__(self, layer: EngineLayer, acts: list[np.ndarray]) -> list[np.ndarray]:
        specs = []
        folded = False
        for a in acts:
            s, folded = self.spec(layer, a)
            specs.append(s)
        st = {"cycles": 0, "predicted_cycles": 0, "macs": 0, "dense_cycles": 0,
              "d_a": [], "bit_exact": True, "folded": folded, "images": len(acts)}
        mult = self.cfg.engine_multipliers
        outs: list[np.ndarray] = []
        try:
            for k in range(0, len(specs), self.batch):
                chunk = specs[k:k + self.batch]
                if self.sim == "none":
                    for s, a in zip(chunk, acts[k:k + self.batch], strict=True):
                        job = make_job(s.w, s.a, self.cfg, s.stride, s.pad, s.requant, s.relu,
                                       bias=s.bias)
                        st["predicted_cycles"] += engine_cycles(job, self.cfg)
                        st["d_a"].append(float(np.count_nonzero(s.a) / s.a.size))
                        L = job.layer
                        st["dense_cycles"] += -(-L.K * L.C * L.R * L.S * L.Ho * L.Wo // mult)
                        outs.append(layer.golden(a))
                else:
                    for j, run in enumerate(run_layers(chunk, self.cfg, sim=self.sim)):
                        r = run.stats
                        st["d_a"].append(r["d_a"])
                        img = k + j
                        if run.error:
                            self.failures.append(f"{layer.name} image {img}: engine error "
                                                 f"{r['error_meaning']}")
                            st["bit_exact"] = False
                            outs.append(run.ref)
                            continue
                        if not r["match"]:
                            bad = np.argwhere(run.y != run.ref)
                            p = tuple(int(v) for v in bad[0])
                            self.failures.append(
                                f"{layer.name} image {img}: {len(bad)} outputs differ from "
                                f"the golden model, first at {p}: RTL {run.y[p]} golden "
                                f"{run.ref[p]}")
                            st["bit_exact"] = False
                        st["cycles"] += r["cycles"]
                        st["predicted_cycles"] += r["predicted_cycles"]
                        st["macs"] += r["effectual_macs"]
                        st["dense_cycles"] += r["dense_cycles"]
                        outs.append(run.y)
                if self.bar:
                    self.bar.step(f"{layer.name}, images {k}..{k + len(chunk) - 1}")
        except LayerError as e:
            raise OnnxImportError(f"{layer.op} '{layer.name}': {e}") from None
        self.stats[layer.name] = st
        return outs


def run_net(model, x: np.ndarray, cfg: Config, sim: str = "verilator", batch: int = 10,
            fold: bool = True, progress: bool = True) -> NetRun:
    """Import ``model`` (a path, a ModelProto or a :class:`Program`), run it on ``x``
    (float, with or without the batch axis) with every engine layer through the RTL under
    ``sim`` (or ``"none"``: the golden model), compare with the ONNX reference. Raises
    :class:`~doublesparse.sim.onnx_import.OnnxImportError` for a model or input it cannot
    run (naming the node)."""
    if batch < 1:
        raise ValueError(f"batch = {batch}: must be at least 1")
    t0 = time.time()
    prog = model if isinstance(model, Program) else import_model(model)
    x = np.asarray(x, np.float32)
    N = x.shape[0] if x.ndim == len(prog.input_shape) else 1
    chunks = -(-N // batch)
    if sim != "none":
        from ..tb.runner import build

        build("engine", cfg, sim)
    bar = Progress(len(prog.layers) * chunks, "RTL" if sim != "none" else "golden") \
        if progress else None
    t1 = time.time()
    eng = _RtlEngine(cfg, sim, batch, fold, bar)
    outputs, env = run_program(prog, x, eng)
    t2 = time.time()
    ref = reference_outputs(prog, x)
    t3 = time.time()
    gold_out, gold_env = run_program(prog, x, golden_engine)
    layers = []
    for L in prog.layers:
        st = eng.stats[L.name]
        n = max(1, st["images"])
        got = env[L.out]
        d = (np.abs(got.astype(np.int64) - ref[L.out].astype(np.int64)) if not L.raw
             else lsb_diff(got, ref[L.out], prog.lsb[L.out]))
        a = env[L.inp]
        K, C, R, S = L.w.shape
        shape = {"K": K, "C": C, "R": R, "S": S, "in": list(a.shape[1:]),
                 "out": list(got.shape[1:]), "stride": L.stride, "pad": L.pad}
        cyc = st["cycles"] / n if sim != "none" else None
        util = (st["macs"] / (cfg.engine_multipliers * st["cycles"])
                if st["cycles"] else None)
        layers.append({
            "name": L.name, "op": L.op, "shape": shape,
            "mode": "raw int32" if L.raw else ("int8 + ReLU" if L.relu else "int8"),
            "bias": L.bias is not None, "folded": st["folded"],
            "d_w": float(np.count_nonzero(L.w) / L.w.size),
            "d_a": float(np.mean(st["d_a"])) if st["d_a"] else 0.0,
            "cycles": cyc, "predicted_cycles": st["predicted_cycles"] / n,
            "effectual_macs": st["macs"] / n if sim != "none" else None,
            "dense_cycles": st["dense_cycles"] / n,
            "utilization": util,
            "speedup_vs_dense": (st["dense_cycles"] / st["cycles"] if st["cycles"]
                                 else st["dense_cycles"] / max(1, st["predicted_cycles"])),
            "max_lsb_diff_vs_onnx": float(d.max()) if d.size else 0.0,
            "lsb_diffs_vs_onnx": int(np.count_nonzero(d > 0.5)),
            "bit_exact_vs_golden": bool(st["bit_exact"] and sim != "none"
                                        and np.array_equal(got, gold_env[L.out])),
        })
    final = {}
    for o in prog.outputs:
        y, r = outputs[o], np.asarray(ref[o])
        lsb = 1.0 if y.dtype == np.int8 else prog.lsb[o]
        d = lsb_diff(y, r, lsb)
        f = {"shape": list(y.shape), "max_lsb_diff": float(d.max()) if d.size else 0.0,
             "one_lsb_diffs": int(np.count_nonzero((d > 0.5) & (d <= 1.5))),
             "over_one_lsb": int(np.count_nonzero(d > 1.5)), "positions": int(d.size)}
        if y.ndim == 2 and y.shape[1] > 1:
            f["top1"] = y.argmax(1).tolist()
            f["top1_reference"] = r.argmax(1).tolist()
            f["top1_agree"] = int((y.argmax(1) == r.argmax(1)).sum())
        final[o] = f
    return NetRun(outputs, layers, final, eng.failures,
                  {"build": t1 - t0, "engine": t2 - t1, "reference": t3 - t2,
                   "total": time.time() - t0})


def print_table(run: NetRun, sim: str, out=None) -> None:
    import sys

    out = out or sys.stdout
    hdr = (f"{'layer':10} {'op':5} {'K x C x RxS':14} {'in':>10} {'d_w':>5} {'d_a':>5} "
           f"{'cycles':>9} {'model':>9} {'util':>5} {'speedup':>8} {'ONNX LSB':>8} "
           f"{'golden':>7}")
    print(hdr, file=out)
    print("-" * len(hdr), file=out)
    for r in run.layers:
        s = r["shape"]
        kc = f"{s['K']}x{s['C']}x{s['R']}x{s['S']}"
        cyc = "-" if r["cycles"] is None else f"{r['cycles']:.0f}"
        util = "-" if r["utilization"] is None else f"{r['utilization']:.2f}"
        gold = "-" if sim == "none" else ("exact" if r["bit_exact_vs_golden"] else "DIFF")
        name = r["name"] + ("*" if r["folded"] else "")
        print(f"{name[:10]:10} {r['op']:5} {kc:14} {'x'.join(map(str, r['shape']['in'])):>10} "
              f"{r['d_w']:5.2f} {r['d_a']:5.2f} {cyc:>9} {r['predicted_cycles']:9.0f} "
              f"{util:>5} {r['speedup_vs_dense']:7.2f}x {r['max_lsb_diff_vs_onnx']:8.2f} "
              f"{gold:>7}", file=out)
    if any(r["folded"] for r in run.layers):
        print("* run as a 1x1 convolution on the im2col view (fewer input channels than the "
              "join width)", file=out)
    print("cycles and model: per image; ONNX LSB: largest difference from the ONNX "
          "reference evaluator, in output LSBs", file=out)
    for name, f in run.final.items():
        msg = (f"output '{name}' {tuple(f['shape'])}: largest difference from the ONNX "
               f"reference {f['max_lsb_diff']:.2f} LSB; {f['one_lsb_diffs']} of "
               f"{f['positions']} positions differ by 1 LSB, {f['over_one_lsb']} by more")
        if "top1_agree" in f:
            msg += (f"; top-1 class the same on {f['top1_agree']} of {len(f['top1'])} "
                    f"inputs")
        print(msg, file=out)
