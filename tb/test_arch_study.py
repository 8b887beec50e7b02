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
                                  ("chunk join J16 M2 (rtl/pe)", st.CHOSEN, "EIE, 1 act/cycle")],
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
