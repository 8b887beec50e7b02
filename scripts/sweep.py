"""``doublesparse bench sweep``: the engine against the bound and against dense baselines.

On one fixed layer, for a grid of (d_w, d_a), the same RTL engine runs three ways under
Verilator:

- ``double``: weights and activations both compressed (zeros skipped on both sides);
- ``weight-only``: activations stored with every mask bit set (zeros kept as values), so
  only zero weights are skipped: a one-sided sparse engine;
- ``dense``: both operands stored with every mask bit set: a dense engine with the same
  multipliers.

Each is checked bit-exact against the golden model. The bound is
``ceil(nonzero pairs / multipliers)``. A larger grid comes from the performance model
(``sim/engine_model.py``) and is marked ``source = model``. Results: a CSV per source, PNG
plots (speedup against 1/(d_w d_a) with the ideal line; utilization heatmaps) and a Markdown
table written between markers into ``docs/performance.md``.
"""

from __future__ import annotations

import contextlib
import csv
import json
import time
from pathlib import Path

import numpy as np

from ..sim.config import Config
from ..sim.conv import Layer, make_job
from ..sim.engine_model import engine_cycles
from ..tb.stimulus import random_tensor
from .cluster import Task, TaskCache, dask_client, run_tasks
from .docgen import begin_marker, end_marker, write_section
from .layer import LayerSpec, effectual_pairs, run_layers
from .progress import Progress

__all__ = ["SWEEP_LAYER", "RTL_GRID", "ANCHORS", "sweep", "model_point"]


def describe(layer: Layer) -> str:
    return (f"K = {layer.K}, C = {layer.C}, {layer.R}x{layer.S}, {layer.H}x{layer.W} pixels, "
            f"stride {layer.stride}, pad {layer.pad}")


def _layer_dict(layer: Layer) -> dict:
    return {k: getattr(layer, k) for k in ("K", "C", "R", "S", "H", "W", "stride", "pad")}


SWEEP_LAYER = Layer(K=32, C=32, R=3, S=3, H=8, W=8, stride=1, pad=1)
RTL_GRID = ((0.05, 0.1, 0.25, 0.5, 1.0), (0.1, 0.3, 0.5, 0.7, 1.0))
QUICK_GRID = ((0.1, 1.0), (0.3, 1.0))
MODEL_STEPS = np.round(np.arange(0.05, 1.0001, 0.05), 2)

# Published results placed beside ours. The papers report averages over whole networks, not
# one density point: the densities below are the ones we run at, stated with the reason.
ANCHORS = [
    {"design": "SCNN (ISCA 2017)", "published": "2.7x vs dense (network average)",
     "vs": "dense", "d_w": 0.35, "d_a": 0.45,
     "why": "pruned ImageNet CNNs of the time: about a third of the weights and somewhat "
            "under half of the activations nonzero (our assumption)"},
    {"design": "SparTen (MICRO 2019)", "published": "4.7x vs dense, 1.8x vs one-sided",
     "vs": "dense", "d_w": 0.35, "d_a": 0.45, "why": "same networks as SCNN (assumption)"},
    {"design": "Moffett ANTOUM (claim)", "published": "32x vs dense-dense, 8x vs dense-sparse",
     "vs": "dense", "d_w": 0.25, "d_a": 0.125,
     "why": "the point where the bound is exactly 32x vs dense and 8x vs a weight-only "
            "sparse engine (1/(d_w d_a) = 32, 1/d_a = 8)"},
    {"design": "PRODUCT.md example", "published": "bound 33x", "vs": "dense",
     "d_w": 0.10, "d_a": 0.30, "why": "the densities PRODUCT.md quotes"},
]

# scan widths for the model-only design-space table (one multiplier per PE)
DESIGN_SPACE = (16, 32, 64)

MODES = ("double", "weight-only", "dense")
_MODE_FLAGS = {"double": (False, False), "weight-only": (False, True), "dense": (True, True)}


