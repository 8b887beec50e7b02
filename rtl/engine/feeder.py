"""The feeder of one PE: the broadcast's entries in, joined pairs into the PE (the
pre-join), and the credit that keeps the PE's pair queue from overflowing.

In the cycle an entry is pushed (T0) the feeder reads its weight memory at the entry's
weight address (a weight chunk: its mask and the base of its values in the PE's
weight-value memory); the broadcast's shared registers bring the activation chunk along::

    T0 push: read the weight memory       T1: the block RAM's output
    T2: the weight chunk registered beside the block RAM (w2); the AND of the masks, its
        OR and popcounts of its eight-channel groups computed from w2 and the shared mask
    T3: registered; the pair (match count summed from the group counts) goes to the PE if
        it has a match or ends an accumulation, else it is dropped

Credit: ``held`` counts the steps pushed and not yet dropped, plus the pairs in the PE's
queue (until the PE pops them). ``room`` is a register, high while ``held`` leaves place
for the two pushes that can still happen before the broadcast sees it low (``push_ok``
is a register of the ``room`` registers), so a pair always finds a place in the queue:
the PE's ``i.ready`` is never needed and the feeder never stalls.

Timing rules: the block RAM's output meets only the w2 register; the empty test is an OR
of the AND (no carry chain) and the count is summed from registered group counts;
``room`` and ``held`` are loaded from values computed from the ``held`` register for
each possible change, selected by this cycle's events.
"""

from __future__ import annotations

from amaranth import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ...sim.config import Config
from ..mem import ReadPortSignature
from ..spe import PAIR_QUEUE, pair_layout
from ..spe.address import GROUP, group_counts
from .broadcast import tap_layout
from .layouts import wgt_addr_bits, wgt_entry_layout

__all__ = ["Feeder", "FEEDER_STAGES", "CREDIT_MARGIN"]

# registers from the push to the PE's input: T1 (the block RAM), T2, T3
FEEDER_STAGES = 3
# pushes that can happen after ``held`` was compared: ``room`` and ``push_ok`` are both
# registers
CREDIT_MARGIN = 2


class Feeder(wiring.Component):
    """Broadcast entries to a PE's joined pairs.

    Parameters
    ----------
    cfg : Config

    Members
    -------
    i : In(tap_layout(cfg))
        The broadcast, stage by stage.
    wgt_rd : Out(ReadPortSignature(wgt_addr_bits(cfg), wgt_entry_layout(cfg)))
        The PE's weight memory (synchronous read).
    o : Out(stream.Signature(pair_layout(cfg)))
        Pairs with a match or ``last``, in entry order; ``ready`` is not looked at (the
        credit guarantees a place).
    pe_pop : In(1)
        The PE's pair queue let a pair go this cycle.
    room : Out(1)
        Credit for one more push (a register).
    dropped : Out(1)
        Pulse: a pair without a match or ``last`` was dropped (for the counters).
    """

    def __init__(self, cfg: Config):
        self.cfg = cfg
        super().__init__({
            "i": In(tap_layout(cfg)),
            "wgt_rd": Out(ReadPortSignature(wgt_addr_bits(cfg), wgt_entry_layout(cfg))),
            "o": Out(stream.Signature(pair_layout(cfg))),
            "pe_pop": In(1),
            "room": Out(1, init=1),
            "dropped": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        S, t = cfg.scan_width, self.i
        w2 = Signal(wgt_entry_layout(cfg))
        wmask3, base3, and3, any3 = Signal(S), Signal(len(w2.base)), Signal(S), Signal()
        part3 = [Signal(range(GROUP + 1), name=f"part3_{g}") for g in range(S // GROUP)]
        m.d.comb += [self.wgt_rd.addr.eq(t.waddr), self.wgt_rd.en.eq(t.valid)]
        # T2: the weight chunk beside its block RAM (the read of T0 shows from T1 on and
        # is held while en is low, so w2 is loaded in the cycle after T1 of each push)
        v1 = Signal()
        m.d.sync += v1.eq(t.valid)
        with m.If(v1):
            m.d.sync += w2.eq(self.wgt_rd.data)
        andm = Signal(S)
        m.d.comb += andm.eq(t.mask2 & w2.mask)
        m.d.sync += [wmask3.eq(w2.mask), base3.eq(w2.base), and3.eq(andm),
                     any3.eq(andm.any()),
                     *[p.eq(c) for p, c in zip(part3, group_counts(andm), strict=True)]]
        keep = t.valid3 & (any3 | t.last3)
        out = self.o.payload
        m.d.comb += [self.o.valid.eq(keep), out.lanes.eq(t.a3.values), out.wmask.eq(wmask3),
                     out.base.eq(base3), out.andm.eq(and3), out.cnt.eq(sum(part3)),
                     out.last.eq(t.last3),
                     self.dropped.eq(t.valid3 & ~any3 & ~t.last3)]
        # credit
        # held + s and its comparison are computed from the register for each change
        # s = push - dropped - pop, and the events only select among them (the PE's pop
        # comes late in the cycle: it meets one multiplexer, no carry chain)
        held = Signal(range(PAIR_QUEUE + 1))
        events = Cat(self.pe_pop, self.dropped, t.valid)
        with m.Switch(events):
            for code in range(8):
                s = (code >> 2 & 1) - (code >> 1 & 1) - (code & 1)
                with m.Case(code):
                    m.d.sync += [held.eq(held + s),
                                 self.room.eq(held + s + CREDIT_MARGIN < PAIR_QUEUE)]
        return m
