"""``doublesparse explore`` and the task runner under it (``scripts/cluster.py``): the grid,
the model's figures against independent counts, the Pareto front against a second
implementation, Dask (a local cluster, and a scheduler and two workers started by hand)
against the same tasks run in this process, the content cache and resuming, synthesis as
a task from its plan's files, and the CLI's errors."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from doublesparse.scripts import cluster
from doublesparse.scripts import explore as ex
from doublesparse.scripts.cli import main
from doublesparse.sim.config import Config
from doublesparse.sim.conv import Layer, conv2d_golden

SEED = int(os.environ.get("DS_SEED", "11"))
SMALL = Layer(K=8, C=20, R=3, S=3, H=5, W=5, stride=1, pad=1)
GRID = "pes=1,2,4;scan_width=16,32"


@pytest.fixture(autouse=True)
def task_cache(tmp_path, monkeypatch):
    """Every test has a task cache of its own."""
    monkeypatch.setenv(cluster.CACHE_DIR_ENV, str(tmp_path / "tasks"))
    return tmp_path / "tasks"


def test_parse_grid_and_errors() -> None:
    assert ex.parse_grid("pes=2,4; scan_width=16,64,16") == {"pes": [2, 4],
                                                            "scan_width": [16, 64]}
    for bad, word in (("colour=1", "colour"), ("pes=2,x", "pes"), ("pes=", "pes"),
                      ("pes", "pes"), ("pes=1;pes=2", "twice")):
        with pytest.raises(ex.ExploreError, match=word):
            ex.parse_grid(bad)


def test_grid_points() -> None:
    """Every combination, invalid ones kept with their reason, output lanes follow the PE
    count, a preset equal to a grid point is one point."""
    pts = ex.grid_points("ulx3s-16", ex.parse_grid("pes=2,3,16;scan_width=64,12"),
                         ["ulx3s-16"])
    assert len(pts) == 6
    bad = [p for p in pts if p.invalid]
    assert {p.name for p in bad} == {"P2 S12", "P3 S12", "P16 S12"}, [p.name for p in bad]
    assert all("scan_width" in p.invalid for p in bad)
    p2 = next(p for p in pts if p.name == "P2 S64")
    assert p2.config["out_lanes"] == 2 and p2.config["pes"] == 2
    p3 = next(p for p in pts if p.name == "P3 S64")
    assert p3.config["out_lanes"] == 1          # the most lanes (1, 2, 4, 8) dividing 3
    p16 = next(p for p in pts if p.name.startswith("P16 S64"))
    assert "(= ulx3s-16)" in p16.name and p16.config == Config.parse("ulx3s-16").to_dict()
    with pytest.raises(ex.ExploreError, match="nosuch"):
        ex.grid_points("ulx3s-16", {}, ["nosuch"])
    with pytest.raises(ex.ExploreError, match="base config"):
        ex.grid_points("pes=0", {}, [])


def test_fit_memories() -> None:
    """Each grid point's memories are the next power of two of what the workload needs
    (so the workload fits and a memory half the size would not); memory fields the grid
    sets are kept; presets are explored as they are."""
    from doublesparse.sim.conv import LayerError, make_job

    wl = ex.layer_workload(Layer(K=24, C=40, R=3, S=3, H=7, W=7, stride=1, pad=1), 0.3, 0.5,
                           seed=SEED)
    pts = ex.add_presets(ex.fit_memories(
        ex.grid_points("ulx3s-16", ex.parse_grid("pes=2,8;scan_width=16,64;wval_mem_words=64")),
        wl, keep=("wval_mem_words",)), ["ulx3s-16"])
    assert [p.name for p in pts][-1] == "ulx3s-16"
    assert pts[-1].config == Config.parse("ulx3s-16").to_dict()
    for p in pts[:-1]:
        cfg = p.cfg
        assert cfg.wval_mem_words == 64
        for f in ("act_mem_chunks", "wgt_mem_chunks", "out_mem_words"):
            v = getattr(cfg, f)
            assert v & (v - 1) == 0 and v >= 16, (p.name, f, v)
            if v > 16:
                w, a, stride, pad = ex._job_for(wl[0], cfg)
                with pytest.raises(LayerError, match=f):
                    make_job(w, a, cfg.replace(**{f: v // 2}), stride, pad)
        res = ex.model_task({"config": p.config, "jobs": wl})
        assert res["error"] is None or "wval_mem_words" in res["error"], (p.name, res)


def _front_reference(xs, ys) -> list[bool]:
    """The front by sorting: walk by x ascending (y descending among equals) and keep a
    point when its y beats every point with a smaller x; equal points share the verdict."""
    order = sorted(range(len(xs)), key=lambda i: (xs[i], -ys[i]))
    on = [False] * len(xs)
    best = -np.inf
    i = 0
    while i < len(order):
        j = i
        while j < len(order) and xs[order[j]] == xs[order[i]]:
            j += 1
        top = ys[order[i]]                       # the best y at this x
        if top > best:
            for k in order[i:j]:
                on[k] = ys[k] == top
            best = top
        i = j
    return on


def test_pareto_against_sorting() -> None:
    rng = np.random.default_rng(SEED)
    print(f"seed {SEED}")
    for _ in range(200):
        n = int(rng.integers(1, 15))
        xs = [float(v) for v in rng.integers(0, 6, n)]
        ys = [float(v) for v in rng.integers(0, 6, n)]
        got, want = ex.pareto(xs, ys), _front_reference(xs, ys)
        assert got == want, (xs, ys, got, want)


def _workload(d_w=0.4, d_a=0.5):
    return ex.layer_workload(SMALL, d_w, d_a, seed=SEED)


def test_model_task_against_independent_counts() -> None:
    """Effectual MACs from a convolution of the nonzero masks, in-image dense MACs from a
    count of the taps inside the image, cycles from the model called directly."""
    from doublesparse.sim.conv import make_job
    from doublesparse.sim.engine_model import engine_cycles

    cfg = Config(pes=2, act_mem_chunks=256, wgt_mem_chunks=256, out_mem_words=1024,
                 max_filters=32)
    job = _workload()[0]
    res = ex.model_task({"config": cfg.to_dict(), "jobs": [job]})
    w, a = job["w"], job["a"]
    eff = int(conv2d_golden((w != 0).astype(np.int64), (a != 0).astype(np.int64), 1, 1).sum())
    taps = sum(1 for oy in range(5) for ox in range(5) for r in range(3) for s in range(3)
               if 0 <= oy + r - 1 < 5 and 0 <= ox + s - 1 < 5)
    print(res)
    assert res["error"] is None
    assert res["effectual"] == eff
    assert res["dense_in_image"] == taps * SMALL.K * SMALL.C
    assert res["cycles"] == engine_cycles(make_job(w, a, cfg, 1, 1), cfg)
    # a config that cannot hold the layer is a result, not an exception
    small = cfg.replace(max_filters=4)
    bad = ex.model_task({"config": small.to_dict(), "jobs": [job]})
    assert "max_filters" in bad["error"], bad


def test_network_workload_and_folding() -> None:
    """The digits CNN's engine layers with the activations its golden model gives them;
    on a scan width wider than a layer's channels the model runs it folded, as run-net
    does."""
    jobs, name = ex.digits_workload(1)
    assert "digits" in name and len(jobs) == 4
    assert jobs[0]["w"].shape[1] == 1 and jobs[0]["a"].shape == (1, 8, 8)
    for j in jobs:
        assert j["a"].dtype == np.int8 and j["w"].dtype == np.int8
    cfg = Config()
    w, a, stride, pad = ex._job_for(jobs[0], cfg)
    assert w.shape[2:] == (1, 1) and (stride, pad) == (1, 0)
    res = ex.model_task({"config": cfg.to_dict(), "jobs": jobs})
    assert res["error"] is None and len(res["layers"]) == 4 and res["cycles"] > 0


def test_explore_local_and_dask_agree(tmp_path: Path) -> None:
    """The same exploration in this process and on a local Dask cluster of two workers:
    the same rows; the CSV, JSON and plot are written; the model front is the front of
    the rows' figures; the second Dask run takes every point from the cache."""
    wl = _workload()
    kw = dict(board="ulx3s-85f", base="ulx3s-16,max_filters=16", grid=GRID, presets=[],
              workload=wl, workload_name="small", synth="none", rtl="none")
    here = ex.explore(local=True, cache=False, out=tmp_path / "here", **kw)
    lines: list[str] = []
    there = ex.explore(workers=2, out=tmp_path / "dask", say=lines.append, **kw)
    assert any("local cluster, 2 worker processes" in ln for ln in lines), lines
    assert any("6 tasks, 0 from the cache, 6 to run on the cluster" in ln for ln in lines)
    assert here["points"] == there["points"]
    rows = list(csv.DictReader((tmp_path / "dask" / "points.csv").open()))
    assert [r["point"] for r in rows] == [p["point"] for p in there["points"]]
    assert (tmp_path / "dask" / "explore-ulx3s-85f.png").stat().st_size > 5000
    data = json.loads((tmp_path / "dask" / "explore.json").read_text())
    assert data["points"][0]["model_cycles"] == there["points"][0]["model_cycles"]
    pts = [p for p in there["points"] if p.get("model_cycles")]
    on = ex.pareto([p["est_luts"] for p in pts], [p["gops_at_target"] for p in pts])
    assert [bool(p.get("front_model")) for p in pts] == on
    # more PEs never take more cycles on this layer
    by = {(p["pes"], p["scan_width"]): p["model_cycles"] for p in pts}
    for s in (16, 32):
        assert by[(1, s)] >= by[(2, s)] >= by[(4, s)], by
    lines.clear()
    again = ex.explore(workers=2, out=tmp_path / "again", say=lines.append, **kw)
    assert any("6 tasks, 6 from the cache, 0 to run" in ln for ln in lines), lines
    assert again["points"] == there["points"]


