"""The dot-product PE's window and pick (``rtl/pe/window.py``, ``rtl/pe/pick.py``): the
operands the MAC takes are the entries of the joined pairs, in order, each exactly once,
and an accumulation closes right after its last pair's last entry.

``PAIRS`` pairs with ``AnyConst`` match counts (at most ``MAX_CNT``: short vectors keep
the depth down) and ``last`` flags (the final pair ends an accumulation) arrive as the
join delivers them: taken only with the window's ``room``, on ``pair`` ``PE_STAGES``
cycles later (``pe_join.py`` proves the join keeps to this). Entry r of pair p carries
the distinct operands ``(1 + r + J p, -(1 + r + J p))`` up to its count and zeros past it,
as the join packs them; the window and the pick only move operands, never look at their
values, so distinct values show that every operand comes from its place. The MAC stalls
the pick at will (``ops.ready`` free). Asserted at every operand group the MAC takes:
each selected lane holds the next entry in order; a close comes exactly when the entries
of the pairs up to the next pair with ``last`` are all taken."""

from __future__ import annotations

from amaranth import Const, Module, Signal, signed
from amaranth.asserts import AnyConst, AnySeq
from amaranth.hdl import Assert, Assume, Cover
from amaranth.lib import wiring

from ...rtl.pe.join import PE_STAGES
from ...rtl.pe.pick import Pick
from ...rtl.pe.window import Window
from .common import Spec
from .pe_mac import CFG

PAIRS = 2
MAX_CNT = 4
DEPTH = 2


def operand(pair: int, entry: int) -> int:
    return 1 + entry + CFG.join_width * pair


class SelectOrder(Spec):
    """``skip_entry``: the pick sees the step's lane-0 select cleared in a step the solver
    picks (an operand selected by the window never reaches the MAC)."""

    mutations = ("skip_entry",)

    def body(self, m: Module) -> None:
        J, M = CFG.join_width, CFG.multipliers
        m.submodules.window = win = Window(CFG, depth=DEPTH, stages=PE_STAGES, checks=True)
        m.submodules.pick = pick = Pick(CFG)
        wiring.connect(m, win.step, pick.step)
        if self.mutation == "skip_entry":
            m.d.comb += pick.step.payload.sel[0].eq(win.step.payload.sel[0] & ~AnySeq(1))
        cnt = [AnyConst(range(J + 1)) for _ in range(PAIRS)]
        last = [AnyConst(1) for _ in range(PAIRS - 1)] + [Const(1)]
        m.d.comb += [Assume(c <= MAX_CNT) for c in cnt]
        cum = [Const(0, range(PAIRS * J + 1))]
        for c in cnt:
            cum.append(cum[-1] + c)

        # the join's side: a pair taken with room arrives PE_STAGES cycles later
        taken = Signal(range(PAIRS + 1))
        arrived = Signal(range(PAIRS + 1))
        take = AnySeq(1) & win.room & (taken < PAIRS)
        line = Signal(PE_STAGES)
        m.d.comb += win.taken.eq(take)
        m.d.sync += [taken.eq(taken + take), line.eq(line << 1 | take),
                     arrived.eq(arrived + line[PE_STAGES - 1])]
        pv = win.pair.payload
        m.d.comb += win.pair.valid.eq(line[PE_STAGES - 1])
        for p in range(PAIRS):
            with m.If(arrived == p):
                m.d.comb += [pv.cnt.eq(cnt[p]), pv.last.eq(last[p]), pv.err.eq(0)]
                m.d.comb += [pv.cle[v].eq(cnt[p] <= v) for v in range(M + 1)]
                for r in range(J):
                    with m.If(r < cnt[p]):
                        m.d.comb += [pv.pw[r].eq(operand(p, r)), pv.pa[r].eq(-operand(p, r))]

        # the MAC's side
        ready = AnySeq(1)
        m.d.comb += pick.ops.ready.eq(ready)
        op = pick.ops.payload
        seen = Signal(range(PAIRS * J + M + 1))
        closes = Signal(range(PAIRS + 1))
        n = sum(op.mask[k] for k in range(M))
        with m.If(ready):
            m.d.sync += seen.eq(seen + n)
            for k in range(M):
                idx = seen + k
                which = Signal(range(PAIRS), name=f"pair_of_{k}")
                for p in reversed(range(PAIRS)):
                    with m.If(idx < cum[p + 1]):
                        m.d.comb += which.eq(p)
                exp = Signal(signed(8), name=f"exp_{k}")
                m.d.comb += exp.eq(0)
                for p in range(PAIRS):
                    with m.If(which == p):
                        m.d.comb += exp.eq((idx - cum[p] + operand(p, 0))[:8])
                with m.If(op.mask[k]):
                    m.d.comb += [Assert(idx < cum[PAIRS]), Assert(op.w[k] == exp),
                                 Assert(op.a[k] == -exp)]
            with m.If(op.close):
                m.d.sync += closes.eq(closes + 1)
                # the point where accumulation number `closes` ends
                point = Signal(range(PAIRS * J + 1))
                m.d.comb += point.eq(cum[PAIRS])
                for p in reversed(range(PAIRS)):
                    before = sum(last[:p]) if p else 0
                    with m.If(last[p] & (before == closes)):
                        m.d.comb += point.eq(cum[p + 1])
                m.d.comb += [Assert(closes < sum(last)), Assert(seen + n == point),
                             Assert(~op.err)]
        m.d.comb += Cover(ready & op.close & (closes == sum(last) - 1) & last[0]
                          & (cnt[0] > M) & (cnt[1] > 0))
