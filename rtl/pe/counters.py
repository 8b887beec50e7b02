"""Counters: the PE's activity counters and sticky error code (``docs/pe.md``)."""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ...sim.config import Config
from .window import stats_layout

__all__ = ["Counters"]


class Counters(wiring.Component):
    """Counters and the sticky error code.

    The increments are registered first: each counter shows an event one cycle after the
    cycle the event was reported in (``error`` shows a fault the cycle after it). ``clear``
    wins over events of the same cycle.

    Parameters
    ----------
    cfg : Config
        ``multipliers`` (M).

    Members
    -------
    busy : In(1)
        The PE has work this cycle.
    stats : In(stream.Signature(stats_layout(M), always_ready=True))
        One report per select step (:func:`~.window.stats_layout`).
    fault : In(2)
        An error code raised this cycle (0: none).
    clear : In(1)
        Zero the counters and ``error``.
    error : Out(2)
        The last nonzero ``fault`` since ``clear``.
    busy_cycles, macs, idle_slots, empty_pairs : Out(32)
        Cycles with ``busy``; products selected; multiplier slots left empty in steps
        where the window held a pair (M - products); pairs with no match.
    """

    def __init__(self, cfg: Config):
        self.cfg = cfg
        super().__init__({
            "busy": In(1),
            "stats": In(stream.Signature(stats_layout(cfg.multipliers), always_ready=True)),
            "fault": In(2),
            "clear": In(1),
            "error": Out(2),
            "busy_cycles": Out(32),
            "macs": Out(32),
            "idle_slots": Out(32),
            "empty_pairs": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        M = self.cfg.multipliers
        st = self.stats.payload
        step = self.stats.valid & ~self.clear
        inc_busy = Signal()
        inc_macs = Signal(range(M + 1))
        inc_idle = Signal(range(M + 1))
        inc_empty = Signal(2)
        m.d.sync += [inc_busy.eq(self.busy & ~self.clear),
                     inc_macs.eq(Mux(step, st.products, 0)),
                     inc_idle.eq(Mux(step & st.held, M - st.products, 0)),
                     inc_empty.eq(Mux(step, st.empty, 0))]
        with m.If(self.clear):
            m.d.sync += [self.busy_cycles.eq(0), self.macs.eq(0), self.idle_slots.eq(0),
                         self.empty_pairs.eq(0), self.error.eq(0)]
        with m.Else():
            m.d.sync += [self.busy_cycles.eq(self.busy_cycles + inc_busy),
                         self.macs.eq(self.macs + inc_macs),
                         self.idle_slots.eq(self.idle_slots + inc_idle),
                         self.empty_pairs.eq(self.empty_pairs + inc_empty)]
            with m.If(self.fault != 0):
                m.d.sync += self.error.eq(self.fault)
        return m