def flaky(p: dict) -> dict:
    """A task that fails while its marker file exists (an interrupted point)."""
    Path(p["log"]).open("a").write(f"{p['i']}\n")
    if Path(p["marker"]).exists():
        raise RuntimeError(f"point {p['i']} interrupted")
    return {"i": p["i"], "square": p["i"] ** 2}


def test_resume_runs_only_unfinished(tmp_path: Path) -> None:
    """A run with a failing task keeps the others' results; started again it runs only the
    task that had not finished; a change of payload runs that task again."""
    log, marker = tmp_path / "ran.txt", tmp_path / "interrupt"
    marker.write_text("")

    def tasks(extra=0):
        return [cluster.Task(f"t{i}", flaky, {"i": i, "log": str(log), "x": extra,
                                               "marker": str(marker) if i == 2 else "none"})
                for i in range(5)]

    cache = cluster.TaskCache(tmp_path / "c")
    with pytest.raises(cluster.TaskFailed, match="t2: RuntimeError: point 2 interrupted"):
        cluster.run_tasks(tasks(), None, cache, say=lambda s: None)
    assert sorted(log.read_text().split()) == ["0", "1", "2", "3", "4"]
    marker.unlink()
    log.write_text("")
    res = cluster.run_tasks(tasks(), None, cache, say=lambda s: None)
    assert log.read_text().split() == ["2"]
    assert [r["square"] for r in res] == [0, 1, 4, 9, 16]
    log.write_text("")
    cluster.run_tasks(tasks(extra=1), None, cache, say=lambda s: None)
    assert sorted(log.read_text().split()) == ["0", "1", "2", "3", "4"]
    with pytest.raises(ValueError, match="module-level"):
        cluster.Task("lambda", lambda p: p, {})


