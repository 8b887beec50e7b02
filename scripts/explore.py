"""``doublesparse explore``: which configuration for a board and a workload.

A grid of configurations (``--grid 'pes=2,4,8;scan_width=16,64'`` over a base config,
plus the board's presets) x a workload (a layer at given densities, or the engine layers
of a quantized ONNX network through the model import) gives, for every point:

- the performance model's cycles over the workload (``sim/engine_model.py``), the bound
  (effectual MACs / multipliers), utilization, speedup vs dense, and an area estimate
  (``sim/arch_study.py``'s LUT4 model, calibrated on ECP5 builds);
- for chosen points, a spot run of the RTL under a simulator on a cut-down layer of the
  workload, checked bit-exact against the golden model and against the model's cycles;
- for chosen points, synthesis of the system top for the board (Fmax, LUTs, FFs,
  multipliers, block RAMs, over the chosen seeds);

then throughput (dense-equivalent GOP/s = 2 x in-image dense MACs x clock / cycles, at the
measured Fmax when synthesized, else at the target clock) against area, and the Pareto
front (most GOP/s for the fewest LUTs), as CSV, JSON and a PNG plot per board.

Each point's work is a task (``scripts/cluster.py``) on Dask distributed: a local cluster
by default, any scheduler with ``--scheduler``; results are cached by content, so a run
started again after an interruption redoes only the unfinished tasks.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..sim.config import BOARD_CONFIG, PRESETS, Config, ConfigError
from ..sim.conv import Layer, LayerError, fold_kernel, make_job
from .cluster import Task, TaskCache, dask_client, run_tasks, say

__all__ = ["ExploreError", "Point", "parse_grid", "grid_points", "add_presets",
           "fit_memories",
           "layer_workload",
           "network_workload", "pareto", "explore", "model_task", "rtl_task", "plan_task",
           "synth_task", "BOARD_DEVICE", "TARGET_LAYER", "QUICK_LAYER"]

#: what each board's device offers (LUT4 / logic cells, block RAMs, DSP blocks)
BOARD_DEVICE = {
    "ulx3s-85f": {"device": "LFE5U-85F", "luts": 83_640, "brams": 208, "dsps": 156},
    "icebreaker": {"device": "iCE40UP5K", "luts": 5_280, "brams": 30, "dsps": 8},
}

#: the grid explored when none is given: over the board's preset
DEFAULT_GRID = {
    "ulx3s-85f": "pes=2,4,8,16,32;scan_width=16,32,64",
    "icebreaker": "pes=1,2;scan_width=16;queue_depth=2,4,8",
}
#: ``--quick``: a small grid over the small preset (memories sized to the layer), a smaller
#: layer, synthesis of the two smallest points
QUICK_BASE = "icebreaker"
QUICK_GRID = "pes=1,2,4,8;scan_width=16,32"

#: the layer of the utilization targets (docs/performance.md): C = K = 64, 3x3, 16x16, pad 1
TARGET_LAYER = Layer(K=64, C=64, R=3, S=3, H=16, W=16, stride=1, pad=1)
#: ``--quick``'s layer: the sweep's (C = K = 32, 3x3, 8x8, pad 1)
QUICK_LAYER = Layer(K=32, C=32, R=3, S=3, H=8, W=8, stride=1, pad=1)
#: the densities of the default workload (d_w, d_a): the issue's 1/40 point
DEFAULT_DENSITIES = (0.25, 0.1)
#: grid fields (Config fields that take a list of integers)
GRID_FIELDS = ("pes", "scan_width", "queue_depth", "out_lanes", "act_mem_chunks",
               "wgt_mem_chunks", "wval_mem_words", "out_mem_words", "max_filters")
#: pixels of the cut-down layer of an RTL spot run
SPOT_PIXELS = 6


class ExploreError(ValueError):
    """A bad grid, workload or option; the message names it."""


# -- grid ---------------------------------------------------------------------------------
def parse_grid(text: str) -> dict[str, list[int]]:
    """``'pes=2,4;scan_width=16,64'`` -> {field: values}; unknown fields, values that are
    not integers and empty lists raise :class:`ExploreError` naming them."""
    grid: dict[str, list[int]] = {}
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        name, eq, vals = part.partition("=")
        name = name.strip()
        if not eq:
            raise ExploreError(f"grid entry {part!r}: expected field=v1,v2,...")
        if name not in GRID_FIELDS:
            raise ExploreError(f"grid field {name!r} is not explored; one of "
                               f"{', '.join(GRID_FIELDS)}")
        if name in grid:
            raise ExploreError(f"grid field {name!r} given twice")
        try:
            values = [int(v) for v in vals.split(",") if v.strip()]
        except ValueError:
            raise ExploreError(f"grid field {name!r}: values must be integers, got "
                               f"{vals!r}") from None
        if not values:
            raise ExploreError(f"grid field {name!r} has no values")
        grid[name] = list(dict.fromkeys(values))
    return grid


@dataclass
class Point:
    """One configuration of the exploration and everything measured on it."""

    name: str
    config: dict | None                 # None when the grid point is not a valid config
    invalid: str | None = None
    model: dict | None = None
    rtl: dict | None = None
    synth: dict | None = None
    est_luts: int | None = None
    flags: dict = field(default_factory=dict)
    preset: bool = False                # a named preset (explored as it is)

    @property
    def cfg(self) -> Config:
        return Config.from_dict(self.config)


def _point_name(changes: dict) -> str:
    short = {"pes": "P", "scan_width": "S", "queue_depth": "Q", "out_lanes": "L"}
    return " ".join(f"{short.get(k, k)}{v}" for k, v in changes.items()) or "base"


def grid_points(base: str, grid: dict[str, list[int]], presets: list[str] = ()
                ) -> list[Point]:
    """The base config (a preset name or field list) with each combination of the grid's
    values, then the named presets; points with the same config are kept once. A point
    that sets ``pes`` but not ``out_lanes`` takes the most output lanes (1, 2, 4 or 8) up
    to the base's that divide ``pes`` (a lane collects whole PEs). A combination the
    config refuses is a point with ``invalid`` set (the reason), not an error."""
    try:
        base_cfg = Config.parse(base)
    except ConfigError as e:
        raise ExploreError(f"base config {base!r}: {e}") from None
    points: list[Point] = []
    seen: set[str] = set()
    names = list(grid)
    for values in itertools.product(*(grid[n] for n in names)):
        changes = dict(zip(names, values, strict=True))
        if "pes" in changes and "out_lanes" not in changes:
            changes["out_lanes"] = max(n for n in (1, 2, 4, 8) if n <= base_cfg.out_lanes
                                       and changes["pes"] % n == 0)
        name = _point_name({k: changes[k] for k in names})
        try:
            cfg = base_cfg.replace(**changes)
        except ConfigError as e:
            points.append(Point(name, None, invalid=str(e)))
            continue
        key = json.dumps(cfg.to_dict(), sort_keys=True)
        if key not in seen:
            seen.add(key)
            points.append(Point(name, cfg.to_dict()))
    return add_presets(points, presets)


def add_presets(points: list[Point], presets: list[str]) -> list[Point]:
    """``points`` and the named presets after them; a preset equal to a point is that
    point (its name says so)."""
    points = list(points)
    for p in presets:
        if p not in PRESETS:
            raise ExploreError(f"unknown preset {p!r}; one of {', '.join(PRESETS)}")
        cfg = Config.parse(p).to_dict()
        same = [pt for pt in points if pt.config == cfg]
        for pt in same:
            pt.name += f" (= {p})"
        if not same:
            points.append(Point(p, cfg, preset=True))
    return points


#: the memories :func:`fit_memories` sizes, and the limits it raises
MEMORY_FIELDS = ("act_mem_chunks", "wgt_mem_chunks", "wval_mem_words", "out_mem_words")
LIMIT_FIELDS = ("max_filters", "max_channels", "max_reduction")


def fit_memories(points: list[Point], workload: list[dict], keep: tuple[str, ...] = ()
                 ) -> list[Point]:
    """Each valid point with its memories sized to the workload: every field of
    :data:`MEMORY_FIELDS` not in ``keep`` set to the next power of two (at least 16) of
    the most any job needs on that config (``sim.conv.layer_needs``, after folding as
    run-net does), and the limits of :data:`LIMIT_FIELDS` raised to what the workload
    needs. Presets stay as they are (add them after: :func:`add_presets`). A point the
    sized config refuses becomes invalid with the reason; a point that becomes equal to
    another is dropped."""
    from ..sim.conv import layer_needs

    out: list[Point] = []
    seen: set[str] = set()
    for p in points:
        if p.invalid or p.preset:
            out.append(p)
            continue
        cfg = p.cfg
        need: dict[str, int] = {}
        for job in workload:
            w, a, stride, pad = _job_for(job, cfg)
            K, C, R, S = w.shape
            lay = Layer(K, C, R, S, a.shape[1], a.shape[2], stride, pad)
            big = cfg.replace(max_filters=max(cfg.max_filters, K))   # so that the schedule
            for k, v in layer_needs(lay, big, w).items():              # is counted
                need[k] = max(need.get(k, 0), int(v))
        changes = {k: max(16, 1 << max(0, need[k] - 1).bit_length())
                   for k in MEMORY_FIELDS if k in need and k not in keep}
        if "out_mem_words" in changes:
            lanes = cfg.out_lanes
            changes["out_mem_words"] = -(-changes["out_mem_words"] // lanes) * lanes
        changes.update({k: need[k] for k in LIMIT_FIELDS
                        if k in need and need[k] > getattr(cfg, k)})
        try:
            cfg = cfg.replace(**changes)
        except ConfigError as e:
            out.append(Point(p.name, None, invalid=f"memories sized to the workload: {e}"))
            continue
        key = json.dumps(cfg.to_dict(), sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(Point(p.name, cfg.to_dict()))
    return out


def estimate_luts(cfg: Config) -> int:
    """LUT4 of the system on an ECP5 by the design study's area model (scan PEs with their
    feeders, the shared blocks, output lanes beyond the first)."""
    from ..sim.arch_study import SCAN_SHARED_LUT, scan_pe_lut

    lane = 1_000
    return (cfg.pes * scan_pe_lut(cfg.scan_width) + SCAN_SHARED_LUT
            + lane * (cfg.out_lanes - 1))


# -- workloads ----------------------------------------------------------------------------
def layer_workload(layer: Layer, d_w: float, d_a: float, seed: int = 1) -> list[dict]:
    """One layer with random int8 operands at densities ``d_w``, ``d_a``."""
    from ..tb.stimulus import random_tensor

    for name, d in (("d_w", d_w), ("d_a", d_a)):
        if not 0 < d <= 1:
            raise ExploreError(f"{name} = {d}: must be in (0, 1]")
    rng = np.random.default_rng(seed)
    w = random_tensor(rng, (layer.K, layer.C, layer.R, layer.S), d_w)
    a = random_tensor(rng, (layer.C, layer.H, layer.W), d_a)
    return [{"name": f"conv {layer.K}x{layer.C} {layer.R}x{layer.S} {layer.H}x{layer.W} "
                     f"d_w {d_w:g} d_a {d_a:g}",
             "w": w.astype(np.int8), "a": a.astype(np.int8), "stride": layer.stride,
             "pad": layer.pad}]


def network_workload(model: str | Path, x: np.ndarray) -> list[dict]:
    """The engine layers of a quantized ONNX model (``sim/onnx_import.py``) with the int8
    activations they see for the input ``x`` (one image, or a batch: one job per image)."""
    from ..sim.onnx_import import OnnxImportError, import_model, run_program

    jobs: list[dict] = []

    def capture(layer, acts):
        for n, a in enumerate(acts):
            jobs.append({"name": layer.name + (f" #{n}" if len(acts) > 1 else ""),
                         "w": layer.w.astype(np.int8), "a": np.asarray(a, np.int8),
                         "stride": layer.stride, "pad": layer.pad})
        return [layer.golden(a) for a in acts]

    try:
        prog = import_model(str(model))
        run_program(prog, x, capture)
    except OnnxImportError as e:
        raise ExploreError(f"{model}: {e}") from None
    if not jobs:
        raise ExploreError(f"{model}: no engine layer in the model")
    return jobs


def digits_workload(images: int = 1) -> tuple[list[dict], str]:
    """The committed digits CNN (``sim/digits_cnn.onnx``) on its first test images."""
    from ..sim.cnn import digits_split, load_network
    from .cnn_demo import DEFAULT_ONNX

    X, _ = digits_split(load_network())
    x = X[:images].astype(np.float32)[:, None] / 16
    return network_workload(DEFAULT_ONNX, x), f"digits CNN ({Path(DEFAULT_ONNX).name}, " \
        f"{images} test image{'s' if images != 1 else ''})"


def _job_for(job: dict, cfg: Config) -> tuple[np.ndarray, np.ndarray, int, int]:
    from .run_net import should_fold

    w, a, stride, pad = job["w"], job["a"], job["stride"], job["pad"]
    if should_fold(w.shape, cfg):
        w, a = fold_kernel(w, a, stride, pad)
        stride, pad = 1, 0
    return w, a, stride, pad


# -- tasks (module-level: workers import them by name) ------------------------------------
def model_task(p: dict) -> dict:
    """Performance-model cycles of the workload ``p['jobs']`` on ``p['config']``."""
    from ..sim.engine_model import engine_cycles, engine_steps
    from .layer import in_image_macs

    cfg = Config.from_dict(p["config"])
    t0 = time.time()
    layers = []
    for job in p["jobs"]:
        w, a, stride, pad = _job_for(job, cfg)
        try:
            j = make_job(w, a, cfg, stride, pad)
        except LayerError as e:
            return {"error": f"{job['name']}: {e}"}
        steps = engine_steps(j, cfg)
        # the dense work of the layer as given (a folded layer's padding taps are values)
        K, C, R, S = job["w"].shape
        H, W = job["a"].shape[1:]
        layers.append({"name": job["name"], "cycles": engine_cycles(j, cfg, steps),
                       "effectual": int(steps[0].sum()), "folded": w.shape != job["w"].shape,
                       "dense_in_image": in_image_macs(K, C, R, S, H, W, job["stride"],
                                                       job["pad"])})
    return {"error": None, "layers": layers, "seconds": time.time() - t0,
            "cycles": sum(x["cycles"] for x in layers),
            "effectual": sum(x["effectual"] for x in layers),
            "dense_in_image": sum(x["dense_in_image"] for x in layers)}


def spot_job(job: dict, pixels: int = SPOT_PIXELS) -> dict:
    """The workload job cut down for an RTL spot run: its first ``pixels`` x ``pixels``
    input pixels (all channels and filters)."""
    a = job["a"][:, :pixels, :pixels]
    R, S = job["w"].shape[2:]
    if a.shape[1] + 2 * job["pad"] < R or a.shape[2] + 2 * job["pad"] < S:
        a = job["a"]
    return dict(job, a=a, name=job["name"] + f" (first {a.shape[1]}x{a.shape[2]} pixels)")


def rtl_task(p: dict) -> dict:
    """One job through the RTL engine under ``p['sim']``, checked against the golden
    model; with the model's cycles for the same job."""
    from .layer import LayerSpec, run_layers

    cfg = Config.from_dict(p["config"])
    w, a, stride, pad = _job_for(p["job"], cfg)
    t0 = time.time()
    try:
        run = run_layers([LayerSpec(w, a, stride, pad)], cfg, sim=p["sim"])[0]
    except LayerError as e:
        return {"error": f"{p['job']['name']}: {e}", "match": None}
    st = run.stats
    if run.error:
        return {"error": f"engine error {run.error} ({st['error_meaning']})", "match": False,
                "job": p["job"]["name"], "seconds": time.time() - t0}
    return {"error": None, "match": st["match"], "job": p["job"]["name"], "sim": p["sim"],
            "cycles": st["cycles"], "predicted_cycles": st["predicted_cycles"],
            "model_error": st["model_error"], "utilization": st["utilization"],
            "seconds": time.time() - t0}


