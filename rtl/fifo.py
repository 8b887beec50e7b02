"""A first-word-fall-through queue whose ``w_rdy`` is a flip-flop.

``FeedQueue`` behaves cycle for cycle like Amaranth's ``SyncFIFOBuffered`` of the same
depth (``depth - 1`` words in a memory with a registered read, one in the output
register), but computes ``w_rdy`` one cycle ahead and registers it. The engine ANDs
the P queues' ``w_rdy`` into the ``advance`` enable of its whole address pipeline and
sequencer; with ``SyncFIFOBuffered`` that enable began at each queue's level counter
(level -> compare -> AND over the queues -> the step logic), the routed critical path
of the board build. Here it begins at P flip-flops.

Members (as ``SyncFIFOBuffered``): ``w_data``, ``w_en``, ``w_rdy``; ``r_data``, ``r_en``,
``r_rdy``; ``level`` (words held, output register included); and ``w_rdy_next``, the value
``w_rdy`` takes next cycle (for a user that keeps its own registered copy of ``w_rdy``,
or of several queues' ``w_rdy`` ANDed, beside the logic it enables).
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["FeedQueue"]


class FeedQueue(wiring.Component):
    def __init__(self, width: int, depth: int):
        if depth < 1:
            raise ValueError(f"FeedQueue depth = {depth}: must be at least 1")
        if width < 1:
            raise ValueError(f"FeedQueue width = {width}: must be at least 1")
        self.width, self.depth = width, depth
        super().__init__({
            "w_data": In(width), "w_en": In(1), "w_rdy": Out(1),
            "r_data": Out(width), "r_en": In(1), "r_rdy": Out(1),
            "level": Out(range(depth + 1)),
            "w_rdy_next": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        do_write = self.w_rdy & self.w_en
        do_read = self.r_rdy & self.r_en
        if self.depth == 1:
            # one register: w_rdy and r_rdy are functions of the level flip-flop
            m.d.comb += [self.w_rdy.eq(self.level == 0), self.r_rdy.eq(self.level == 1),
                         self.w_rdy_next.eq(~do_write & (do_read | (self.level == 0)))]
            with m.If(do_write):
                m.d.sync += [self.r_data.eq(self.w_data), self.level.eq(1)]
            with m.If(do_read):
                m.d.sync += self.level.eq(0)
            return m

        inner_depth = self.depth - 1
        inner_level = Signal(range(inner_depth + 1))
        inner_r_rdy = inner_level != 0
        w_rdy = Signal(init=1)
        m.d.comb += self.w_rdy.eq(w_rdy)
        do_inner_read = inner_r_rdy & (~self.r_rdy | self.r_en)

        storage = m.submodules.storage = Memory(shape=self.width, depth=inner_depth, init=[])
        w_port = storage.write_port()
        r_port = storage.read_port(domain="sync")
        produce = Signal(range(inner_depth))
        consume = Signal(range(inner_depth))

        def incr(v):
            return Mux(v == inner_depth - 1, 0, v + 1)

        m.d.comb += [w_port.addr.eq(produce), w_port.data.eq(self.w_data),
                     w_port.en.eq(do_write),
                     r_port.addr.eq(consume), self.r_data.eq(r_port.data),
                     r_port.en.eq(do_inner_read)]
        with m.If(do_write):
            m.d.sync += produce.eq(incr(produce))
        with m.If(do_inner_read):
            m.d.sync += consume.eq(incr(consume))

        # next inner level, and w_rdy for the next cycle from it
        up = do_write & ~do_inner_read
        down = do_inner_read & ~do_write
        with m.If(up):
            m.d.sync += inner_level.eq(inner_level + 1)
        with m.Elif(down):
            m.d.sync += inner_level.eq(inner_level - 1)
        # full next cycle: full now and no read, or one short of full and a write only
        m.d.comb += self.w_rdy_next.eq(~(((inner_level == inner_depth) & ~down)
                                         | ((inner_level == inner_depth - 1) & up)))
        m.d.sync += w_rdy.eq(self.w_rdy_next)

        with m.If(do_inner_read):
            m.d.sync += self.r_rdy.eq(1)
        with m.Elif(self.r_en):
            m.d.sync += self.r_rdy.eq(0)
        m.d.comb += self.level.eq(inner_level + self.r_rdy)
        return m
