"""MAC: multiply, accumulate and the two result slots (``docs/pe.md``)."""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed
from amaranth.hdl import Assert
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ...sim.config import Config
from .pick import ops_layout

__all__ = ["MAC", "MAC_STAGES", "OUT_SLOTS", "result_layout"]

# registers from the operands to the result: products (S2), accumulator / output slot
MAC_STAGES = 2
# results the PE holds for its consumer before it stalls (``o`` is the first)
OUT_SLOTS = 2


def result_layout(acc_width: int) -> data.StructLayout:
    return data.StructLayout({"value": signed(acc_width), "err": 1})


class MAC(wiring.Component):
    """M multipliers, the accumulator and two result slots.

    Stage S2 registers the M products (masked lanes give 0); the accumulator adds their
    sum. A step with ``close`` ends the accumulation: its result (the sum including that
    step's products, ``err`` if any step of the accumulation had ``err``) goes to the
    output slots and the accumulator restarts at 0. The sum wraps to ``acc_width`` bits.

    ``ops.ready`` is low only when a result is due while both slots are full; it is a
    register of its own (``stall``, loaded from the next values of ``s2_close`` and
    ``out_full``), so the enable of the whole pipeline in front starts at a flip-flop and
    no combinational path leads from ``o.ready`` to it.

    Parameters
    ----------
    cfg : Config
        ``multipliers`` (M), ``acc_width``.
    checks : bool
        Add a simulation assertion that the ``stall`` register equals
        ``s2_close & out_full``.

    Members
    -------
    ops : In(stream.Signature(ops_layout(M), always_valid=True))
        Operands (:func:`~.pick.ops_layout`), one group a transfer.
    o : Out(stream.Signature(result_layout(acc_width)))
        One result per accumulation, ``MAC_STAGES`` cycles after its closing transfer at
        the earliest.
    busy : Out(1)
        A product, a close or a result is in the MAC.
    """

    def __init__(self, cfg: Config, *, checks: bool = False):
        self.cfg, self.checks = cfg, checks
        super().__init__({
            "ops": In(stream.Signature(ops_layout(cfg.multipliers), always_valid=True)),
            "o": Out(stream.Signature(result_layout(cfg.acc_width))),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        M, AW = self.cfg.multipliers, self.cfg.acc_width
        op = self.ops.payload
        o = self.o
        stall = Signal()
        advance = ~stall
        m.d.comb += self.ops.ready.eq(advance)

        s2_p = [Signal(signed(16), name=f"s2_p{k}") for k in range(M)]
        s2_close = Signal()
        s2_err = Signal()
        s2_any = Signal()
        acc = Signal(signed(AW))
        acc_err = Signal()
        res = Signal(result_layout(AW))       # result in the new value of the acc stage
        new_res = Signal()
        taken = o.valid & o.ready
        total = acc + sum(s2_p)
        with m.If(advance):
            m.d.sync += [s2_close.eq(op.close), s2_err.eq(op.err),
                         s2_any.eq(op.mask.any() | op.close)]
            m.d.sync += [s2_p[k].eq(Mux(op.mask[k], op.w[k] * op.a[k], 0)) for k in range(M)]
            with m.If(s2_close):
                m.d.sync += [acc.eq(0), acc_err.eq(0)]
                m.d.comb += new_res.eq(1)
            with m.Else():
                m.d.sync += [acc.eq(total), acc_err.eq(acc_err | s2_err)]
        m.d.comb += [res.value.eq(total), res.err.eq(acc_err | s2_err)]

        # two result slots (o is the first); the next stall is s2_close and out_full as they
        # will be after this cycle (a result taken while both slots are full frees one, and
        # then no result is due: advance = ~s2_close there)
        out_full = Signal()               # both slots hold a result
        slot_b = Signal(result_layout(AW))
        s2_close_n = Mux(advance, op.close, s2_close)
        out_full_n = Mux(taken, 0, Mux(new_res, o.valid | out_full, out_full))
        m.d.sync += [stall.eq(s2_close_n & out_full_n), out_full.eq(out_full_n)]
        with m.If(taken):
            with m.If(out_full):
                m.d.sync += o.payload.eq(slot_b)
                with m.If(new_res):
                    m.d.sync += slot_b.eq(res)
            with m.Else():
                m.d.sync += [o.valid.eq(new_res), o.payload.eq(res)]
        with m.Elif(new_res):
            with m.If(o.valid):
                m.d.sync += slot_b.eq(res)
            with m.Else():
                m.d.sync += [o.valid.eq(1), o.payload.eq(res)]
        if self.checks:
            m.d.comb += Assert(stall == (s2_close & out_full),
                               "PE stall register differs from s2_close & out_full")
        m.d.comb += self.busy.eq(s2_any | s2_close | o.valid)
        return m