def _operands(layer: Layer, d_w: float, d_a: float, seed: int):
    rng = np.random.default_rng(seed)
    w = random_tensor(rng, (layer.K, layer.C, layer.R, layer.S), d_w)
    a = random_tensor(rng, (layer.C, layer.H, layer.W), d_a)
    return w, a


def _point_seed(seed: int, d_w: float, d_a: float) -> int:
    return seed * 1_000_003 + int(round(d_w * 1000)) * 1009 + int(round(d_a * 1000))


def model_point(layer: Layer, cfg: Config, d_w: float, d_a: float, seed: int,
                modes=MODES) -> dict:
    """Performance-model cycles for one density point (no simulation)."""
    w, a = _operands(layer, d_w, d_a, _point_seed(seed, d_w, d_a))
    row = _base_row(layer, cfg, w, a, d_w, d_a, "model")
    for mode in modes:
        dw_flag, da_flag = _MODE_FLAGS[mode]
        job = make_job(w, a, cfg, layer.stride, layer.pad, dense_weights=dw_flag,
                       dense_acts=da_flag)
        row[f"cycles_{mode}"] = engine_cycles(job, cfg)
    return _finish_row(row, cfg)


def _base_row(layer, cfg, w, a, d_w, d_a, source, pairs: int | None = None) -> dict:
    if pairs is None:
        pairs = effectual_pairs(w, a, layer.stride, layer.pad)
    mult = cfg.engine_multipliers
    return {"source": source, "d_w": d_w, "d_a": d_a,
            "d_w_measured": float(np.count_nonzero(w) / w.size),
            "d_a_measured": float(np.count_nonzero(a) / a.size),
            "nonzero_pairs": pairs, "bound_cycles": max(1, -(-pairs // mult))}


def _finish_row(row: dict, cfg: Config) -> dict:
    mult = cfg.engine_multipliers
    dm = row["d_w_measured"] * row["d_a_measured"]
    row["ideal_speedup"] = 1 / dm if dm > 0 else float("inf")
    if "cycles_double" not in row:
        return row
    if "cycles_dense" in row:
        row["speedup_vs_dense"] = row["cycles_dense"] / row["cycles_double"]
    if "cycles_weight-only" in row:
        row["speedup_vs_weight_only"] = row["cycles_weight-only"] / row["cycles_double"]
    row["utilization"] = row["nonzero_pairs"] / (mult * row["cycles_double"])
    row["cycles_over_bound"] = row["cycles_double"] / row["bound_cycles"]
    return row


def _save_operands(layer: Layer, d_w: float, d_a: float, seed: int, save: Path) -> None:
    """A point's W and A (.npy) in ``save``, so that its row can be re-run with
    ``run-layer``."""
    w, a = _operands(layer, d_w, d_a, _point_seed(seed, d_w, d_a))
    save.mkdir(parents=True, exist_ok=True)
    np.save(save / f"w_{d_w:g}_{d_a:g}.npy", w)
    np.save(save / f"a_{d_w:g}_{d_a:g}.npy", a)


def rtl_point_task(p: dict) -> dict:
    """One RTL point as a task (``scripts/cluster.py``): everything in the payload."""
    return _rtl_point(Layer(**p["layer"]), Config.from_dict(p["config"]), p["d_w"], p["d_a"],
                      p["seed"], p["sim"])


def _rtl_point(layer: Layer, cfg: Config, d_w: float, d_a: float, seed: int,
               sim: str) -> dict:
    s = _point_seed(seed, d_w, d_a)
    w, a = _operands(layer, d_w, d_a, s)
    specs = [LayerSpec(w, a, layer.stride, layer.pad, dense_weights=_MODE_FLAGS[m][0],
                       dense_acts=_MODE_FLAGS[m][1]) for m in MODES]
    runs = run_layers(specs, cfg, sim=sim)
    row = _base_row(layer, cfg, w, a, d_w, d_a, f"rtl-{sim}",
                    pairs=runs[0].stats.get("nonzero_pairs"))
    row["seed"] = s
    for mode, run in zip(MODES, runs, strict=True):
        st = run.stats
        if run.error or not st.get("match"):
            bad = ("engine error " + st["error_meaning"]) if run.error else "output mismatch"
            raise RuntimeError(f"sweep: d_w={d_w} d_a={d_a} {mode}: {bad} (seed {s})")
        row[f"cycles_{mode}"] = st["cycles"]
        row[f"macs_{mode}"] = st["effectual_macs"]
        row[f"model_{mode}"] = st["predicted_cycles"]
    return _finish_row(row, cfg)


def _write_csv(path: Path, rows: list[dict]) -> None:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with path.open("w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=keys)
        wr.writeheader()
        for r in rows:
            wr.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def _plots(out: Path, rtl: list[dict], model: list[dict], cfg: Config, layer: Layer
           ) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    mi = np.array([r["ideal_speedup"] for r in model])
    ms = np.array([r["speedup_vs_dense"] for r in model])
    ax.scatter(mi, ms, s=8, c="tab:gray", alpha=0.5, label="performance model (grid)")
    ri = np.array([r["ideal_speedup"] for r in rtl])
    rs = np.array([r["speedup_vs_dense"] for r in rtl])
    rw = np.array([r["speedup_vs_weight_only"] for r in rtl])
    ax.scatter(ri, rs, s=30, c="tab:blue", label="RTL: double-sparse vs dense")
    ra = np.array([1 / max(r["d_a_measured"], 1e-9) for r in rtl])
    ax.scatter(ra, rw, s=30, marker="x", c="tab:orange",
               label="RTL: double-sparse vs weight-only sparse (x = 1/d_a, its ideal)")
    top = max(float(mi.max()), float(ri.max()))
    xs = np.linspace(1, top, 200)
    ax.plot(xs, xs, "k--", lw=1, label="ideal 1/(d_w d_a)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("ideal speedup: 1 / (d_w x d_a) vs dense, 1 / d_a vs weight-only")
    ax.set_ylabel("speedup (cycles of baseline / cycles double-sparse)")
    ax.set_title(f"speedup, {cfg.pes} PEs, S = {cfg.scan_width}\n"
                 f"{describe(layer)}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    p = out / "speedup.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    for ax, rows, title in ((axes[0], rtl, "RTL (Verilator)"),
                            (axes[1], model, "performance model")):
        dws = sorted({r["d_w"] for r in rows})
        das = sorted({r["d_a"] for r in rows})
        grid = np.full((len(dws), len(das)), np.nan)
        for r in rows:
            grid[dws.index(r["d_w"]), das.index(r["d_a"])] = r["utilization"]
        im = ax.imshow(grid, origin="lower", vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(das)))
        ax.set_xticklabels([f"{d:g}" for d in das], rotation=90 if len(das) > 8 else 0,
                           fontsize=7)
        ax.set_yticks(range(len(dws)))
        ax.set_yticklabels([f"{d:g}" for d in dws], fontsize=7)
        ax.set_xlabel("activation density d_a")
        ax.set_ylabel("weight density d_w")
        ax.set_title(f"utilization = nonzero pairs / (mult x cycles): {title}", fontsize=9)
        if len(dws) * len(das) <= 36:
            for i in range(len(dws)):
                for j in range(len(das)):
                    if not np.isnan(grid[i, j]):
                        ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center",
                                fontsize=8, color="w" if grid[i, j] < 0.6 else "k")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    p = out / "utilization.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)
    return paths


SWEEP_JSON = "docs/sweep/sweep.json"
BEGIN, END = begin_marker("sweep"), end_marker("sweep")
HEADING = "## Sweep: double-sparse vs weight-only vs dense"


def markdown(data: dict, img_s: str, img_u: str, csv_r: str) -> str:
    """The sweep's section of ``docs/performance.md`` from the data ``sweep`` writes to
    ``sweep.json``; the plots and the CSV are named by the paths given (relative to the
    page)."""
    cfg, layer, sim, seed = data["config"], Layer(**data["layer"]), data["sim"], data["seed"]
    lines = [f"Layer {describe(layer)}; config {cfg['pes']} PEs (one multiplier each), "
             f"S = {cfg.get('scan_width', '?')}; RTL under {sim}, every run checked "
             f"bit-exact against the golden model; seed {seed}. Reproduce: `{data['cmd']}`. "
             f"Cycles are the engine's CYCLES register (start to done); bound = "
             f"ceil(nonzero pairs / multipliers); `model` = performance-model cycles for the "
             f"double-sparse run (worst model error over every RTL run of the sweep: "
             f"{100 * data['worst_model_error']:.1f} %). To re-run a row by hand: "
             f"`doublesparse bench sweep --save-operands OPS` writes each point's "
             f"`w_<d_w>_<d_a>.npy` and `a_<d_w>_<d_a>.npy`, then `doublesparse run-layer "
             f"--weights OPS/w_0.25_0.5.npy --acts OPS/a_0.25_0.5.npy --pad {layer.pad} --raw "
             f"--encoding {{double,weight-only,dense}} --out Y.npy --stats S.json`.", "",
             "| d_w | d_a | nonzero pairs | bound | double | model | weight-only | dense | "
             "cycles/bound | util | vs dense | ideal 1/(d_w d_a) | vs weight-only |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in data["rtl"]:
        lines.append(
            f"| {r['d_w']:g} | {r['d_a']:g} | {r['nonzero_pairs']} | {r['bound_cycles']} | "
            f"{r['cycles_double']} | {r['model_double']} | {r['cycles_weight-only']} | "
            f"{r['cycles_dense']} | {r['cycles_over_bound']:.2f} | {r['utilization']:.2f} | "
            f"{r['speedup_vs_dense']:.2f}x | {r['ideal_speedup']:.1f}x | "
            f"{r['speedup_vs_weight_only']:.2f}x |")
    if data["anchors"]:
        lines += ["", "Beside published results (same layer and engine, RTL under "
                  f"{sim}; the papers give network averages, so the density point we run is "
                  "stated with its reason):", "",
                  "| design | published | our d_w | our d_a | our bound vs dense | "
                  "ours vs dense | ours vs weight-only | why this point |",
                  "|---|---|---:|---:|---:|---:|---:|---|"]
    for a in data["anchors"]:
        r = a["row"]
        lines.append(f"| {a['design']} | {a['published']} | {a['d_w']:g} | {a['d_a']:g} | "
                     f"{r['ideal_speedup']:.1f}x | {r['speedup_vs_dense']:.2f}x | "
                     f"{r['speedup_vs_weight_only']:.2f}x | {a['why']} |")
    design = data.get("design_space")
    if design:
        pts = [(a["d_w"], a["d_a"]) for a in design[0]["points"]]
        lines += ["", "Design space from the performance model (same layer, same operands; "
                  "speedup vs a dense engine with the same multipliers, utilization in "
                  "brackets): a PE joins one S-channel pair a cycle, so where pairs are "
                  "rarer than one in S channels the speedup saturates near S, and the "
                  "broadcast sends one activation chunk a cycle.", "",
                  "| S | " + " | ".join(f"d_w {dw:g}, d_a {da:g}" for dw, da in pts)
                  + " |", "|---:|" + "---:|" * len(pts)]
        for d in design:
            lines.append(f"| {d.get('S', '?')} | " + " | ".join(
                f"{p['speedup_vs_dense']:.2f}x ({p['utilization']:.2f})" for p in d["points"])
                + " |")
    lines += ["", f"![speedup]({img_s})", "", f"![utilization]({img_u})", "",
              f"Full rows: `{csv_r}` (RTL) and the model grid beside it."]
    return "\n".join(lines)


def _rel(p: Path, docs: Path) -> str:
    try:
        return p.resolve().relative_to(docs.parent.resolve()).as_posix()
    except ValueError:
        return str(p)


def _write_docs(docs: Path, data: dict, out: Path) -> None:
    md = markdown(data, _rel(out / "speedup.png", docs), _rel(out / "utilization.png", docs),
                  _rel(out / "sweep_rtl.csv", docs))
    write_section(docs, "sweep", md, heading=HEADING)


def sweep(cfg: Config, sim: str = "verilator", seed: int = 1, quick: bool = False,
          out: Path = Path("docs/sweep"), docs: Path | None = Path("docs/performance.md"),
          layer: Layer = SWEEP_LAYER, model_grid: bool = True,
          grid: tuple | None = None, anchors: list[dict] | None = None,
          save_operands: Path | None = None, local: bool = False,
          scheduler: str | None = None, workers: int | None = None,
          cache: bool = True) -> dict:
    """Run the sweep; returns {"rtl": rows, "model": rows, "anchors": rows, "files": [...]}.

    ``grid``: (d_w values, d_a values) for the RTL (default ``RTL_GRID``, ``QUICK_GRID`` with
    ``quick``); ``anchors``: published points to run as well (default ``ANCHORS``, none with
    ``quick``); ``save_operands``: folder for each point's W and A (.npy) so that a row can
    be re-run with ``doublesparse run-layer --encoding ...``.

    The RTL points run as tasks on Dask distributed (``scripts/cluster.py``): a local
    cluster of ``workers`` processes, or the scheduler at ``scheduler``; ``local`` runs
    them in this process. Finished points are cached by content (``cache``), so a sweep
    started again redoes only the points that had not finished."""
    out.mkdir(parents=True, exist_ok=True)
    grid_w, grid_a = grid or (QUICK_GRID if quick else RTL_GRID)
    points = [(dw, da) for dw in grid_w for da in grid_a]
    if anchors is None:
        anchors = [] if quick else ANCHORS
    anchors = [dict(a) for a in anchors]
    extra = [(a["d_w"], a["d_a"]) for a in anchors if (a["d_w"], a["d_a"]) not in points]
    extra = list(dict.fromkeys(extra))
    print(f"sweep: {describe(layer)}; {cfg.pes} PEs (one multiplier each), "
          f"S = {cfg.scan_width}; RTL under {sim}, seed {seed}")
    print(f"RTL: {len(points)} grid points + {len(extra)} anchor points, each run three ways "
          f"(double-sparse, weight-only, dense) and checked against the golden model")
    t0 = time.time()
    todo = points + extra
    tasks = [Task(f"d_w={dw:g} d_a={da:g}", rtl_point_task,
                  {"layer": _layer_dict(layer), "config": cfg.to_dict(), "d_w": dw, "d_a": da,
                   "seed": seed, "sim": sim}) for dw, da in todo]
    cm = contextlib.nullcontext() if local else dask_client(scheduler, workers)
    with cm as client:
        got = run_tasks(tasks, client, TaskCache(enabled=cache), "RTL sweep")
    rows: dict[tuple[float, float], dict] = dict(zip(todo, got, strict=True))
    if save_operands is not None:
        for dw, da in todo:
            _save_operands(layer, dw, da, seed, save_operands)
    rtl = [rows[p] for p in points]
    hdr = (f"{'d_w':>5} {'d_a':>5} {'pairs':>7} {'bound':>6} {'double':>7} {'model':>7} "
           f"{'w-only':>7} {'dense':>7} {'cyc/bnd':>7} {'util':>5} {'vs dense':>8} "
           f"{'ideal':>6} {'vs w-only':>9}")
    print(hdr)
    for r in rows.values():
        print(f"{r['d_w']:5g} {r['d_a']:5g} {r['nonzero_pairs']:7d} {r['bound_cycles']:6d} "
              f"{r['cycles_double']:7d} {r['model_double']:7d} {r['cycles_weight-only']:7d} "
              f"{r['cycles_dense']:7d} {r['cycles_over_bound']:7.2f} {r['utilization']:5.2f} "
              f"{r['speedup_vs_dense']:7.2f}x {r['ideal_speedup']:5.1f}x "
              f"{r['speedup_vs_weight_only']:8.2f}x")
    worst_model = max(abs(r[f"model_{m}"] / r[f"cycles_{m}"] - 1) for r in rows.values()
                      for m in MODES)
    print(f"RTL part: {time.time() - t0:.0f} s; worst model error over all RTL runs "
          f"{100 * worst_model:.1f}%")
    for a in anchors:
        a["row"] = rows[(a["d_w"], a["d_a"])]
        print(f"{a['design']:24} published {a['published']:40} ours at d_w={a['d_w']:g} "
              f"d_a={a['d_a']:g}: {a['row']['speedup_vs_dense']:.2f}x vs dense, "
              f"{a['row']['speedup_vs_weight_only']:.2f}x vs weight-only "
              f"(bound {a['row']['ideal_speedup']:.1f}x)")

    model: list[dict] = []
    if model_grid:
        steps = MODEL_STEPS[::4] if quick else MODEL_STEPS
        bar = Progress(len(steps) ** 2, "model grid")
        wo_cache: dict[float, int] = {}
        dense_c = None
        for dw in steps:
            for da in steps:
                dw, da = float(dw), float(da)
                r = model_point(layer, cfg, dw, da, seed, modes=("double",))
                if dw not in wo_cache:   # weight-only and dense work do not depend on d_a
                    m = model_point(layer, cfg, dw, da, seed,
                                    modes=("weight-only",) + (("dense",) if dense_c is None
                                                              else ()))
                    wo_cache[dw] = m["cycles_weight-only"]
                    dense_c = m.get("cycles_dense", dense_c)
                r["cycles_weight-only"] = wo_cache[dw]
                r["cycles_dense"] = dense_c
                model.append(_finish_row(r, cfg))
                bar.step()
    design = []
    if model_grid and anchors:
        pts = list(dict.fromkeys((a["d_w"], a["d_a"]) for a in anchors))
        print("design space (performance model): speedup vs dense at the anchor points")
        for SW in DESIGN_SPACE:
            c = cfg.replace(scan_width=SW)
            ps = []
            for dw, da in pts:
                r = model_point(layer, c, dw, da, seed)
                ps.append({"d_w": dw, "d_a": da, "speedup_vs_dense": r["speedup_vs_dense"],
                           "utilization": r["utilization"]})
            design.append({"S": SW, "points": ps})
            print(f"  S = {SW:2d}: " + ", ".join(
                f"({p['d_w']:g}, {p['d_a']:g}) {p['speedup_vs_dense']:.2f}x" for p in ps))
    cmd = "doublesparse bench sweep" + (" --quick" if quick else "") + \
        (f" --seed {seed}" if seed != 1 else "")
    data = {"cmd": cmd, "sim": sim, "seed": seed, "layer": _layer_dict(layer),
            "config": {k: getattr(cfg, k) for k in ("pes", "scan_width")},
            "worst_model_error": worst_model, "rtl": rtl,
            "anchors": [{k: v for k, v in a.items()} for a in anchors],
            "design_space": design}
    files = [out / "sweep_rtl.csv", out / "sweep.json"]
    _write_csv(out / "sweep_rtl.csv", list(rows.values()))
    (out / "sweep.json").write_text(json.dumps(data, indent=1) + "\n")
    if model:
        _write_csv(out / "sweep_model.csv", model)
        files.append(out / "sweep_model.csv")
        files += _plots(out, rtl, model, cfg, layer)
    if docs is not None:
        _write_docs(docs, data, out)
        files.append(docs)
    for f in files:
        print(f"wrote {f}")
    return {"rtl": rtl, "anchors": [{k: v for k, v in a.items()} for a in anchors],
            "model": model, "design_space": design, "files": [str(f) for f in files]}
