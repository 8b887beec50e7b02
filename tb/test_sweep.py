"""``bench sweep``: the RTL columns come from the simulation (not the performance model),
the three encodings do the work they claim (MAC counters against independent counts), and
the CSV / plots / Markdown table are written from the same rows."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

from doublesparse.scripts import sweep as sw
from doublesparse.scripts.docgen import block, write_section
from doublesparse.sim.config import Config
from doublesparse.sim.conv import Layer, conv2d_golden

SIMS = [s for s in os.environ.get("DS_SIMS", "verilator,icarus").split(",") if s]
SEED = int(os.environ.get("DS_SEED", "6"))
# the engine tests' config: its Verilator build is shared with them
CFG = Config(act_mem_chunks=256, wgt_mem_chunks=256, out_mem_words=1024, max_filters=32)
TINY = Layer(K=6, C=20, R=3, S=3, H=5, W=5, stride=1, pad=1)
SENTINEL = 987_654


def test_rtl_columns_are_simulated(monkeypatch, tmp_path: Path) -> None:
    """With the model replaced by a sentinel, every RTL cycle column still holds a simulated
    count (and the model columns hold the sentinel); MAC counters match independent counts
    of the work each encoding implies."""
    monkeypatch.setattr("doublesparse.scripts.layer.engine_cycles", lambda *a, **k: SENTINEL)
    monkeypatch.setattr(sw, "engine_cycles", lambda *a, **k: SENTINEL)
    sim = SIMS[0]
    print(f"seed {SEED}, sim {sim}")
    # in this process (the patches do not reach Dask's workers), and no cached points
    res = sw.sweep(CFG, sim=sim, seed=SEED, quick=True, out=tmp_path, docs=None, layer=TINY,
                   local=True, cache=False)
    assert len(res["rtl"]) == 4
    for r in res["rtl"]:
        assert r["source"] == f"rtl-{sim}"
        w, a = sw._operands(TINY, r["d_w"], r["d_a"], r["seed"])
        ones_w, ones_a = np.ones_like(w, np.int64), np.ones_like(a, np.int64)
        nz_w, nz_a = (w != 0).astype(np.int64), (a != 0).astype(np.int64)
        expect = {"double": int(conv2d_golden(nz_w, nz_a, 1, 1).sum()),
                  "weight-only": int(conv2d_golden(nz_w, ones_a, 1, 1).sum()),
                  "dense": int(conv2d_golden(ones_w, ones_a, 1, 1).sum())}
        for mode in sw.MODES:
            got = (r[f"cycles_{mode}"], r[f"model_{mode}"], r[f"macs_{mode}"])
            print(mode, r["d_w"], r["d_a"], "cycles/model/macs", got, "expected macs",
                  expect[mode])
            assert r[f"cycles_{mode}"] != SENTINEL and r[f"cycles_{mode}"] > 0
            assert r[f"model_{mode}"] == SENTINEL
            assert r[f"macs_{mode}"] == expect[mode]
        assert r["nonzero_pairs"] == expect["double"]
        assert r["speedup_vs_dense"] == pytest.approx(r["cycles_dense"] / r["cycles_double"])
        # zero skipping can only remove work
        assert r["cycles_double"] <= r["cycles_weight-only"] <= r["cycles_dense"]
    # the model grid really is the (patched) model
    assert res["model"] and all(m["cycles_double"] == SENTINEL for m in res["model"])


def test_outputs_written_from_rows(tmp_path: Path, monkeypatch) -> None:
    """The RTL points as tasks on a local Dask cluster of two workers."""
    monkeypatch.setenv("DS_TASK_CACHE_DIR", str(tmp_path / "tasks"))
    sim = SIMS[0]
    docs = tmp_path / "perf.md"
    docs.write_text("# Performance\n\nintro kept\n")
    res = sw.sweep(CFG, sim=sim, seed=SEED, quick=True, out=tmp_path / "o", docs=docs,
                   layer=TINY, grid=((0.25,), (0.5, 1.0)), anchors=[sw.ANCHORS[2]],
                   workers=2)
    assert res["anchors"][0]["row"]["d_w"] == sw.ANCHORS[2]["d_w"]
    rows = list(csv.DictReader((tmp_path / "o" / "sweep_rtl.csv").open()))
    assert [int(r["cycles_double"]) for r in rows[:2]] == \
        [r["cycles_double"] for r in res["rtl"]]
    for name in ("speedup.png", "utilization.png", "sweep_model.csv"):
        p = tmp_path / "o" / name
        assert p.exists() and p.stat().st_size > 1000, p
    text = docs.read_text()
    assert "intro kept" in text and sw.END in text
    for r in res["rtl"]:
        assert f"| {r['cycles_double']} |" in text
    assert sw.HEADING in text and text.count(sw.BEGIN) == 1
    # the section is what `doublesparse docs` renders from the sweep.json written beside
    # the CSVs (the committed page's section comes from docs/sweep/sweep.json the same way)
    data = json.loads((tmp_path / "o" / "sweep.json").read_text())
    assert data["rtl"] == json.loads(json.dumps(res["rtl"]))
    body = sw.markdown(data, "o/speedup.png", "o/utilization.png", "o/sweep_rtl.csv")
    assert block("sweep", body) in text
    # a second run replaces the table instead of appending another one
    write_section(docs, "sweep", "replaced")
    assert docs.read_text().count(sw.END) == 1 and "replaced" in docs.read_text()
    assert "intro kept" in docs.read_text()
