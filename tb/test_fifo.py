"""FeedQueue (rtl/fifo.py) in Amaranth's simulator, beside Amaranth's SyncFIFOBuffered of
the same depth driven by the same random writes (random valid gaps) and reads (random
backpressure): every output (w_rdy, r_rdy, r_data when r_rdy, level) equal cycle for cycle,
w_rdy_next equal to the next cycle's w_rdy, and the words read equal to the words written,
in order (a Python deque)."""

from __future__ import annotations

import collections
import os

import numpy as np
import pytest
from amaranth import Module
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.sim import Simulator

from doublesparse.rtl.fifo import FeedQueue

SEED = int(os.environ.get("DS_SEED", "11"))


@pytest.mark.parametrize("depth", [1, 2, 3, 8])
@pytest.mark.parametrize("p_w,p_r", [(0.9, 0.9), (0.9, 0.3), (0.3, 0.9), (0.6, 0.6)])
def test_feed_queue_matches_syncfifobuffered(depth, p_w, p_r) -> None:
    seed = SEED + depth * 100 + int(10 * p_w) * 10 + int(10 * p_r)
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    width = 12
    m = Module()
    m.submodules.dut = dut = FeedQueue(width, depth)
    m.submodules.ref = ref = SyncFIFOBuffered(width=width, depth=depth)
    sim = Simulator(m)
    sim.add_clock(1e-6)
    cycles = 600
    log = []

    async def bench(ctx):
        sent = collections.deque()
        got = 0
        prev_next = 1                     # w_rdy after reset (an empty queue)
        for t in range(cycles):
            w_en = int(rng.random() < p_w)
            r_en = int(rng.random() < p_r)
            data = int(rng.integers(0, 1 << width))
            for f in (dut, ref):
                ctx.set(f.w_en, w_en)
                ctx.set(f.w_data, data)
                ctx.set(f.r_en, r_en)
            a = [ctx.get(x) for x in (dut.w_rdy, dut.r_rdy, dut.level)]
            b = [ctx.get(x) for x in (ref.w_rdy, ref.r_rdy, ref.level)]
            assert a == b, f"cycle {t}: FeedQueue (w_rdy, r_rdy, level) {a}, " \
                           f"SyncFIFOBuffered {b}"
            assert a[0] == prev_next, (f"cycle {t}: w_rdy {a[0]}, w_rdy_next the cycle "
                                       f"before {prev_next}")
            prev_next = ctx.get(dut.w_rdy_next)
            if a[1]:
                da, db = ctx.get(dut.r_data), ctx.get(ref.r_data)
                assert da == db, f"cycle {t}: r_data FeedQueue {da:#x}, reference {db:#x}"
                if r_en:
                    assert sent, f"cycle {t}: read from an empty queue"
                    exp = sent.popleft()
                    assert da == exp, f"cycle {t}: read {da:#x}, written {exp:#x}"
                    got += 1
            if a[0] and w_en:
                sent.append(data)
            await ctx.tick()
        log.append(got)

    sim.add_testbench(bench)
    sim.run()
    # the stream must have moved (a test that cannot fail on a stuck queue is no test)
    assert log and log[0] > cycles * min(p_w, p_r) / 4, log
