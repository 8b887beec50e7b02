"""The PE in Amaranth's simulator: dot products at every density pair, odd lengths, extreme
values, empty accumulations, random stalls on all three streams, the cycle model, counters
and error handling."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from doublesparse.rtl.pe import PEError
from doublesparse.sim.config import Config
from doublesparse.sim.pe_model import pe_chunks, pe_cycles, pe_golden
from doublesparse.tb.pe_harness import run_pe
from doublesparse.tb.stimulus import random_tensor

SEED = int(os.environ.get("DS_SEED", "11"))
DENS = (0.0, 0.05, 0.25, 0.5, 1.0)
WAVES = Path(__file__).resolve().parent.parent / "build" / "waves"


def _py_dot(w, a) -> int:
    """Second reference: plain Python integers."""
    return sum(int(x) * int(y) for x, y in zip(w, a, strict=True))


def _check(cfg, ws, as_, name, **kw):
    wc, ac = pe_chunks(ws, cfg), pe_chunks(as_, cfg)
    run = run_pe(cfg, wc, ac, len(ws), **kw)
    gold = pe_golden(ws, as_, cfg)
    if run.hung or run.results != gold:
        WAVES.mkdir(parents=True, exist_ok=True)
        vcd = WAVES / f"pe_{name}.vcd"
        run_pe(cfg, wc, ac, len(ws), vcd=str(vcd), **kw)
        bad = next((i for i, (r, g) in enumerate(zip(run.results, gold, strict=False))
                    if r != g), len(run.results))
        pytest.fail(f"{name}: hung={run.hung}; accumulation {bad}: "
                    f"rtl {run.results[bad] if bad < len(run.results) else None} "
                    f"golden {gold[bad] if bad < len(gold) else None}; waveform {vcd}")
    for (v, err), w, a in zip(run.results, ws, as_, strict=True):
        ref = _py_dot(w, a)
        assert v == (ref if not err else (ref + (1 << (cfg.acc_width - 1))) % (
            1 << cfg.acc_width) - (1 << (cfg.acc_width - 1))), (v, ref)
    return run, wc, ac


@pytest.mark.parametrize("stalls", [(1.0, 1.0, 1.0), (0.7, 0.5, 0.6)],
                         ids=["nostall", "stall"])
def test_pe_density_grid(stalls) -> None:
    cfg = Config()
    seed = SEED
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    ws, as_ = [], []
    for dw in DENS:
        for da in DENS:
            for _ in range(2):
                n = int(rng.integers(1, 5 * cfg.join_width))
                ws.append(random_tensor(rng, (n,), dw))
                as_.append(random_tensor(rng, (n,), da))
    run, wc, ac = _check(cfg, ws, as_, "grid", p_w=stalls[0], p_a=stalls[1],
                         p_ready=stalls[2], seed=seed)
    pairs = sum(int(np.count_nonzero((w != 0) & (a != 0))) for w, a in zip(ws, as_,
                                                                            strict=True))
    assert run.counters["macs"] == pairs
    assert run.counters["empty_pairs"] == sum((x.mask & y.mask) == 0
                                              for x, y in zip(wc, ac, strict=True))
    assert run.error == PEError.OK
    if stalls == (1.0, 1.0, 1.0):
        model = pe_cycles(wc, ac, cfg)
        assert (run.cycles, run.counters["busy_cycles"], run.counters["idle_slots"]) == \
            (model.cycles, model.busy_cycles, model.idle_slots)


@pytest.mark.parametrize("mult", [1, 2])
def test_pe_extremes_and_empty(mult: int) -> None:
    cfg = Config(multipliers=mult)
    rng = np.random.default_rng(SEED + mult)
    ws = [np.full(300, -128, np.int8), np.full(17, 127, np.int8), np.zeros(40, np.int8),
          np.full(1, -128, np.int8), random_tensor(rng, (50,), 1.0, extreme=True)]
    as_ = [np.full(300, -128, np.int8), np.full(17, -128, np.int8),
           random_tensor(rng, (40,), 1.0), np.full(1, -128, np.int8),
           random_tensor(rng, (50,), 1.0, extreme=True)]
    run, wc, ac = _check(cfg, ws, as_, f"extreme{mult}", p_w=0.8, p_a=0.8, p_ready=0.5,
                         seed=SEED)
    assert run.results[0] == (300 * 16384, False)
    assert run.results[2] == (0, False)


def test_pe_too_long_wraps_and_flags() -> None:
    cfg = Config(acc_width=20, max_reduction=16)   # one chunk of 16 channels at most
    ws = [np.full(16, -128, np.int8), np.full(40, -128, np.int8), np.full(16, 3, np.int8)]
    as_ = [np.full(16, 1, np.int8), np.full(40, -128, np.int8), np.full(16, 5, np.int8)]
    run, _, _ = _check(cfg, ws, as_, "toolong")
    assert run.results[1][1] and not run.results[0][1] and not run.results[2][1]
    assert run.error == PEError.TOO_LONG


def test_pe_last_mismatch_recovers() -> None:
    cfg = Config()
    rng = np.random.default_rng(SEED)
    w_ok, a_ok = random_tensor(rng, (40,), 0.5), random_tensor(rng, (40,), 0.5)
    # accumulation 1: weights end after 2 chunks, activations after 4
    wc = pe_chunks([w_ok, np.ones(20, np.int8), w_ok], cfg)
    ac = pe_chunks([a_ok, np.ones(50, np.int8), a_ok], cfg)
    run = run_pe(cfg, wc, ac, 3, p_w=0.7, p_a=0.7, p_ready=0.7, seed=SEED)
    good = _py_dot(w_ok, a_ok)
    assert not run.hung
    assert run.results[0] == (good, False) and run.results[2] == (good, False)
    assert run.results[1][1], run.results
    assert run.error == PEError.LAST_MISMATCH
