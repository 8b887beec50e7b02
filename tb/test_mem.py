# amaranth: UnusedElaboratable=no

"""BankedMemory (rtl/mem.py) in Amaranth's simulator against a Python list: random words
written with random gaps, then random reads whose pipeline steps (``r.en``) come with
random gaps. After the k-th step, ``r.data``
must show the word at the address taken ``stages`` steps earlier, for 1 and 2 register
stages and for one bank, banks of equal depth and a short last bank."""

from __future__ import annotations

import os

import numpy as np
import pytest
from amaranth.sim import Simulator

from doublesparse.rtl.mem import BankedMemory, LaneMemory

SEED = int(os.environ.get("DS_SEED", "11"))


async def _check_reads(ctx, dut, rng, ref, stages, p_step, checked) -> None:
    """300 cycles of random reads whose steps (``r.en``) come with chance ``p_step``:
    after each step past the first ``stages``, ``r.data`` must be the word at the address
    taken ``stages`` steps earlier. Appends the cycles checked to ``checked``."""
    taken = []                            # the address of every step, in order
    for t in range(300):
        step = int(rng.random() < p_step)
        a = int(rng.integers(0, len(ref)))
        ctx.set(dut.r.addr, a)
        ctx.set(dut.r.en, step)
        await ctx.tick()
        if step:
            taken.append(a)
        if len(taken) > stages:
            want, got = ref[taken[-1 - stages]], ctx.get(dut.r.data)
            assert got == want, (f"cycle {t}, after step {len(taken)}: r.data {got:#x}, "
                                 f"word {want:#x} at address {taken[-1 - stages]} "
                                 f"(taken {stages} steps before)")
            checked.append(t)


@pytest.mark.parametrize("stages", [1, 2])
@pytest.mark.parametrize("depth,bank_depth", [(16, 16), (64, 16), (40, 16)])
@pytest.mark.parametrize("p_step", [1.0, 0.5])
def test_banked_memory_reads(stages, depth, bank_depth, p_step) -> None:
    seed = SEED + 1000 * stages + depth + bank_depth + int(10 * p_step)
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    width = 20
    dut = BankedMemory(width, depth, bank_depth=bank_depth, stages=stages)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    ref = [int(x) for x in rng.integers(0, 1 << width, depth)]
    checked = []

    async def bench(ctx):
        # writes, in random order with random gaps
        for a in rng.permutation(depth):
            while rng.random() < 0.3:
                ctx.set(dut.w.en, 0)
                await ctx.tick()
            ctx.set(dut.w.addr, int(a))
            ctx.set(dut.w.data, ref[a])
            ctx.set(dut.w.en, 1)
            await ctx.tick()
        ctx.set(dut.w.en, 0)
        await ctx.tick()
        await ctx.tick()                  # the last write lands a cycle after its w.en
        await _check_reads(ctx, dut, rng, ref, stages, p_step, checked)

    sim.add_testbench(bench)
    sim.run()
    assert len(checked) > 100, len(checked)     # the reads did happen


@pytest.mark.parametrize("kw,word", [({"bank_depth": 12}, "bank_depth = 12"),
                                     ({"stages": 3}, "stages = 3"),
                                     ({"width": 0}, "width = 0")])
def test_banked_memory_bad_parameters(kw, word) -> None:
    args = {"width": 8, "depth": 32} | kw
    with pytest.raises(ValueError, match=word):
        BankedMemory(**args)


@pytest.mark.parametrize("lanes", [1, 2, 4])
def test_lane_memory(lanes) -> None:
    """LaneMemory: every lane writes its own words in the same cycles (local addresses),
    then random reads of full addresses ``local * lanes + lane`` with random step gaps
    show the word written there, ``stages`` steps later."""
    seed = SEED + 77 * lanes
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    width, depth, stages = 12, 64, 2
    dut = LaneMemory(width, depth, lanes, bank_depth=8, stages=stages)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    ref = [int(x) for x in rng.integers(0, 1 << width, depth)]
    checked = []

    async def bench(ctx):
        per = depth // lanes
        orders = [list(rng.permutation(per)) for _ in range(lanes)]
        while any(orders):
            for ln in range(lanes):
                go = bool(orders[ln]) and rng.random() < 0.8
                ctx.set(dut.w[ln].en, int(go))
                if go:
                    loc = int(orders[ln].pop())
                    ctx.set(dut.w[ln].addr, loc)
                    ctx.set(dut.w[ln].data, ref[loc * lanes + ln])
            await ctx.tick()
        for ln in range(lanes):
            ctx.set(dut.w[ln].en, 0)
        await ctx.tick()
        await ctx.tick()
        await _check_reads(ctx, dut, rng, ref, stages, 0.6, checked)

    sim.add_testbench(bench)
    sim.run()
    assert len(checked) > 100, len(checked)
    with pytest.raises(ValueError, match="lanes = 3"):
        LaneMemory(8, 48, 3)
