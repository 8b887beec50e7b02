"""The main job: the committed pruned int8 digits CNN (``sim/cnn.py``) run layer by layer
through the RTL engine in simulation, every layer checked bit-exact against the golden
model, with accuracy against the float model and per-layer densities, cycles, utilization
and speedup against a dense engine with the same multipliers."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..sim.cnn import LAYERS, float_forward, int8_forward, layer_job, load_network
from ..sim.config import Config
from ..sim.conv import fold_kernel
from .layer import LayerSpec, run_layers
from .progress import Progress

__all__ = ["cnn_demo"]


def cnn_demo(cfg: Config, sim: str = "verilator", images: int = 20, batch: int = 10,
             seed: int = 2026, network: str | None = None, fold: bool = True,
             json_path: str | Path | None = None) -> int:
    """Run ``images`` test images through the RTL (``batch`` images per simulation) and
    report. Returns 0 when every layer of every image matched the golden model.

    ``json_path``: also write the per-layer figures and accuracies as JSON (the data of
    ``docs/cnn.md``'s generated table, ``docs/results/cnn.json``).

    ``fold``: run a convolution with fewer input channels than the join width (conv1: one
    channel) as the equivalent 1x1 convolution on its im2col view (``sim.conv.fold_kernel``),
    so that a chunk carries the whole 3x3 patch instead of one channel."""
    from ..sim.cnn import DEFAULT_PATH, digits_split

    if images < 1:
        raise ValueError(f"images = {images}: must be at least 1")
    if batch < 1:
        raise ValueError(f"batch = {batch}: must be at least 1")
    t_start = time.time()
    net = load_network(network or DEFAULT_PATH)
    X, y = digits_split(net)
    n = min(images, len(y))
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(y), size=n, replace=False))
    mult = cfg.engine_multipliers
    print(f"doublesparse demo: pruned int8 CNN on scikit-learn digits "
          f"({len(y)} test images), {n} of them through the RTL engine under {sim} "
          f"(test images picked with seed {seed}); config {cfg.pes} PEs x "
          f"1 multiplier each, S = {cfg.scan_width}")
    for i, L in enumerate(LAYERS):
        w = net.qweights[i]
        print(f"  {L['name']:5} {L['C']:3d} -> {L['K']:3d}, {L['R']}x{L['S']} stride "
              f"{L['stride']} pad {L['pad']}, weight density "
              f"{np.count_nonzero(w) / w.size:.3f} ({np.count_nonzero(w)} of {w.size})"
              + (", raw int32 out" if L["raw"] else ", requantized + ReLU to int8"))
    zeros = sum(int(w.size - np.count_nonzero(w)) for w in net.qweights)
    total = sum(int(w.size) for w in net.qweights)
    print(f"  weights zero overall: {zeros / total:.3f}\n")

    # reference accuracies over the whole test split (no RTL)
    float_pred = float_forward(net, X.astype(np.float32) / 16).argmax(1)
    gold = [int8_forward(net, X[j]) for j in range(len(y))]
    gold_pred = np.array([g[0].argmax() for g in gold])
    acc_f, acc_q = float((float_pred == y).mean()), float((gold_pred == y).mean())
    print(f"test split, all {len(y)} images: float model {100 * acc_f:.2f}%, int8 golden "
          f"model {100 * acc_q:.2f}% ({100 * (acc_q - acc_f):+.2f} points)")
    from ..tb.runner import build

    t_build = time.time()
    build("engine", cfg, sim)
    t_build = time.time() - t_build
    if t_build > 2:
        print(f"built the engine's {sim} model in {t_build:.0f} s (reused by later runs)")

    # layer by layer through the RTL: each layer's input is the RTL's output of the layer
    # before, so the whole network runs on the hardware; each output is checked
    batches = [list(pick[k:k + batch]) for k in range(0, n, batch)]
    folded = [fold and not L["raw"] and L["C"] < cfg.scan_width for L in LAYERS]
    for L, f in zip(LAYERS, folded, strict=True):
        if f:
            print(f"{L['name']} has {L['C']} input channel(s) < S = {cfg.scan_width}: it runs "
                  f"as the equivalent 1x1 convolution on its im2col view "
                  f"({L['C'] * L['R'] * L['S']} channels)")
    bar = Progress(len(LAYERS) * len(batches), "RTL")
    acts = {int(j): None for j in pick}
    per_layer = []
    failures = []
    bad_runs = 0
    t_rtl = time.time()
    for i, L in enumerate(LAYERS):
        st = {"cycles": 0, "macs": 0, "dense_cycles": 0, "model": 0, "d_a": [], "runs": 0}
        for b in batches:
            specs, inputs = [], []
            for j in b:
                a_in = gold[j][1][0] if i == 0 else acts[int(j)]
                inputs.append(a_in)
                job = layer_job(net, i, a_in)
                if folded[i]:
                    job["w"], job["a"] = fold_kernel(job["w"], job["a"], job["stride"],
                                                     job["pad"])
                    job["stride"], job["pad"] = 1, 0
                specs.append(LayerSpec(**job))
            runs = run_layers(specs, cfg, sim=sim)
            for j, a_in, run in zip(b, inputs, runs, strict=True):
                s = run.stats
                if run.error or not s.get("match"):
                    failures.append(_mismatch(L["name"], int(j), run))
                    bad_runs += 1
                    acts[int(j)] = run.ref          # carry on with the golden values
                else:
                    acts[int(j)] = run.y
                # the chained RTL input must also equal the golden model's own layer input
                if i > 0 and not np.array_equal(np.asarray(a_in).reshape(gold[j][1][i].shape),
                                                gold[j][1][i]):
                    failures.append(f"{L['name']} image {j}: input differs from golden")
                if run.error == 0:
                    st["cycles"] += s["cycles"]
                    st["macs"] += s["effectual_macs"]
                    st["dense_cycles"] += s["dense_cycles"]
                    st["model"] += s["predicted_cycles"]
                st["d_a"].append(s["d_a"])
                st["runs"] += 1
            bar.step(f"{L['name']}, images {b[0]}..{b[-1]}")
        per_layer.append(st)
    t_rtl = time.time() - t_rtl

    rtl_pred = np.array([int(np.argmax(acts[int(j)].reshape(-1) * net.fc_scale))
                         for j in pick])
    same = int((rtl_pred == gold_pred[pick]).sum())
    acc_r = float((rtl_pred == y[pick]).mean())
    acc_fs = float((float_pred[pick] == y[pick]).mean())
    print(f"\nper layer over the {n} simulated images (cycles = engine CYCLES register, "
          f"start to done; dense = a dense engine with the same {mult} multipliers):")
    hdr = (f"{'layer':6} {'d_w':>6} {'d_a':>6} {'cycles/img':>10} {'model':>8} "
           f"{'eff. MACs/img':>13} {'util':>5} {'dense cyc/img':>13} {'speedup':>8} "
           f"{'bound':>6}")
    print(hdr)
    print("-" * len(hdr))
    tot_c = tot_d = 0
    layer_rows = []
    for i, (L, st) in enumerate(zip(LAYERS, per_layer, strict=True)):
        w = net.qweights[i]
        dw = np.count_nonzero(w) / w.size
        da = float(np.mean(st["d_a"]))
        cyc = st["cycles"] / n
        util = st["macs"] / (mult * max(1, st["cycles"]))
        sp = st["dense_cycles"] / max(1, st["cycles"])
        tot_c += st["cycles"]
        tot_d += st["dense_cycles"]
        layer_rows.append({"name": L["name"], "folded": bool(folded[i]), "d_w": float(dw),
                           "d_a": da, "cycles": cyc, "model": st["model"] / n,
                           "macs": st["macs"] / n, "utilization": float(util),
                           "dense_cycles": st["dense_cycles"] / n, "speedup_vs_dense": sp})
        name = L["name"] + ("*" if folded[i] else "")
        print(f"{name:6} {dw:6.3f} {da:6.3f} {cyc:10.1f} {st['model'] / n:8.1f} "
              f"{st['macs'] / n:13.1f} {util:5.2f} {st['dense_cycles'] / n:13.1f} "
              f"{sp:7.2f}x {1 / max(dw * da, 1e-9):5.1f}x")
    print(f"{'total':6} {'':6} {'':6} {tot_c / n:10.1f} {'':8} {'':13} {'':5} "
          f"{tot_d / n:13.1f} {tot_d / max(1, tot_c):7.2f}x")
    if any(folded):
        print("* run as a 1x1 convolution on the im2col view (d_a counts the padding zeros)")
    print(f"\naccuracy on the {n} simulated images: RTL {100 * acc_r:.1f}%, float model "
          f"{100 * acc_fs:.1f}% ({100 * (acc_r - acc_fs):+.1f} points); RTL predictions equal "
          f"the golden model's on {same}/{n}")
    print(f"RTL simulation: {t_rtl:.1f} s for {n} images x {len(LAYERS)} layers = "
          f"{n / t_rtl:.2f} images/s; whole demo {time.time() - t_start:.1f} s"
          + (f" (of which {t_build:.0f} s building the simulator model)" if t_build > 2
             else ""))
    if json_path is not None:
        data = {"sim": sim, "seed": seed, "images": n, "batch": batch,
                "config": {k: getattr(cfg, k) for k in ("pes", "scan_width")},
                "layers": layer_rows,
                "total": {"cycles": tot_c / n, "dense_cycles": tot_d / n,
                          "speedup_vs_dense": tot_d / max(1, tot_c)},
                "accuracy": {"rtl": acc_r, "float": acc_fs, "same_as_golden": same,
                             "test_images": len(y), "float_all": acc_f, "int8_all": acc_q},
                "layer_runs": n * len(LAYERS),
                "bit_exact_runs": n * len(LAYERS) - bad_runs,
                "seconds": {"rtl": t_rtl, "build": t_build}}
        Path(json_path).write_text(json.dumps(data, indent=1) + "\n")
        print(f"wrote {json_path}")
    if failures or same != n:
        for f in failures[:10]:
            print(f"  FAIL {f}")
        print(f"\n{len(failures)} layer runs FAILED")
        return 1
    print(f"\nall {n * len(LAYERS)} layer runs bit-exact with the golden model")
    return 0


def _mismatch(name: str, j: int, run) -> str:
    if run.error:
        return f"{name} image {j}: engine error {run.stats['error_meaning']}"
    diff = np.argwhere(run.y != run.ref)
    pos = [tuple(int(v) for v in d) for d in diff[:5]]
    return (f"{name} image {j}: {len(diff)} outputs differ, first at {pos}: RTL "
            f"{[int(run.y[p]) for p in pos]} golden {[int(run.ref[p]) for p in pos]}")
