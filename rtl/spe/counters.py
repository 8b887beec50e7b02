"""Counters: the scan PE's activity counters (``rtl/spe/``)."""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Counters"]


class Counters(wiring.Component):
    """``busy_cycles`` and ``macs``.

    The increments are registered first, so each counter shows an event one cycle after
    the cycle it was reported in; ``clear`` zeroes both and wins over the events of its
    own cycle.

    Members
    -------
    busy : In(1)
        The PE has a pair queued or anything in flight this cycle.
    hit : In(1)
        A product was issued this cycle.
    clear : In(1)
        Zero the counters.
    busy_cycles, macs : Out(32)
        Cycles with ``busy``; products issued.
    """

    def __init__(self):
        super().__init__({"busy": In(1), "hit": In(1), "clear": In(1),
                          "busy_cycles": Out(32), "macs": Out(32)})

    def elaborate(self, platform):
        m = Module()
        inc_busy = Signal()
        inc_macs = Signal()
        m.d.sync += [inc_busy.eq(self.busy & ~self.clear), inc_macs.eq(self.hit & ~self.clear)]
        with m.If(self.clear):
            m.d.sync += [self.busy_cycles.eq(0), self.macs.eq(0)]
        with m.Else():
            m.d.sync += [self.busy_cycles.eq(self.busy_cycles + inc_busy),
                         self.macs.eq(self.macs + inc_macs)]
        return m