def plan_task(p: dict) -> dict:
    """The board build's plan files for ``p['config']`` (``scripts/synth.py:plan_files``)."""
    from .synth import SynthError, plan_files

    try:
        files = plan_files(p["board"], Config.from_dict(p["config"]), p["clock_mhz"],
                           seeds=p["seeds"])
    except SynthError as e:
        return {"error": str(e), "files": None}
    return {"error": None, "files": files}


def synth_task(p: dict) -> dict:
    """Yosys and nextpnr on the plan files ``p['files']`` in a temporary folder of the
    worker (the worker's synthesis cache applies); the report without local paths."""
    from .synth import SynthError, synth

    cfg = Config.from_dict(p["config"])
    with tempfile.TemporaryDirectory(prefix="ds-explore-") as tmp:
        try:
            res = synth(p["board"], cfg, Path(tmp) / "build", p["clock_mhz"],
                        seeds=p["seeds"], jobs=1, files=p["files"],
                        top=p.get("top", "system"))
        except SynthError as e:
            return {"error": str(e)}
    keep = ("fmax_mhz", "timing_met", "luts", "ffs", "multipliers", "dsp_blocks", "brams",
            "pll_mhz", "seeds_fmax", "seed", "seconds", "clocks", "utilisation",
            "figures_from")
    out = {k: res[k] for k in keep if k in res}
    out["error"] = None
    out["cache_hit"] = bool(res.get("cache", {}).get("hit"))
    return out


