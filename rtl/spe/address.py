"""Address: the activation byte and the weight address of a match (``rtl/spe/``)."""

from __future__ import annotations

import functools
import operator

from amaranth import Const, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ...sim.config import Config
from .layouts import op_layout, ref_layout, wval_addr_bits

__all__ = ["Address", "ADDRESS_STAGES"]

# registers from an op to its ref: A1 (act byte, group counts), A2 (rank), A3 (address)
ADDRESS_STAGES = 3
# channels per group of the rank's first step
GROUP = 8


def group_counts(bits) -> list:
    """The number of set bits in each group of ``GROUP`` channels of ``bits`` (one
    expression a group, for a registered first step of a popcount)."""
    return [sum(bits[GROUP * j + k] for k in range(GROUP)) for j in range(len(bits) // GROUP)]


class Address(wiring.Component):
    """Locates an op's operands in three registered steps that never stall.

    The match is the channel where ``below`` (a thermometer code) steps from 1 to 0:
    ``oh = ~below & (below << 1 | 1)`` (two-input logic per channel, no carry). Then:

    * A1: ``act`` = the AND-OR of ``lanes`` with ``oh``; the weight rank's partial counts,
      ``popcount(wmask & below)`` within each group of ``GROUP`` channels;
    * A2: ``rank`` = the sum of the group counts;
    * A3: ``addr = base + rank`` (the ref, which drives the weight-value memory).

    A pair with no match has ``below`` all ones, so ``oh`` is 0 and ``act`` is 0.

    Parameters
    ----------
    cfg : Config
        ``scan_width`` (S, a multiple of ``GROUP``), ``wval_mem_words``.

    Members
    -------
    op : In(stream.Signature(op_layout(cfg), always_ready=True))
        Ops from the extractor.
    ref : Out(stream.Signature(ref_layout(cfg), always_ready=True))
        ``ADDRESS_STAGES`` cycles after its op: ``addr``, ``act``, ``close``.
    busy : Out(1)
        An op is in the stages.
    """

    def __init__(self, cfg: Config):
        self.cfg = cfg
        super().__init__({
            "op": In(stream.Signature(op_layout(cfg), always_ready=True)),
            "ref": Out(stream.Signature(ref_layout(cfg), always_ready=True)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        S, AB = self.cfg.scan_width, wval_addr_bits(self.cfg)
        G = S // GROUP
        p = self.op.payload
        below = p.below
        oh = Signal(S)
        m.d.comb += oh.eq(~below & below.shift_left(1) | (~below[0]).as_unsigned())
        picked = [Mux(oh[i], p.lanes[i].as_unsigned(), 0) for i in range(S)]
        act = functools.reduce(operator.or_, picked)
        under = p.wmask & below
        # A1
        v1, c1 = Signal(), Signal()
        act1 = Signal(signed(8))
        base1 = Signal(AB)
        g1 = [Signal(range(GROUP + 1), name=f"g1_{j}") for j in range(G)]
        m.d.sync += [v1.eq(self.op.valid), c1.eq(p.close), act1.eq(act), base1.eq(p.base)]
        m.d.sync += [g.eq(c) for g, c in zip(g1, group_counts(under), strict=True)]
        # A2
        v2, c2 = Signal(), Signal()
        act2 = Signal(signed(8))
        base2 = Signal(AB)
        rank2 = Signal(range(S + 1))
        m.d.sync += [v2.eq(v1), c2.eq(c1), act2.eq(act1), base2.eq(base1),
                     rank2.eq(sum(g1, Const(0, range(S + 1))))]
        # A3: the ref
        r = self.ref.payload
        m.d.sync += [self.ref.valid.eq(v2), r.close.eq(c2), r.act.eq(act2),
                     r.addr.eq((base2 + rank2)[:AB])]
        m.d.comb += self.busy.eq(v1 | v2 | self.ref.valid)
        return m