def test_content_digest() -> None:
    a = {"x": np.arange(6, dtype=np.int8).reshape(2, 3), "b": b"ab", "n": [1, 2.5, None]}
    same = {"n": [1, 2.5, None], "b": b"ab", "x": np.arange(6, dtype=np.int8).reshape(2, 3)}
    assert cluster.content_digest(a) == cluster.content_digest(same)
    for other in ({**a, "x": a["x"].reshape(3, 2)}, {**a, "x": a["x"].astype(np.int16)},
                  {**a, "b": b"ac"}, {**a, "n": [1, 2.5]}):
        assert cluster.content_digest(other) != cluster.content_digest(a)
    with pytest.raises(TypeError, match="set"):
        cluster.content_digest({"s": {1}})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_explore_on_a_scheduler_started_by_hand(tmp_path: Path, capsys) -> None:
    """A Dask scheduler and two workers as separate processes (as on other machines),
    then ``explore --scheduler``: the points run there and give the rows a run in this
    process gives."""
    port = _free_port()
    addr = f"tcp://127.0.0.1:{port}"
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler",
                               "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        time.sleep(2)
        for _ in range(2):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", addr, "--nthreads", "1",
                 "--no-dashboard"], env=env, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL))
        from distributed import Client

        with Client(addr, timeout="30s") as c:
            c.wait_for_workers(2, timeout=60)
        rc = main(["explore", "--board", "ulx3s-85f", "--quick", "--synth", "none",
                   "--grid", "pes=1,2;scan_width=16", "--scheduler", addr,
                   "--out", str(tmp_path / "o")])
        out = capsys.readouterr().out
        print(out)
        assert rc == 0
        assert f"dask: scheduler {addr}, 2 workers" in out
        rows = list(csv.DictReader((tmp_path / "o" / "points.csv").open()))
        assert [r["point"] for r in rows] == ["P1 S16", "P2 S16"]
        rc = main(["explore", "--board", "ulx3s-85f", "--quick", "--synth", "none",
                   "--grid", "pes=1,2;scan_width=16", "--local", "--no-cache",
                   "--out", str(tmp_path / "l")])
        assert rc == 0
        local = list(csv.DictReader((tmp_path / "l" / "points.csv").open()))
        assert [r["model_cycles"] for r in rows] == [r["model_cycles"] for r in local]
    finally:
        for p in procs[::-1]:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)