# -- figures ------------------------------------------------------------------------------
def pareto(xs: list[float], ys: list[float]) -> list[bool]:
    """Which points are on the front that minimizes x and maximizes y: no other point has
    x <= and y >= with one of them strict."""
    on = []
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        dominated = any((x2 <= x and y2 >= y) and (x2 < x or y2 > y)
                        for j, (x2, y2) in enumerate(zip(xs, ys, strict=True)) if j != i)
        on.append(not dominated)
    return on


def gops(dense_macs: int, cycles: int, mhz: float) -> float:
    return 2 * dense_macs * mhz * 1e6 / cycles / 1e9


def _row(pt: Point, clock_mhz: float) -> dict:
    r: dict = {"point": pt.name}
    if pt.config:
        for k in ("pes", "scan_width", "queue_depth", "out_lanes", "act_mem_chunks",
                  "wgt_mem_chunks", "wval_mem_words", "out_mem_words", "max_filters"):
            r[k] = pt.config[k]
    r["invalid"] = pt.invalid or ""
    m = pt.model or {}
    r["fits_workload"] = "" if pt.invalid else ("yes" if not m.get("error") else "no")
    r["why_not"] = m.get("error") or pt.invalid or ""
    if m and not m.get("error"):
        mult = pt.cfg.engine_multipliers
        bound = -(-m["effectual"] // mult)
        r.update(model_cycles=m["cycles"], bound_cycles=bound,
                 utilization=m["effectual"] / (mult * m["cycles"]),
                 speedup_vs_dense=-(-m["dense_in_image"] // mult) / m["cycles"],
                 est_luts=pt.est_luts, gops_at_target=gops(m["dense_in_image"], m["cycles"],
                                                           clock_mhz))
    if pt.rtl:
        r.update(rtl_match=pt.rtl.get("match"), rtl_cycles=pt.rtl.get("cycles"),
                 rtl_model_error=pt.rtl.get("model_error"), rtl_error=pt.rtl.get("error") or "")
    if pt.synth:
        s = pt.synth
        r.update(synth_error=s.get("error") or "", fmax_mhz=s.get("fmax_mhz"),
                 timing_met=s.get("timing_met"), luts=s.get("luts"), ffs=s.get("ffs"),
                 multipliers=s.get("multipliers"), brams=s.get("brams"),
                 seeds_fmax=json.dumps(s.get("seeds_fmax")) if s.get("seeds_fmax") else "")
        if s.get("fmax_mhz") and m and not m.get("error"):
            r["gops_at_fmax"] = gops(m["dense_in_image"], m["cycles"], s["fmax_mhz"])
    r.update({f"front_{k}": v for k, v in pt.flags.items()})
    return r


def _write_csv(path: Path, rows: list[dict]) -> None:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with path.open("w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=keys)
        wr.writeheader()
        for r in rows:
            wr.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def _plot(path: Path, rows: list[dict], board: str, clock_mhz: float, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5))
    est = [r for r in rows if r.get("est_luts") and r.get("gops_at_target")]
    syn = [r for r in rows if r.get("luts") and r.get("gops_at_fmax")]
    if est:
        ax.scatter([r["est_luts"] for r in est], [r["gops_at_target"] for r in est],
                   facecolors="none", edgecolors="tab:blue", label=f"model, at {clock_mhz:g} "
                   f"MHz, estimated LUT4")
        fr = sorted((r for r in est if r.get("front_model")), key=lambda r: r["est_luts"])
        ax.step([r["est_luts"] for r in fr], [r["gops_at_target"] for r in fr], where="post",
                color="tab:blue", alpha=0.5, label="model front")
    if syn:
        ax.scatter([r["luts"] for r in syn], [r["gops_at_fmax"] for r in syn],
                   color="tab:red", marker="s", label="synthesized, at measured Fmax")
        fr = sorted((r for r in syn if r.get("front_synth")), key=lambda r: r["luts"])
        ax.step([r["luts"] for r in fr], [r["gops_at_fmax"] for r in fr], where="post",
                color="tab:red", label="synthesized front")
        for r in syn:
            ax.annotate(f"{r['point']} {r['fmax_mhz']:.0f} MHz", (r["luts"], r["gops_at_fmax"]),
                        fontsize=7, xytext=(4, 2), textcoords="offset points")
    cap = BOARD_DEVICE[board]["luts"]
    ax.axvline(cap, color="gray", ls="--", lw=1)
    ax.text(cap, ax.get_ylim()[1] * 0.95, f" {BOARD_DEVICE[board]['device']}", color="gray",
            fontsize=8, va="top")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("LUT4 (system top)")
    ax.set_ylabel("dense-equivalent GOP/s")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- the exploration ----------------------------------------------------------------------
def _choose(points: list[Point], how: str, device_luts: int) -> list[Point]:
    """The points to synthesize or spot-run: ``none``, ``all``, ``front`` (on the model's
    front), ``front:N`` (its N smallest by estimated LUT4), or N (the N smallest points);
    points that do not fit the workload, and points estimated above the device's LUT4,
    are never chosen."""
    ok = [p for p in points if p.model and not p.model.get("error")
          and (p.est_luts or 0) <= device_luts]
    if how == "none":
        return []
    if how == "all":
        return ok
    count = how
    if how == "front" or how.startswith("front:"):
        ok = [p for p in ok if p.flags.get("model")]
        count = how[6:] or str(len(ok))
    try:
        n = int(count)
    except ValueError:
        raise ExploreError(f"choice {how!r}: expected none, all, front, front:N or a "
                           f"count N") from None
    if n < 0:
        raise ExploreError(f"choice {how!r}: a count must be >= 0")
    return sorted(ok, key=lambda p: (p.est_luts, -p.cfg.pes))[:n]


def explore(board: str = "ulx3s-85f", base: str | None = None, grid: str | None = None,
            presets: list[str] | None = None, workload: list[dict] | None = None,
            workload_name: str = "", quick: bool = False, synth: str | None = None,
            rtl: str | None = None, seeds: list[int] | None = None,
            clock_mhz: float | None = None, sim: str = "verilator",
            scheduler: str | None = None, workers: int | None = None, local: bool = False,
            cache: bool = True, out: Path = Path("build/explore"), say=say,
            cmd: str = "", fit: bool = True) -> dict:
    """Run an exploration (see the module's docstring); returns {"points": rows, "files":
    [...], ...} and writes ``points.csv``, ``pareto.csv``, ``explore.json`` and
    ``explore-<board>.png`` in ``out``. ``local`` runs the tasks in this process instead
    of on Dask; ``cmd``: the command line, recorded in the JSON; ``fit``: size each
    point's memories to the workload (:func:`fit_memories`; memory fields set by the grid
    are kept). Raises
    :class:`ExploreError` for bad options."""
    from .synth import BOARD_MHZ, BOARDS

    if board not in BOARDS:
        raise ExploreError(f"unknown board {board!r}; one of {', '.join(BOARDS)}")
    clock_mhz = clock_mhz or BOARD_MHZ[board]
    base = base or (QUICK_BASE if quick else BOARD_CONFIG[board])
    grid_text = grid if grid is not None else (QUICK_GRID if quick else DEFAULT_GRID[board])
    if presets is None:
        presets = [] if quick else [p for p, b in (("ulx3s", "ulx3s-85f"),
                                                   ("ulx3s-16", "ulx3s-85f"),
                                                   ("icebreaker", "icebreaker")) if b == board]
    synth = synth or ("2" if quick else "front")
    rtl = rtl or ("none" if quick else "front")
    if seeds is None:
        seeds = [1] if board == "ulx3s-85f" else None
    elif board != "ulx3s-85f":
        raise ExploreError(f"seeds are chosen on ulx3s-85f only, not {board}")
    if sim not in ("verilator", "icarus"):
        raise ExploreError(f"sim {sim!r}: verilator or icarus")
    if workload is None:
        workload = layer_workload(QUICK_LAYER if quick else TARGET_LAYER, *DEFAULT_DENSITIES)
        workload_name = workload[0]["name"]
    grid_fields = parse_grid(grid_text)
    if fit:
        points = add_presets(fit_memories(grid_points(base, grid_fields), workload,
                                          keep=tuple(grid_fields)), presets)
    else:
        points = grid_points(base, grid_fields, presets)
    valid = [p for p in points if p.config]
    if not valid:
        raise ExploreError("no valid configuration in the grid: " +
                           "; ".join(f"{p.name}: {p.invalid}" for p in points))
    out.mkdir(parents=True, exist_ok=True)
    dev = BOARD_DEVICE[board]
    say(f"explore: {board} ({dev['device']}), base config {base!r}, grid {grid_text!r}"
        + (f", presets {', '.join(presets)}" if presets else "")
        + f": {len(points)} points ({len(points) - len(valid)} invalid); workload "
          f"{workload_name} ({len(workload)} engine job{'s' if len(workload) != 1 else ''})")
    for p in points:
        if p.invalid:
            say(f"  {p.name}: not a valid config: {p.invalid}")
        else:
            p.est_luts = estimate_luts(p.cfg)
    tc = TaskCache(enabled=cache)
    t0 = time.time()
    cm = _nullclient() if local else dask_client(scheduler, workers, say=say)
    with cm as client:
        tasks = [Task(f"model {p.name}", model_task, {"config": p.config, "jobs": workload})
                 for p in valid]
        for p, res in zip(valid, run_tasks(tasks, client, tc, "model", say=say), strict=True):
            p.model = res
        fits = [p for p in valid if not p.model.get("error")]
        for p in valid:
            if p.model.get("error"):
                say(f"  {p.name}: the workload does not fit: {p.model['error']}")
        front = pareto([p.est_luts for p in fits],
                       [p.model["dense_in_image"] / p.model["cycles"] for p in fits])
        for p, on in zip(fits, front, strict=True):
            p.flags["model"] = on
        spots = _choose(points, rtl, dev["luts"])
        if spots:
            tasks = [Task(f"rtl {p.name}", rtl_task, {"config": p.config, "sim": sim,
                                                      "job": spot_job(workload[0])})
                     for p in spots]
            for p, res in zip(spots, run_tasks(tasks, client, tc, f"rtl ({sim})", say=say),
                              strict=True):
                p.rtl = res
        chosen = _choose(points, synth, dev["luts"])
        if chosen:
            common = {"board": board, "clock_mhz": clock_mhz, "seeds": seeds}
            tasks = [Task(f"plan {p.name}", plan_task, dict(common, config=p.config))
                     for p in chosen]
            plans = run_tasks(tasks, client, tc, "synthesis plans", say=say)
            stasks, sp = [], []
            for p, pl in zip(chosen, plans, strict=True):
                if pl.get("error"):
                    p.synth = {"error": pl["error"]}
                else:
                    stasks.append(Task(f"synth {p.name}", synth_task,
                                       dict(common, config=p.config, files=pl["files"])))
                    sp.append(p)
            del plans
            for p, res in zip(sp, run_tasks(stasks, client, tc, "synthesis", say=say),
                              strict=True):
                p.synth = res
    syn = [p for p in points if p.synth and p.synth.get("fmax_mhz") and p.synth.get("luts")]
    on = pareto([p.synth["luts"] for p in syn],
                [gops(p.model["dense_in_image"], p.model["cycles"], p.synth["fmax_mhz"])
                 for p in syn])
    for p, f in zip(syn, on, strict=True):
        p.flags["synth"] = f
    rows = [_row(p, clock_mhz) for p in points]
    files = [out / "points.csv", out / "pareto.csv", out / "explore.json",
             out / f"explore-{board}.png"]
    _write_csv(files[0], rows)
    _write_csv(files[1], [r for r in rows if r.get("front_synth") or r.get("front_model")])
    mismatches = [p.name for p in points if p.rtl and p.rtl.get("match") is False]
    data = {"board": board, "device": dev, "base": base, "grid": grid_text,
            "presets": presets, "workload": workload_name, "clock_mhz": clock_mhz,
            "seeds": seeds, "sim": sim, "seconds": time.time() - t0, "points": rows,
            "rtl_mismatches": mismatches, "cmd": cmd or "doublesparse explore",
            "memories_fitted": fit}
    files[2].write_text(json.dumps(data, indent=1, default=_json_default) + "\n")
    _plot(files[3], rows, board, clock_mhz, f"{board}: {workload_name}")

    _print_table(rows, say)
    say(f"explore: {len(points)} points in {time.time() - t0:.0f} s; "
        + ", ".join(f"wrote {f}" for f in files))
    data["files"] = [str(f) for f in files]
    return data


def markdown(data: dict, plot: str | None = None) -> str:
    """The exploration's table for a docs page (the section ``explore``)."""
    def _md(v, spec: str) -> str:
        return "" if v is None or v == "" else format(v, spec)

    lines = [f"Board {data['board']} ({data['device']['device']}), base config "
             f"`{data['base']}`, grid `{data['grid']}`"
             + (f", presets {', '.join(data['presets'])}" if data.get("presets") else "")
             + f"; workload: {data['workload']}; target clock {data['clock_mhz']:g} MHz, "
             f"placement seeds {data.get('seeds')}; RTL spot runs under {data['sim']}. "
             f"Command: `{data.get('cmd', 'doublesparse explore')}` "
             f"({data['seconds'] / 60:.0f} min on this machine).", ""]
    if plot:
        lines += [f"![throughput vs LUT4]({plot})", ""]
    lines += ["| point | P | S | Q | est. LUT4 | model cycles | util. | x dense | GOP/s at "
              "target | RTL spot | Fmax MHz | LUT4 | FF | BRAM | GOP/s at Fmax | front |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | "
              "---: | ---: | ---: | ---: | --- |"]
    for r in data["points"]:
        if r.get("invalid") or r.get("fits_workload") == "no":
            lines.append(f"| {r['point']} | | | | | {r['why_not'][:80]} | | | | | | | | | | |")
            continue
        rtl = {True: "bit-exact", False: "MISMATCH"}.get(r.get("rtl_match"), "")
        if rtl and r.get("rtl_model_error") is not None:
            rtl += f", model {100 * r['rtl_model_error']:+.1f} %"
        front = ", ".join(k[6:] for k in ("front_model", "front_synth") if r.get(k))
        syn = ("(" + r["synth_error"][:60] + ")") if r.get("synth_error") else ""
        lines.append(
            f"| {r['point']} | {r['pes']} | {r['scan_width']} | {r['queue_depth']} | "
            f"{_md(r.get('est_luts'), ',d')} | {_md(r.get('model_cycles'), ',d')} | "
            f"{_md(r.get('utilization'), '.2f')} | {_md(r.get('speedup_vs_dense'), '.1f')} | "
            f"{_md(r.get('gops_at_target'), '.1f')} | {rtl} | "
            f"{_md(r.get('fmax_mhz'), '.1f')}{syn} | {_md(r.get('luts'), ',d')} | "
            f"{_md(r.get('ffs'), ',d')} | {_md(r.get('brams'), 'd')} | "
            f"{_md(r.get('gops_at_fmax'), '.1f')} | {front} |")
    return "\n".join(lines) + "\n"


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(type(o).__name__)


class _nullclient:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _fmt(v, spec: str) -> str:
    if v is None or v == "" or (isinstance(v, float) and math.isnan(v)):
        width = int("".join(c for c in spec.split(".")[0] if c.isdigit()) or 1)
        return "-".rjust(width)
    return format(v, spec)


def _print_table(rows: list[dict], say) -> None:
    say(f"{'point':24} {'est LUT4':>8} {'cycles':>8} {'bound':>7} {'util':>5} {'x dense':>7} "
        f"{'GOP/s*':>7} {'RTL':>5} {'Fmax':>6} {'LUT4':>7} {'BRAM':>4} {'GOP/s':>7} front")
    for r in rows:
        if r.get("invalid") or r.get("fits_workload") == "no":
            say(f"{r['point']:24} {r['why_not'][:90]}")
            continue
        rtl = {True: "ok", False: "FAIL", None: "-"}[r.get("rtl_match")]
        front = ",".join(k[6:] for k in ("front_model", "front_synth") if r.get(k))
        say(f"{r['point']:24} {_fmt(r.get('est_luts'), '8d')} {_fmt(r.get('model_cycles'), '8d')}"
            f" {_fmt(r.get('bound_cycles'), '7d')} {_fmt(r.get('utilization'), '5.2f')} "
            f"{_fmt(r.get('speedup_vs_dense'), '7.2f')} {_fmt(r.get('gops_at_target'), '7.1f')} "
            f"{rtl:>5} {_fmt(r.get('fmax_mhz'), '6.1f')} {_fmt(r.get('luts'), '7d')} "
            f"{_fmt(r.get('brams'), '4d')} {_fmt(r.get('gops_at_fmax'), '7.1f')} {front}"
            + (f"  synth: {r['synth_error'][:60]}" if r.get("synth_error") else ""))
    say("GOP/s* at the target clock from the model's cycles; GOP/s at the measured Fmax")
