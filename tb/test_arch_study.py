"""The architecture study's model (sim/arch_study.py): its fluid recurrence, its counts of
effectual work against an independent convolution of the masks, and the ceiling it must
reproduce for the chunk join."""

import numpy as np
import pytest

from doublesparse.sim import arch_study as st
from doublesparse.sim.conv import Layer, conv2d_golden

SEED = 20261203


def test_finish_is_the_recurrence():
    rng = np.random.default_rng(SEED)
    for _ in range(20):
        n = int(rng.integers(1, 60))
        arrive = np.sort(rng.random(n) * n)
        cost = rng.random(n) * 2
        d = 0.0
        for a, c in zip(arrive, cost, strict=True):
            d = max(d, a) + c
        assert st._finish(arrive, cost) == pytest.approx(d), (arrive, cost)


@pytest.mark.parametrize("arch", [a for a in st.ARCHES if a.name in
                                  ("chunk join J16 M2 (rtl/pe)", st.CHOSEN, "EIE, 1 act/cycle",
                                   "J64 two filters an entry, pooled")],
                         ids=lambda a: a.name)
def test_effectual_and_dense_counts(arch):
    layer = Layer(K=8, C=20, R=3, S=3, H=6, W=5, stride=2, pad=1)
    wm, am = st.masks(layer, 0.3, 0.4, SEED)
    px = st._pixels(layer, None, SEED)
    r = st.run_arch(arch, layer, wm, am, 8, px)
    eff = conv2d_golden(wm.astype(np.int8), am.astype(np.int8), 2, 1).sum()
    dense = conv2d_golden(np.ones_like(wm, np.int8), np.ones_like(am, np.int8), 2, 1).sum()
    print(f"{arch.name}: model effectual {r['effectual']} / dense {r['dense']}, "
          f"conv of masks {eff} / {dense}")
    assert r["effectual"] == eff and r["dense"] == dense
    assert r["cycles"] >= r["effectual"] / 8


def test_chunk_join_ceiling_and_the_chosen_one_beyond_it():
    layer = st.TARGET_LAYER
    wm, am = st.masks(layer, 0.25, 0.1, SEED)
    px = st._pixels(layer, None, SEED)
    by = {a.name: a for a in st.ARCHES}
    speed = {}
    for name in ("chunk join J16 M2 (rtl/pe)", st.CHOSEN):
        r = st.run_arch(by[name], layer, wm, am, 8, px)
        speed[name] = r["dense"] / 8 / r["cycles"]
    print(speed)
    assert speed["chunk join J16 M2 (rtl/pe)"] <= 16 / 2 + 1e-9
    assert speed[st.CHOSEN] > 2 * 16 / 2


def _two_ended(counts: list[int]) -> int:
    """Cycles two multipliers take for one entry's matches of two filters, simulated: each
    takes the lowest remaining match of its own filter, or the highest of the other
    filter when its own has none left."""
    lo = [0, 0]
    hi = list(counts)
    cycles = 0
    while any(h > low for low, h in zip(lo, hi, strict=True)):
        cycles += 1
        for me in (0, 1):
            other = 1 - me
            if hi[me] > lo[me]:
                lo[me] += 1
            elif hi[other] > lo[other]:
                hi[other] -= 1
    return cycles


def test_pooled_entry_cost_is_the_two_ended_extraction():
    """The study's pooled cost (ceil of the sum over the multipliers) against a cycle
    simulation of two multipliers taking matches from both ends of an entry."""
    rng = np.random.default_rng(SEED)
    arch = next(a for a in st.ARCHES if a.name == "J64 two filters an entry, pooled")
    layer = Layer(K=4, C=64, R=1, S=1, H=1, W=6, stride=1, pad=0)
    for trial in range(30):
        wm, am = st.masks(layer, float(rng.uniform(0.02, 1)), float(rng.uniform(0.02, 1)),
                          SEED + trial)
        px = st._pixels(layer, None, SEED)
        r = st.run_arch(arch, layer, wm, am, 4, px)     # 2 PEs x 2 multipliers
        slots = st.schedule(wm, 2)
        want = 0.0
        for p in range(2):
            t = 0.0
            for (oy, ox) in px:
                n = [int((wm[k, :, 0, 0] & am[:, oy, ox]).sum()) for k in slots[p]]
                t += max(_two_ended(n), 1)            # the last entry always costs a cycle
            want = max(want, t)
        print(f"trial {trial}: model {r['cycles']}, simulated {want}")
        assert r["cycles"] == pytest.approx(max(want, 4 * len(px) / arch.out_lanes))


def test_area_model_reproduces_the_measured_build():
    """The scan area terms, applied to the built engine's parts, give back the 93,728 LUT
    sites Yosys and nextpnr packed for the 32-PE preset (within 1 %)."""
    chosen = next(a for a in st.ARCHES if a.name == st.CHOSEN)
    lut = chosen.area(32)["lut4"]
    print(f"model {lut}, measured 93728")
    assert abs(lut - 93_728) / 93_728 < 0.01
