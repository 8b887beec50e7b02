"""The engine's control (``rtl/engine/control.py``) after an abort: whatever the state
(SETTLE, CHECK, RUN or ENCODE) and whatever the other inputs, an abort while busy leaves
the control idle with ``done`` and error ABORTED in the next cycle, and ``flush`` (the
datapath's reset) high in exactly that cycle (bounded check from reset; every input free
every cycle)."""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.asserts import AnySeq
from amaranth.hdl import Assert, Cover

from ...rtl.engine.control import Control
from ...rtl.engine.regmap import EngineError
from .common import Spec, as_bits


class ControlAbort(Spec):
    """``late_abort``: the control sees the abort one cycle late (so it is not idle the
    cycle after the host's abort)."""

    mutations = ("late_abort",)

    def body(self, m: Module) -> None:
        m.submodules.dut = dut = Control()
        for name in ("start", "encode", "raw", "bad_shape", "bad_desc", "too_big", "total",
                     "seq_running", "retired", "pe_fault", "enc_overflow", "enc_finished"):
            v = as_bits(getattr(dut, name))
            m.d.comb += v.eq(AnySeq(len(v)))
        abort = AnySeq(1)
        if self.mutation == "late_abort":
            late = Signal()
            m.d.sync += late.eq(abort)
            m.d.comb += dut.abort.eq(late)
        else:
            m.d.comb += dut.abort.eq(abort)
        was = Signal()                      # an abort while busy, last cycle
        m.d.sync += was.eq(abort & dut.busy)
        m.d.comb += [
            Assert(~was | (~dut.busy & dut.done & (dut.error == EngineError.ABORTED)),
                   "not idle with ABORTED the cycle after an abort"),
            Assert(dut.flush == was, "flush is not exactly the cycle after an abort"),
            Cover(was & (dut.cycles > 2)),   # an abort in RUN, some cycles in
        ]