def test_cli_errors(tmp_path: Path, capsys) -> None:
    def err(argv) -> tuple[int, str]:
        rc = main(argv)
        return rc, capsys.readouterr().err

    rc, e = err(["explore", "--grid", "colour=1", "--local", "--out", str(tmp_path / "a")])
    assert rc == 2 and "colour" in e, e
    rc, e = err(["explore", "--model", "x.onnx", "--out", str(tmp_path / "a")])
    assert rc == 2 and "--input" in e, e
    rc, e = err(["explore", "--densities", "0.5", "--out", str(tmp_path / "a")])
    assert rc == 2 and "d_w,d_a" in e, e
    rc, e = err(["explore", "--densities", "0.5,0", "--local", "--out", str(tmp_path / "a")])
    assert rc == 2 and "d_a = 0.0" in e, e
    rc, e = err(["explore", "--workers", "0", "--out", str(tmp_path / "a")])
    assert rc == 2 and "--workers 0" in e, e
    rc, e = err(["explore", "--quick", "--synth", "some", "--local", "--rtl", "none",
                 "--out", str(tmp_path / "a")])
    assert rc == 2 and "'some'" in e, e
    rc, e = err(["explore", "--board", "icebreaker", "--seeds", "1,2", "--local",
                 "--out", str(tmp_path / "a")])
    assert rc == 2 and "seeds" in e, e


