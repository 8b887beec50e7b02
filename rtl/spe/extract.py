"""Extractor: one match of the head pair a cycle, lowest channel first (``rtl/spe/``)."""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ...sim.config import Config
from .layouts import op_layout, pair_layout

__all__ = ["Extractor", "EXTRACT_STAGES"]

# the op register between the extractor and the address stages
EXTRACT_STAGES = 1


class Extractor(wiring.Component):
    """Takes the lowest remaining match of the head pair each cycle.

    ``used`` (a register, S bits) holds the channels of the head pair already taken, as a
    thermometer code: ``rem = head.andm & ~used``, ``low = rem ^ (rem - 1)`` (the lowest
    set bit of ``rem`` and every bit below it: one carry chain), ``below = low & ~rem``;
    after the op ``used`` becomes ``low``. The pair leaves on its last match, decided by
    equality of a small counter (``kp1``: matches taken + 1) with ``head.cnt``; a pair
    with ``cnt == 0`` costs one op that selects no channel. So a pair of n matches takes
    ``max(n, 1)`` cycles and the next pair follows with no bubble.

    The op ending an accumulation (the last op of a pair with ``last``) is issued only
    while ``room`` (the result buffer's credit, a register) is high; otherwise the
    extractor holds. Nothing after it stalls.

    The op register (``EXTRACT_STAGES``) takes the match (``below``) and the head's wide
    fields every cycle; its ``valid`` is the issue.

    Parameters
    ----------
    cfg : Config
        ``scan_width`` (S), ``wval_mem_words``.

    Members
    -------
    head : In(pair_layout(cfg))
        The queue's head pair (read asynchronously, valid in the cycle it is used).
    head_valid : In(1)
        The queue holds a pair (a register).
    room : In(1)
        A result may be issued (a register).
    pop : Out(1)
        The head pair leaves this cycle.
    close : Out(1)
        An op ending an accumulation is issued this cycle.
    hit : Out(1)
        An op with a match (a product) is issued this cycle.
    op : Out(stream.Signature(op_layout(cfg), always_ready=True))
        The issued op, one cycle after its issue.
    busy : Out(1)
        The op register holds an op.
    """

    def __init__(self, cfg: Config):
        self.cfg = cfg
        super().__init__({
            "head": In(pair_layout(cfg)),
            "head_valid": In(1),
            "room": In(1),
            "pop": Out(1),
            "close": Out(1),
            "hit": Out(1),
            "op": Out(stream.Signature(op_layout(cfg), always_ready=True)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        S = self.cfg.scan_width
        h = self.head
        used = Signal(S)
        kp1 = Signal(range(S + 1), init=1)
        rem = Signal(S)
        low = Signal(S)
        m.d.comb += [rem.eq(h.andm & ~used), low.eq(rem ^ (rem - 1)[:S])]
        last_match = (h.cnt == kp1) | (h.cnt == 0)
        closing = h.last & last_match
        issue = Signal()
        m.d.comb += [issue.eq(self.head_valid & (self.room | ~closing)),
                     self.pop.eq(issue & last_match),
                     self.close.eq(issue & closing),
                     self.hit.eq(issue & (h.cnt != 0)),
                     self.busy.eq(self.op.valid)]
        with m.If(self.pop):
            m.d.sync += [used.eq(0), kp1.eq(1)]
        with m.Elif(issue):
            m.d.sync += [used.eq(low), kp1.eq(kp1 + 1)]
        op = self.op.payload
        m.d.sync += [self.op.valid.eq(issue), op.below.eq(low & ~rem), op.lanes.eq(h.lanes),
                     op.wmask.eq(h.wmask), op.base.eq(h.base), op.close.eq(closing)]
        return m
