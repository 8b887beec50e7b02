"""The dot-product PE's join (``rtl/pe/join.py``): a weight chunk and an activation chunk
in, the operands of their matching channels out, packed in channel order.

One chunk pair with ``AnyConst`` masks (any sparsity) is offered with stalls the solver
picks on both inputs and on the credit ``room``. The packed values are distinct constants
(``pe_top.tag``), unused lanes included: the join only moves values, by selects computed
from the masks, so distinct values show that every operand comes from its place (with
symbolic values the bounded check did not finish in ten minutes).

Asserted: the pair is taken only with ``room``; it leaves on ``pair`` exactly
``PE_STAGES`` cycles after ``taken``; its ``cnt`` is the number of channels where both
masks are set, ``cle[v]`` is ``cnt <= v``, entry r of ``pw`` / ``pa`` is the weight /
activation of the r-th such channel (channel c's value being value number popcount(mask
below c) of its packed chunk) and 0 from ``cnt`` on, ``last`` and no ``err``."""

from __future__ import annotations

from amaranth import Cat, Const, Module, Signal, signed
from amaranth.asserts import AnyConst, AnySeq
from amaranth.hdl import Assert, Cover

from ...rtl.chunk import chunk_layout
from ...rtl.pe.join import PE_STAGES, Join
from .common import Spec, assume_stream_in
from .pe_top import CFG, dense, ranked, tag


class JoinPair(Spec):
    """``swap_lanes``: the activation chunk reaches the join with its first two packed
    values swapped (two operands cross on the way in)."""

    mutations = ("swap_lanes",)

    def body(self, m: Module) -> None:
        J, M = CFG.join_width, CFG.multipliers
        m.submodules.dut = dut = Join(CFG)
        masks = {s: AnyConst(J) for s in "wa"}
        vals = {s: [Const(tag(s, 0, i), signed(8)) for i in range(J)] for s in "wa"}
        last = AnyConst(1)
        for side, s in (("w", dut.w), ("a", dut.a)):
            sent = Signal(name=f"{side}_sent")
            m.d.sync += sent.eq(sent | (s.valid & s.ready))
            word = Signal(chunk_layout(J), name=f"{side}_word")
            v = list(vals[side])
            if side == "a" and self.mutation == "swap_lanes":
                v[0], v[1] = v[1], v[0]
            m.d.comb += [s.valid.eq(AnySeq(1) & ~sent), word.mask.eq(masks[side]),
                         word.last.eq(last), s.payload.eq(word)]
            m.d.comb += [word.values[i].eq(v[i]) for i in range(J)]
            assume_stream_in(m, s)
        m.d.comb += dut.room.eq(AnySeq(1))
        m.d.comb += Assert(~dut.taken | dut.room)

        match = masks["w"] & masks["a"]
        wd = dense(m, masks["w"], vals["w"], J, "wd")
        ad = dense(m, masks["a"], vals["a"], J, "ad")
        exp_w, exp_a = ranked(m, match, wd, "exp_w"), ranked(m, match, ad, "exp_a")
        cnt = Signal(range(J + 1))
        m.d.comb += cnt.eq(sum(match[i] for i in range(J)))

        line = Signal(PE_STAGES)
        m.d.sync += line.eq(line << 1 | dut.taken)
        p = dut.pair.payload
        m.d.comb += Assert(dut.pair.valid == line[PE_STAGES - 1])
        with m.If(dut.pair.valid):
            m.d.comb += [Assert(p.cnt == cnt), Assert(p.last == last), Assert(~p.err),
                         Assert(p.cle == Cat(*(cnt <= v for v in range(M + 1))))]
            m.d.comb += [Assert(p.pw[r] == exp_w[r]) for r in range(J)]
            m.d.comb += [Assert(p.pa[r] == exp_a[r]) for r in range(J)]
        m.d.comb += Cover(dut.pair.valid & (cnt >= 3) & (cnt < J))