def test_synth_task_from_plan_files(tmp_path: Path, monkeypatch) -> None:
    """Synthesis as a task: the plan's files (a tiny iCE40 design) built by a Dask worker
    in a folder of its own, with the real tools; the report has the figures and no local
    path; the same files again come from the worker's synthesis cache."""
    from doublesparse.scripts import synth as synth_mod
    from doublesparse.tb.test_synth import _Tiny

    monkeypatch.setenv(synth_mod.CACHE_DIR_ENV, str(tmp_path / "synth-cache"))
    monkeypatch.delenv(synth_mod.CACHE_ENV, raising=False)
    plan = synth_mod._platform("icebreaker", 24.0).prepare(
        _Tiny(), "top", nextpnr_opts="--timing-allow-fail", emit_src=False)
    files = {n: d.encode() if isinstance(d, str) else bytes(d) for n, d in plan.files.items()}
    payload = {"board": "icebreaker", "clock_mhz": 24.0, "seeds": None, "top": "bridge",
               "config": Config().to_dict(), "files": files}
    with cluster.dask_client(workers=1, say=lambda s: None) as client:
        # another name is another Dask key: the worker runs the task again
        first, again = (cluster.run_tasks([cluster.Task(name, ex.synth_task, payload)], client,
                                          cluster.TaskCache(enabled=False))[0]
                        for name in ("synth tiny", "synth tiny again"))
    print(first)
    assert first["error"] is None and first["luts"] > 20 and first["fmax_mhz"] > 24
    assert first["timing_met"] is True and first["cache_hit"] is False
    assert "bitstream" not in first and str(tmp_path) not in json.dumps(first)
    assert again["cache_hit"] is True and again["luts"] == first["luts"]


ENGINE_CFG = "act_mem_chunks=256,wgt_mem_chunks=256,out_mem_words=1024,max_filters=32"
SIMS = [s for s in os.environ.get("DS_SIMS", "verilator,icarus").split(",") if s]


def test_rtl_spot_run(tmp_path: Path, monkeypatch, capsys) -> None:
    """A spot run simulates the workload's first layer cut to 6 x 6 pixels, bit-exact
    against the golden model, with the model's cycles beside; a run that differs from the
    golden model makes ``explore`` exit with 5. (The engine tests' config, so the
    simulator build is theirs.)"""
    from doublesparse.scripts import layer as layer_mod

    sim = SIMS[0]
    wl = ex.layer_workload(Layer(K=8, C=20, R=3, S=3, H=9, W=9, stride=1, pad=1), 0.5, 0.5,
                           seed=SEED)
    kw = dict(board="ulx3s-85f", base=ENGINE_CFG, grid="queue_depth=8", presets=[],
              workload=wl, workload_name="small", synth="none", rtl="all", sim=sim,
              local=True, cache=False)
    data = ex.explore(out=tmp_path / "a", **kw)
    row = data["points"][0]
    print(row)
    assert row["rtl_match"] is True and row["rtl_error"] == ""
    assert abs(row["rtl_model_error"]) < 0.05
    spot = ex.spot_job(wl[0])
    assert spot["a"].shape == (20, 6, 6) and np.array_equal(spot["a"], wl[0]["a"][:, :6, :6])
    assert not data["rtl_mismatches"]

    real = layer_mod.run_layers

    def corrupt(specs, cfg, sim="verilator", **k):
        runs = real(specs, cfg, sim=sim, **k)
        for r in runs:
            r.stats["match"] = False
        return runs

    monkeypatch.setattr(layer_mod, "run_layers", corrupt)
    monkeypatch.setattr(ex, "layer_workload", lambda *a, **k: wl)
    rc = main(["explore", "--config", ENGINE_CFG, "--grid", "queue_depth=8", "--presets", "",
               "--synth", "none", "--rtl", "all", "--sim", sim, "--local", "--no-cache",
               "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert rc == 5 and "differ from the golden model" in err, err
