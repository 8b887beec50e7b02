"""The main job: the committed pruned int8 digits CNN as a quantized ONNX model
(``sim/digits_cnn.onnx``) through the same import path as ``run-net``
(``sim/onnx_import.py``, ``scripts/run_net.py``): every engine layer through the RTL engine
in simulation, checked bit-exact against the golden model, the outputs against the ONNX
reference evaluator, with accuracy against the float model and per-layer densities,
cycles, utilization and speedup against a dense engine with the same multipliers."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..sim.cnn import DEFAULT_PATH, float_forward, load_network
from ..sim.config import Config
from ..sim.onnx_import import golden_engine, import_model, run_program
from .run_net import print_table, run_net

__all__ = ["cnn_demo", "DEFAULT_ONNX"]

#: The digits CNN as ONNX, written by ``train-digits`` next to its ``.npz``.
DEFAULT_ONNX = DEFAULT_PATH.with_suffix(".onnx")


def cnn_demo(cfg: Config, sim: str = "verilator", images: int = 20, batch: int = 10,
             seed: int = 2026, network: str | None = None, fold: bool = True,
             json_path: str | Path | None = None, model: str | None = None) -> int:
    """Run ``images`` test images through the RTL (``batch`` images per simulation) and
    report. Returns 0 when every engine run matched the golden model and every output is
    within 1 LSB of the ONNX reference with the same class.

    ``network``: the ``.npz`` (test split, float weights, training figures; default the
    committed one); ``model``: its ONNX form (default ``sim/digits_cnn.onnx``), which is
    what runs. ``json_path``: also write the per-layer figures and accuracies (the data of
    ``docs/cnn.md``'s generated table, ``docs/results/cnn.json``). ``fold``: run a
    convolution with fewer input channels than the join width as the equivalent 1x1
    convolution on its im2col view (``sim.conv.fold_kernel``)."""
    from ..sim.cnn import digits_split

    if images < 1:
        raise ValueError(f"images = {images}: must be at least 1")
    if batch < 1:
        raise ValueError(f"batch = {batch}: must be at least 1")
    t_start = time.time()
    net = load_network(network or DEFAULT_PATH)
    model = Path(model or DEFAULT_ONNX)
    prog = import_model(model)
    X, y = digits_split(net)
    n = min(images, len(y))
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(y), size=n, replace=False))
    mult = cfg.engine_multipliers
    print(f"doublesparse demo: pruned int8 CNN on scikit-learn digits ({len(y)} test "
          f"images) imported from {model.name}, {n} of them through the RTL engine under "
          f"{sim} (test images picked with seed {seed}); config {cfg.pes} PEs x 1 "
          f"multiplier each, S = {cfg.scan_width}")
    for L in prog.layers:
        K, C, R, S = L.w.shape
        nz = int(np.count_nonzero(L.w))
        print(f"  {L.name:5} {L.op:4} {C:3d} -> {K:3d}, {R}x{S} stride {L.stride} pad "
              f"{L.pad}, weight density {nz / L.w.size:.3f} ({nz} of {L.w.size})"
              + (", raw int32 out" if L.raw else ", requantized" + (" + ReLU" if L.relu
                                                                    else "") + " to int8"))
    zeros = sum(int(L.w.size - np.count_nonzero(L.w)) for L in prog.layers)
    total = sum(int(L.w.size) for L in prog.layers)
    print(f"  weights zero overall: {zeros / total:.3f}\n")

    # reference accuracies over the whole test split (no RTL)
    xf = X.astype(np.float32) / 16
    float_pred = float_forward(net, xf).argmax(1)
    gold_out, _ = run_program(prog, xf[:, None], golden_engine)
    gold_pred = next(iter(gold_out.values())).argmax(1)
    acc_f, acc_q = float((float_pred == y).mean()), float((gold_pred == y).mean())
    print(f"test split, all {len(y)} images: float model {100 * acc_f:.2f}%, int8 golden "
          f"model of the ONNX import {100 * acc_q:.2f}% ({100 * (acc_q - acc_f):+.2f} "
          f"points)")

    run = run_net(prog, xf[pick][:, None], cfg, sim=sim, batch=batch, fold=fold)
    out_name = prog.outputs[0]
    rtl_pred = run.outputs[out_name].argmax(1)
    same = int((rtl_pred == gold_pred[pick]).sum())
    acc_r = float((rtl_pred == y[pick]).mean())
    acc_fs = float((float_pred[pick] == y[pick]).mean())
    print(f"\nper layer over the {n} simulated images (cycles = engine CYCLES register, "
          f"start to done; dense = a dense engine with the same {mult} multipliers):")
    print_table(run, sim)
    tot_c = sum(r["cycles"] for r in run.layers)
    tot_d = sum(r["dense_cycles"] for r in run.layers)
    print(f"network: {tot_c:.1f} cycles per image, dense {tot_d:.1f}: "
          f"{tot_d / max(1e-9, tot_c):.2f}x")
    fin = run.final[out_name]
    print(f"\naccuracy on the {n} simulated images: RTL {100 * acc_r:.1f}%, float model "
          f"{100 * acc_fs:.1f}% ({100 * (acc_r - acc_fs):+.1f} points); RTL predictions equal "
          f"the golden model's on {same}/{n} and the ONNX reference's on "
          f"{fin['top1_agree']}/{n}")
    t_rtl = run.seconds["engine"]
    print(f"RTL simulation: {t_rtl:.1f} s for {n} images x {len(prog.layers)} layers = "
          f"{n / max(t_rtl, 1e-9):.2f} images/s; whole demo {time.time() - t_start:.1f} s"
          + (f" (of which {run.seconds['build']:.0f} s building the simulator model)"
             if run.seconds["build"] > 2 else ""))
    runs = n * len(prog.layers)
    bad_runs = len(run.failures)
    if json_path is not None:
        rows = [{"name": r["name"], "folded": r["folded"], "d_w": r["d_w"], "d_a": r["d_a"],
                 "cycles": r["cycles"], "model": r["predicted_cycles"],
                 "macs": r["effectual_macs"], "utilization": r["utilization"],
                 "dense_cycles": r["dense_cycles"], "speedup_vs_dense": r["speedup_vs_dense"],
                 "max_lsb_diff_vs_onnx": r["max_lsb_diff_vs_onnx"]} for r in run.layers]
        data = {"sim": sim, "seed": seed, "images": n, "batch": batch,
                "model": model.name,
                "config": {k: getattr(cfg, k) for k in ("pes", "scan_width")},
                "layers": rows,
                "total": {"cycles": tot_c, "dense_cycles": tot_d,
                          "speedup_vs_dense": tot_d / max(1e-9, tot_c)},
                "accuracy": {"rtl": acc_r, "float": acc_fs, "same_as_golden": same,
                             "same_as_onnx": fin["top1_agree"],
                             "test_images": len(y), "float_all": acc_f, "int8_all": acc_q},
                "onnx": {"max_lsb_diff": fin["max_lsb_diff"],
                         "one_lsb_diffs": fin["one_lsb_diffs"],
                         "over_one_lsb": fin["over_one_lsb"], "positions": fin["positions"]},
                "layer_runs": runs, "bit_exact_runs": runs - bad_runs,
                "seconds": {"rtl": t_rtl, "build": run.seconds["build"]}}
        Path(json_path).write_text(json.dumps(data, indent=1) + "\n")
        print(f"wrote {json_path}")
    ok = not run.failures and same == n and fin["over_one_lsb"] == 0 and fin[
        "top1_agree"] == n
    if not ok:
        for f in run.failures[:10]:
            print(f"  FAIL {f}")
        print(f"\n{bad_runs} layer runs FAILED; outputs beyond 1 LSB of the ONNX reference: "
              f"{fin['over_one_lsb']}; top-1 same as the reference on {fin['top1_agree']}/{n}")
        return 1
    print(f"\nall {runs} layer runs bit-exact with the golden model; outputs within "
          f"{fin['max_lsb_diff']:.2f} LSB of the ONNX reference")
    return 0
