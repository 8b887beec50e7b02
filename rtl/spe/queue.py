"""PairQueue: the scan PE's queue of joined pairs, in distributed RAM (``rtl/spe/``)."""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.hdl import Assert
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ...sim.config import Config
from .layouts import pair_layout

__all__ = ["PairQueue", "PAIR_QUEUE", "QUEUE_DELAY"]

# pairs the queue holds (a distributed-RAM circular buffer: 16 words cost the LUT RAM of 4)
PAIR_QUEUE = 16
# cycles from a pair taken on ``i`` (queue empty) to the cycle it shows as the head
QUEUE_DELAY = 1


class PairQueue(wiring.Component):
    """A circular buffer of whole pairs; the head is read asynchronously.

    A pair taken on ``i`` is written at the tail and shows on ``head`` (read through an
    asynchronous port at the registered head pointer) from the next cycle. ``i.ready`` is a
    register: high while fewer than ``PAIR_QUEUE`` pairs are held, loaded each cycle from
    the next count (flow control by credit: it never looks at the consumer's state beyond
    this cycle's ``pop``).

    Parameters
    ----------
    cfg : Config
        ``scan_width``, ``wval_mem_words`` (the pair's field widths).
    checks : bool
        Add a simulation assertion that ``i.ready`` equals ``count < PAIR_QUEUE``.

    Members
    -------
    i : In(stream.Signature(pair_layout(cfg)))
        Pairs in; ``ready`` is a flip-flop.
    head : Out(pair_layout(cfg))
        The oldest pair (meaningful while ``head_valid``).
    head_valid : Out(1)
        The queue holds a pair (a register).
    pop : In(1)
        The head pair leaves at the end of this cycle (only while ``head_valid``).
    busy : Out(1)
        The queue holds a pair.
    """

    def __init__(self, cfg: Config, *, checks: bool = False):
        self.cfg, self.checks = cfg, checks
        super().__init__({
            "i": In(stream.Signature(pair_layout(cfg))),
            "head": Out(pair_layout(cfg)),
            "head_valid": Out(1),
            "pop": In(1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        D = PAIR_QUEUE
        m.submodules.mem = mem = Memory(shape=pair_layout(self.cfg), depth=D, init=[])
        wr, rd = mem.write_port(), mem.read_port(domain="comb")
        tail = Signal(range(D))
        head = Signal(range(D))
        count = Signal(range(D + 1))
        ready = Signal(init=1)                       # count < D, a register
        push = self.i.valid & ready
        pop = self.pop
        m.d.comb += [self.i.ready.eq(ready),
                     wr.addr.eq(tail), wr.data.eq(self.i.payload), wr.en.eq(push),
                     rd.addr.eq(head), self.head.eq(rd.data),
                     self.busy.eq(self.head_valid)]
        m.d.sync += [tail.eq(tail + push), head.eq(head + pop),
                     count.eq(count + push - pop)]
        # next values from comparisons of the present count, chosen by push and pop
        m.d.sync += [
            ready.eq(Mux(push, Mux(pop, count < D, count < D - 1), pop | (count < D))),
            self.head_valid.eq(Mux(pop, Mux(push, count > 0, count > 1),
                                   push | (count > 0))),
        ]
        if self.checks:
            m.d.sync += [Assert(ready == (count < D), "PairQueue ready differs from count < D"),
                         Assert(self.head_valid == (count > 0),
                                "PairQueue head_valid differs from count > 0"),
                         Assert(~pop | self.head_valid, "PairQueue popped while empty")]
        return m
