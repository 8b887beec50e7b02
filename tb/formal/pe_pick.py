"""The dot-product PE's operand pick (``rtl/pe/pick.py``): ``ops`` (always valid) keeps
its payload while not ready, under any select step and any ``ops.ready``.

The step is left entirely free (no stability assumed): the window's step is not held
while stalled (``pe_window.py``), and the pick needs no such promise, as it loads its
stages only when ``ops.ready`` is high."""

from __future__ import annotations

from amaranth import Const, Module
from amaranth.asserts import AnySeq

from ...rtl.pe.pick import Pick
from .common import Spec, as_bits, assert_stream_out
from .pe_mac import CFG


class PickStream(Spec):
    """``ignore_ready``: the pick moves on while the MAC stalls (a dropped beat)."""

    mutations = ("ignore_ready",)

    def body(self, m: Module) -> None:
        m.submodules.dut = dut = Pick(CFG)
        m.d.comb += as_bits(dut.step.payload).eq(AnySeq(len(as_bits(dut.step.payload))))
        ready = AnySeq(1)
        m.d.comb += dut.ops.ready.eq(1 if self.mutation == "ignore_ready" else ready)
        assert_stream_out(m, Const(1), ready, dut.ops.payload,
                          cover_stall=[dut.ops.payload.close])
