"""The feeder of one PE: its queue's entries in, joined pairs out (the pre-join).

For each entry the feeder reads the PE's weight memory at the entry's weight address (a
weight chunk: its mask and the base of its values in the PE's weight-value memory), ANDs
the two masks and counts the matches; a pair with no match is dropped unless it closes an
accumulation, so a PE spends no cycle on a pair that has nothing to multiply::

    i ─► F1: read the weight memory, activation chunk and last beside it
      ─► F2: the block RAM's output registered beside it
      ─► F3: AND of the masks, its OR, popcounts of its eight-channel groups
      ─► F4: the match count; the pair (kept: matches or last) ─► o

Timing rules: every stage moves on ``advance = ~F4.valid | o.ready``, where ``o.ready``
is the PE's flip-flop, so the enable is one gate after a flip-flop; the block RAM's
output meets only the F2 register; the empty test is an OR of the registered AND
(no carry chain), and the count is summed from registered group counts.
"""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ...sim.config import Config
from ..chunk import chunk_word_layout
from ..mem import ReadPortSignature
from ..spe import pair_layout
from .layouts import entry_layout, wgt_addr_bits, wgt_entry_layout

__all__ = ["Feeder", "FEEDER_STAGES"]

# registers from the queue head to the PE's input: F1 (the block RAM read), F2, F3, F4
FEEDER_STAGES = 4
_GROUP = 8


def _popcount(bits) -> object:
    total = 0
    for i in range(len(bits)):
        total = total + bits[i]
    return total


class Feeder(wiring.Component):
    """Queue entries to a PE's joined pairs.

    Parameters
    ----------
    cfg : Config

    Members
    -------
    i : In(stream.Signature(entry_layout(cfg)))
        Queue head; ``ready`` is ``advance``.
    wgt_rd : Out(ReadPortSignature(wgt_addr_bits(cfg), wgt_entry_layout(cfg)))
        The PE's weight memory (synchronous read, data held while ``en`` is low).
    o : Out(stream.Signature(pair_layout(cfg)))
        Pairs with a match or ``last``, in entry order.
    dropped : Out(1)
        Pulse: a pair without a match or ``last`` left F3 (for the counters).
    """

    def __init__(self, cfg: Config):
        self.cfg = cfg
        super().__init__({
            "i": In(stream.Signature(entry_layout(cfg))),
            "wgt_rd": Out(ReadPortSignature(wgt_addr_bits(cfg), wgt_entry_layout(cfg))),
            "o": Out(stream.Signature(pair_layout(cfg))),
            "dropped": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        S = cfg.scan_width
        word = chunk_word_layout(S)
        groups = S // _GROUP
        v1, v2, v3, v4 = Signal(), Signal(), Signal(), Signal()
        a1, a2, a3 = Signal(word), Signal(word), Signal(word)
        l1, l2, l3 = Signal(), Signal(), Signal()
        w2 = Signal(wgt_entry_layout(cfg))
        w3 = Signal(wgt_entry_layout(cfg))
        and3, any3 = Signal(S), Signal()
        part3 = [Signal(range(_GROUP + 1), name=f"part3_{g}") for g in range(groups)]
        out = Signal(pair_layout(cfg))
        advance = ~v4 | self.o.ready
        m.d.comb += [self.i.ready.eq(advance),
                     self.wgt_rd.addr.eq(self.i.payload.waddr), self.wgt_rd.en.eq(advance),
                     self.o.valid.eq(v4), self.o.payload.eq(out),
                     self.dropped.eq(advance & v3 & ~any3 & ~l3)]
        andm = Signal(S)
        m.d.comb += andm.eq(a2.mask & w2.mask)
        with m.If(advance):
            m.d.sync += [
                v1.eq(self.i.valid), a1.eq(self.i.payload.a), l1.eq(self.i.payload.last),
                v2.eq(v1), a2.eq(a1), l2.eq(l1), w2.eq(self.wgt_rd.data),
                v3.eq(v2), a3.eq(a2), l3.eq(l2), w3.eq(w2), and3.eq(andm),
                any3.eq(andm.any()),
                *[part3[g].eq(_popcount(andm[_GROUP * g:_GROUP * (g + 1)]))
                  for g in range(groups)],
                v4.eq(v3 & (any3 | l3)),
                out.lanes.eq(a3.values), out.wmask.eq(w3.mask), out.base.eq(w3.base),
                out.andm.eq(and3), out.cnt.eq(sum(part3)), out.last.eq(l3),
            ]
        return m
