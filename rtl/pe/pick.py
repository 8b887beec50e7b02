"""Pick: the operands of a select step, picked in two registered stages (``docs/pe.md``).

Lane k of a step takes entry ``start[k]`` (= u0 + k) of pair 0 while ``k < r0``, else
entry ``k - r0`` of pair 1. Pair 0's operands are spread over many distributed-RAM cells,
so the pick takes two cycles (Fmax): stage T selects, for each group of four entries of
pair 0, the entry ``start[k] mod 4``, and pair 1's candidate; stage S1 selects the group
(``start[k] / 4``) or pair 1.
"""

from __future__ import annotations

import functools

from amaranth import Array, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ...sim.config import Config
from .window import step_layout

__all__ = ["Pick", "PICK_STAGES", "ops_layout"]

# registers from a select step to its operands: T, S1
PICK_STAGES = 2


@functools.cache
def ops_layout(M: int) -> data.StructLayout:
    """M operand pairs: lane k multiplies ``w[k]`` by ``a[k]`` if ``mask[k]`` (else the
    lane's operands are don't-care); ``close`` ends the accumulation after these
    products, ``err`` flags it."""
    return data.StructLayout({
        "w": data.ArrayLayout(signed(8), M), "a": data.ArrayLayout(signed(8), M),
        "mask": M, "close": 1, "err": 1,
    })


class Pick(wiring.Component):
    """Operand pick, two pipeline stages enabled by ``ops.ready``.

    Parameters
    ----------
    cfg : Config
        ``join_width`` (J), ``multipliers`` (M).

    Members
    -------
    step : In(stream.Signature(step_layout(J, M), always_valid=True))
        Select steps (:func:`~.window.step_layout`); ``ready`` is ``ops.ready``.
    ops : Out(stream.Signature(ops_layout(M), always_valid=True))
        The operands of the step taken ``PICK_STAGES`` transfers earlier; ``mask``,
        ``close`` and ``err`` are the step's ``sel``, ``close`` and ``err``.
    busy : Out(1)
        A stage holds a product or a close.
    """

    def __init__(self, cfg: Config):
        self.cfg = cfg
        J, M = cfg.join_width, cfg.multipliers
        super().__init__({
            "step": In(stream.Signature(step_layout(J, M), always_valid=True)),
            "ops": Out(stream.Signature(ops_layout(M), always_valid=True)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        J, M = self.cfg.join_width, self.cfg.multipliers
        s = self.step.payload
        o = self.ops.payload
        advance = self.ops.ready
        m.d.comb += self.step.ready.eq(advance)

        G = -(-J // 4)
        t_grp_w = [[Signal(signed(8), name=f"t_w{k}_g{g}") for g in range(G)]
                   for k in range(M)]
        t_grp_a = [[Signal(signed(8), name=f"t_a{k}_g{g}") for g in range(G)]
                   for k in range(M)]
        t_hi = [Signal(range(max(2, G)), name=f"t_hi{k}") for k in range(M)]
        t_from1_w = [Signal(signed(8), name=f"t_w{k}_p1") for k in range(M)]
        t_from1_a = [Signal(signed(8), name=f"t_a{k}_p1") for k in range(M)]
        t_use0 = Signal(M)
        t_valid = Signal(M)
        t_close = Signal()
        t_err = Signal()
        t_next = []                       # (register, value) loaded when advancing
        for k in range(M):
            i0 = s.start[k]
            for g in range(G):
                ents = list(range(4 * g, min(J, 4 * g + 4)))
                t_next += [(t_grp_w[k][g], Array([s.p0.pw[e] for e in ents])[i0[:2]]),
                           (t_grp_a[k][g], Array([s.p0.pa[e] for e in ents])[i0[:2]])]
            from1_w, from1_a = s.p1.pw[k], s.p1.pa[k]
            for j in range(k):            # r0 = k - j: pair 1's entry j
                r0_is = s.r0_le[k - j] & ~s.r0_le[k - j - 1]
                from1_w = Mux(r0_is, s.p1.pw[j], from1_w)
                from1_a = Mux(r0_is, s.p1.pa[j], from1_a)
            t_next += [(t_hi[k], i0[2:]), (t_from1_w[k], from1_w), (t_from1_a[k], from1_a),
                       (t_use0[k], ~s.r0_le[k])]
        op_w = [Mux(t_use0[k], Array(t_grp_w[k])[t_hi[k]], t_from1_w[k]) for k in range(M)]
        op_a = [Mux(t_use0[k], Array(t_grp_a[k])[t_hi[k]], t_from1_a[k]) for k in range(M)]

        with m.If(advance):
            m.d.sync += [reg.eq(val) for reg, val in t_next]
            m.d.sync += [t_valid.eq(s.sel), t_close.eq(s.close), t_err.eq(s.err),
                         o.mask.eq(t_valid), o.close.eq(t_close), o.err.eq(t_err)]
            m.d.sync += [o.w[k].eq(op_w[k]) for k in range(M)]
            m.d.sync += [o.a[k].eq(op_a[k]) for k in range(M)]
        m.d.comb += self.busy.eq(t_valid.any() | t_close | o.mask.any() | o.close)
        return m
