"""cocotb on the PE's emitted Verilog under every simulator in ``DS_SIMS``: the density grid
for both operands on lengths that are not multiples of J, extreme values, empty
accumulations, random stalls on all three streams, counters and the cycle model; for
M = 1, 2 and 4 multipliers."""

from __future__ import annotations

import os

import numpy as np
import pytest

from doublesparse.sim.config import Config
from doublesparse.sim.pe_model import pe_chunks, pe_cycles, pe_golden
from doublesparse.tb.runner import run_cocotb
from doublesparse.tb.stimulus import random_tensor

SIMS = [s for s in os.environ.get("DS_SIMS", "verilator,icarus").split(",") if s]
SEED = int(os.environ.get("DS_SEED", "99"))
DENS = (0.0, 0.05, 0.25, 0.5, 1.0)
CONFIGS = {"M1": Config(multipliers=1), "M2": Config(), "M4": Config(multipliers=4,
                                                                      join_width=32)}


def _segment(cfg: Config, ws, as_) -> tuple[dict, dict]:
    wc, ac = pe_chunks(ws, cfg), pe_chunks(as_, cfg)
    gold = pe_golden(ws, as_, cfg)
    # second, independent reference: numpy einsum over zero-padded int64 vectors
    n = max(len(w) for w in ws)
    W = np.zeros((len(ws), n), np.int64)
    A = np.zeros((len(ws), n), np.int64)
    for i, (w, a) in enumerate(zip(ws, as_, strict=True)):
        W[i, :len(w)] = w
        A[i, :len(a)] = a
    assert [v for v, _ in gold] == np.einsum("ij,ij->i", W, A).tolist()
    seg = {"w": [[c.mask, list(c.values), c.last] for c in wc],
           "a": [[c.mask, list(c.values), c.last] for c in ac],
           "n_results": len(ws), "expected": [[v, int(e)] for v, e in gold]}
    pairs = sum(int(np.count_nonzero((w != 0) & (a != 0))) for w, a in zip(ws, as_,
                                                                            strict=True))
    info = {"pairs": pairs, "model": pe_cycles(wc, ac, cfg),
            "empty": sum((x.mask & y.mask) == 0 for x, y in zip(wc, ac, strict=True))}
    return seg, info


@pytest.mark.parametrize("sim", SIMS)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_pe_rtl(sim: str, name: str) -> None:
    cfg = CONFIGS[name]
    seed = SEED + cfg.multipliers
    print(f"seed {seed} (set DS_SEED to change); {name}: J={cfg.join_width}")
    rng = np.random.default_rng(seed)
    J = cfg.join_width
    ws, as_ = [], []
    for dw in DENS:
        for da in DENS:
            n = int(rng.integers(1, 4 * J)) | 1      # odd, so never a multiple of J
            ws.append(random_tensor(rng, (n,), dw))
            as_.append(random_tensor(rng, (n,), da))
    extremes_w = [np.full(3 * J + 5, -128, np.int8), np.full(J + 1, 127, np.int8),
                  np.zeros(2 * J, np.int8), np.full(1, -128, np.int8)]
    extremes_a = [np.full(3 * J + 5, -128, np.int8), np.full(J + 1, -128, np.int8),
                  random_tensor(rng, (2 * J,), 1.0), np.full(1, -128, np.int8)]
    segs, infos = [], []
    for w, a in ((ws, as_), (ws, as_), (extremes_w, extremes_a)):
        s, i = _segment(cfg, w, a)
        segs.append(s)
        infos.append(i)
    # segment 0 without stalls (cycle model), 1 and 2 with stalls on all three streams
    job = {"segments": segs, "p_w": 1.0, "p_a": 1.0, "p_ready": 1.0, "seed": seed}
    r0 = run_cocotb("pe", cfg, sim, "doublesparse.tb.cocotb_pe", dict(job, segments=segs[:1]))
    r1 = run_cocotb("pe", cfg, sim, "doublesparse.tb.cocotb_pe",
                    dict(job, segments=segs[1:], p_w=0.7, p_a=0.5, p_ready=0.6))
    res = r0["segments"] + r1["segments"]
    for seg, info, r in zip(segs, infos, res, strict=True):
        assert r["error"] == 0
        assert r["counters"]["macs"] == info["pairs"]
        assert r["counters"]["empty_pairs"] == info["empty"]
        assert [tuple(x) for x in r["results"]] == [tuple(x) for x in seg["expected"]]
    m = infos[0]["model"]
    got = (res[0]["cycles"], res[0]["counters"]["busy_cycles"],
           res[0]["counters"]["idle_slots"])
    assert got == (m.cycles, m.busy_cycles, m.idle_slots), f"rtl {got} model {m}"
    assert res[2]["results"][0] == [(3 * J + 5) * 16384, 0]
    assert res[2]["results"][2] == [0, 0]
