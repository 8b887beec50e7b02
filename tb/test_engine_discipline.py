"""The engine's host-port discipline under cocotb, on the default config's Verilog (the
simulator builds the other engine tests use), under every simulator in ``DS_SIMS``:

- a write to every register and every memory region while a job runs is ignored and
  counted (IGNORED), the job's result is unchanged and the next job (memories not
  reloaded) is correct, so nothing was written;
- CTRL abort at random points of a job and of ENCODE returns the engine to idle with
  ABORTED at the first STATUS read, and the next job is correct;
- the engine's reset at random points, then a reloaded job, is correct;
- a fuzz of random descriptors (500 under Verilator, 60 under Icarus; each field kept, or
  replaced by an extreme or a random value): every one ends in an error code or a result
  within its cycle budget (never a hang), the unchanged descriptor's result is the golden
  one, and a good job after each batch is correct.

The seed is printed; set ``DS_SEED`` to change it.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from doublesparse.rtl.engine import DESC, REG, EngineError
from doublesparse.rtl.engine.regmap import (
    REGION_SHIFT,
    REGIONS,
    REGISTERS,
    chunk_address,
    entry_words,
)
from doublesparse.sim.config import Config
from doublesparse.sim.conv import conv2d_golden, make_job, requantize
from doublesparse.sim.engine_model import engine_cycles
from doublesparse.tb.cocotb_engine import NAMES
from doublesparse.tb.runner import engine_run_dict, run_engine_rtl
from doublesparse.tb.stimulus import random_tensor

SIMS = [s for s in os.environ.get("DS_SIMS", "verilator,icarus").split(",") if s]
SEED = int(os.environ.get("DS_SEED", "11"))
CFG = Config()
# descriptors fuzzed: 500 under Verilator; Icarus runs the same generator on fewer (it is
# about ten times slower), unless DS_FUZZ sets the count
FUZZ = {"verilator": 500, "icarus": 60}


def _every_write(cfg: Config, rng: np.random.Generator) -> list[list[int]]:
    """One write to every register and to every memory region (each PE's for per-PE
    regions), with random data."""
    out = []
    for r in REGISTERS:
        if r.name == "CTRL":
            out.append([REG["CTRL"], 3])          # start and encode: ignored while busy
            continue
        for p in range(cfg.pes if r.per_pe else 1):
            out.append([r.addr + p, int(rng.integers(0, 1 << 32))])
    for g in REGIONS:
        if g.name == "CSR":
            continue
        for p in range(cfg.pes if g.per_pe else 1):
            if g.chunks:
                n = entry_words(g.name, cfg)
                for w in range(n):                # a whole entry: its last word stores it
                    out.append([chunk_address(g.name, 0, w, cfg, pe=p),
                                int(rng.integers(0, 1 << 32))])
            else:
                out.append([((g.base + p) << REGION_SHIFT) | 1, int(rng.integers(0, 1 << 32))])
    return out


def _check_out(res: dict, ref: np.ndarray, what: str) -> None:
    assert res["error"] == 0, (what, res["error"], res["status"])
    y = np.array(res["out"]).reshape(ref.shape)
    if not np.array_equal(y, ref):
        bad = tuple(np.argwhere(y != ref)[0])
        pytest.fail(f"{what}: first difference at {bad}: rtl {y[bad]} golden {ref[bad]}")


@pytest.mark.parametrize("sim", SIMS)
def test_writes_abort_reset_during_runs(sim: str) -> None:
    print(f"seed {SEED} (set DS_SEED to change)")
    rng = np.random.default_rng(SEED)
    w = random_tensor(rng, (6, 20, 3, 3), 0.4)
    a = random_tensor(rng, (20, 5, 6), 0.5)
    req = (rng.integers(20, 200, 6), np.full(6, 10))
    ref = requantize(conv2d_golden(w, a, 1, 1), *req, relu=True)
    job = make_job(w, a, CFG, 1, 1, req, True)
    good = engine_run_dict(job, CFG)
    again = dict(good, load=False)
    reload = dict(good, load=True)
    # the job's length (the model, plus the settle and check cycles) bounds the random
    # points below
    length = engine_cycles(job, CFG) + 40
    runs: list[dict] = [good]
    kinds: list[str] = ["first"]
    # 1. every write while busy, back to back from cycle 20, then a job without reloading
    writes = _every_write(CFG, rng)
    assert 20 + len(writes) < length, "the writes must land while the job runs"
    during = [{"at": 20 + i, "write": wv} for i, wv in enumerate(writes)]
    runs += [dict(again, during=during), again]
    kinds += ["writes", "after writes"]
    # 2. aborts at random points of the job, each followed by a job
    for _ in range(6):
        at = int(rng.integers(0, length))
        runs += [dict(again, during=[{"at": at, "abort": True}], n_out=0), again]
        kinds += [f"abort at {at}", "after abort"]
    # 3. an abort during ENCODE (the activations are then reloaded)
    runs += [dict(again, encode=True, encode_during=[{"at": 3, "abort": True}]), reload]
    kinds += ["abort in encode", "after encode abort"]
    # 4. the engine's reset at random points, then a reloaded job
    for _ in range(3):
        at = int(rng.integers(0, length))
        runs += [dict(again, during=[{"at": at, "reset": True}], n_out=0), reload]
        kinds += [f"reset at {at}", "after reset"]
    res = run_engine_rtl(CFG, runs, sim=sim)
    for kind, r in zip(kinds, res, strict=True):
        print(f"{kind}: status {r['status']:#x}, error {r['error']}, "
              f"ignored {r.get('ignored')}")
        if kind == "writes":
            _check_out(r, ref, "the job written to while it ran")
            assert r["ignored"] == len(writes), (r["ignored"], len(writes))
        elif kind.startswith("abort in encode"):
            _check_out(r, ref, "the job before the aborted ENCODE")
            s = r["encode_first_status"]
            assert s & 1 == 0 and (s >> 4) == EngineError.ABORTED, f"{s:#x}"
        elif kind.startswith("abort"):
            s = r["first_status"]
            # an abort that lands after the job's end changes nothing: the job is done
            if (s >> 4) == EngineError.ABORTED:
                assert s & 0b11 == 0b10, f"{kind}: status {s:#x}"
            else:
                assert s & 1 == 0 and (s >> 4) == 0, f"{kind}: status {s:#x}"
        elif kind.startswith("reset"):
            assert r["first_status"] & 1 == 0, (kind, r["first_status"])
        else:
            _check_out(r, ref, kind)


@pytest.mark.parametrize("sim", SIMS)
def test_descriptor_fuzz(sim: str) -> None:
    """Random descriptors: never a hang; the unchanged one gives the golden result; a good
    job after every batch is correct."""
    n_fuzz = int(os.environ.get("DS_FUZZ", FUZZ.get(sim, 60)))
    print(f"seed {SEED} (set DS_SEED to change), {n_fuzz} descriptors")
    rng = np.random.default_rng(SEED + 1)
    w = random_tensor(rng, (5, 9, 3, 3), 0.5)
    a = random_tensor(rng, (9, 4, 5), 0.6)
    ref = conv2d_golden(w, a, 1, 1)
    job = make_job(w, a, CFG, 1, 1)
    good = engine_run_dict(job, CFG)
    base = good["desc"]
    extremes = [0, 1, 2, 7, 8, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF]
    runs, descs = [good], [base]
    for i in range(n_fuzz):
        d = dict(base)
        for name in DESC:
            key = "raw" if name == "MODE" else NAMES[name]
            if name == "MODE":
                continue
            u = rng.random()
            if u < 0.15:
                d[key] = int(rng.choice(extremes))
            elif u < 0.3:
                d[key] = int(rng.integers(0, 17))
        if i % 10 == 0:
            d = dict(base)                        # the unchanged descriptor, checked
        descs.append(d)
        # a job the check lets through takes at most (steps x scan width) cycles; a refused
        # one ends within tens of cycles
        steps = d["Ho"] * d["Wo"] * d["F"] * d["R"] * d["S"] * d["nch"]
        runs.append(dict(good, load=False, desc=d, n_out=good["n_out"] if d == base else 0,
                         budget=min(4 * steps * CFG.scan_width + 10_000, 1 << 20)))
        if i % 100 == 99 or i == n_fuzz - 1:
            descs.append(base)
            runs.append(dict(good, load=False))
    res = run_engine_rtl(CFG, runs, sim=sim)
    codes: dict[int, int] = {}
    for d, r in zip(descs, res, strict=True):
        assert not r["hung"], ("hung on", d)
        codes[r["error"]] = codes.get(r["error"], 0) + 1
        if d == base:
            _check_out(r, ref, f"unchanged descriptor {d}")
    print("error codes over the fuzz:", {EngineError(k).name: v for k, v in codes.items()})
    assert codes.get(0, 0) and len(codes) > 2, codes
