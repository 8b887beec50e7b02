"""The engine's step sequencer (``rtl/engine/sequencer.py``) and address pipeline
(``rtl/engine/address.py``): their output streams obey the stream rules under any
descriptor, any control pulses, any memory data and any consumer (k-induction). The
descriptor and the control inputs are left free every cycle, a superset of what the
engine's control drives."""

from __future__ import annotations

from amaranth import Module
from amaranth.asserts import AnySeq

from ...rtl.engine.address import AddressPipeline
from ...rtl.engine.sequencer import Sequencer
from ...sim.config import Config
from .common import Spec, as_bits, assert_stream_out, drive_stream_in

CFG = Config(scan_width=16, pes=1, act_mem_chunks=16, wgt_mem_chunks=16, wval_mem_words=16,
             out_mem_words=16)


def _free(m: Module, *values) -> None:
    for v in values:
        m.d.comb += as_bits(v).eq(AnySeq(len(as_bits(v))))


class SequencerStream(Spec):
    """``ignore_ready``: the sequencer's output stage sees ``o.ready`` high while the
    address pipeline stalls (a step dropped)."""

    mutations = ("ignore_ready",)

    def body(self, m: Module) -> None:
        m.submodules.dut = dut = Sequencer()
        _free(m, dut.desc, dut.load, dut.prime, dut.start)
        ready = AnySeq(1)
        m.d.comb += dut.o.ready.eq(1 if self.mutation == "ignore_ready" else ready)
        assert_stream_out(m, dut.o.valid, ready, dut.o.payload,
                          cover_stall=[dut.o.payload.last])


class AddressStream(Spec):
    """``ignore_ready``: the pipeline sees ``o.ready`` high while the broadcast stalls."""

    mutations = ("ignore_ready",)

    def body(self, m: Module) -> None:
        m.submodules.dut = dut = AddressPipeline(CFG)
        drive_stream_in(m, dut.i)
        _free(m, dut.act_rd.data, dut.desc, dut.rs, dut.start)
        ready = AnySeq(1)
        m.d.comb += dut.o.ready.eq(1 if self.mutation == "ignore_ready" else ready)
        assert_stream_out(m, dut.o.valid, ready, dut.o.payload,
                          cover_stall=[dut.o.payload.last])
