"""The dot-product PE's MAC (``rtl/pe/mac.py``): its result stream ``o`` obeys the stream
rules under any operand stream (``ops`` is always valid; its payload holds while not
ready, as the pick delivers it) and any consumer; its results are the sums of the
products of its operands."""

from __future__ import annotations

from types import SimpleNamespace

from amaranth import Const, Module, Mux, Signal, signed
from amaranth.asserts import AnyConst, AnySeq
from amaranth.hdl import Assert, Cover

from ...rtl.pe.mac import MAC
from ...rtl.pe.pick import ops_layout
from ...sim.config import Config
from .common import Spec, assert_stream_out, drive_stream_in

CFG = Config(join_width=16, multipliers=2, acc_width=20, max_reduction=16)


class MACStream(Spec):
    """``ignore_ready``: the MAC sees ``o.ready`` high while the consumer is stalled, so
    it lets a result go that was never taken (a dropped beat)."""

    mutations = ("ignore_ready",)

    def body(self, m: Module) -> None:
        m.submodules.dut = dut = MAC(CFG)
        drive_stream_in(m, dut.ops, always_valid=True)
        ready = AnySeq(1)
        m.d.comb += dut.o.ready.eq(1 if self.mutation == "ignore_ready" else ready)
        assert_stream_out(m, dut.o.valid, ready, dut.o.payload)


class MACSum(Spec):
    """Every result of the MAC is the sum of the products of the operands it took since
    the previous result (``mask`` selecting the lanes), wrapped to ``acc_width`` bits,
    with ``err`` set when a step of it had ``err``; results leave in order, none lost.
    Operands are free (any values, masks, closes), ``o.ready`` is free.

    The harness follows one result chosen by the solver (``AnyConst`` index ``T``): the
    expected value of accumulation ``T``, summed from the same operands, is compared when
    result ``T`` leaves. ``lose_product``: the MAC sees lane 0's mask bit cleared in a
    step the solver picks."""

    mutations = ("lose_product",)

    def body(self, m: Module) -> None:
        M, AW = CFG.multipliers, CFG.acc_width
        m.submodules.dut = dut = MAC(CFG)
        ops = SimpleNamespace(valid=Const(1), ready=dut.ops.ready,
                              payload=Signal(ops_layout(M), name="ops"))
        drive_stream_in(m, ops, always_valid=True)
        m.d.comb += dut.ops.payload.eq(ops.payload)
        if self.mutation == "lose_product":
            m.d.comb += dut.ops.payload.mask[0].eq(ops.payload.mask[0] & ~AnySeq(1))
        m.d.comb += dut.o.ready.eq(AnySeq(1))
        op = ops.payload
        took = dut.ops.ready
        T = AnyConst(4)
        n_close, n_res = Signal(4), Signal(4)
        acc, err = Signal(signed(AW)), Signal()
        exp_val, exp_err = Signal(signed(AW)), Signal()
        step = sum(Mux(op.mask[k], op.w[k] * op.a[k], 0) for k in range(M))
        with m.If(took):
            m.d.sync += [acc.eq(acc + step), err.eq(err | op.err)]
            with m.If(op.close):
                m.d.sync += [acc.eq(0), err.eq(0), n_close.eq(n_close + 1)]
                with m.If(n_close == T):
                    m.d.sync += [exp_val.eq(acc + step), exp_err.eq(err | op.err)]
        out = dut.o.valid & dut.o.ready
        m.d.sync += n_res.eq(n_res + out)
        with m.If(out):
            m.d.comb += Assert(n_res < n_close)
            with m.If(n_res == T):
                m.d.comb += [Assert(dut.o.payload.value == exp_val),
                             Assert(dut.o.payload.err == exp_err)]
        m.d.comb += Cover(out & (n_res == T) & (T == 2) & (exp_val < 0))
