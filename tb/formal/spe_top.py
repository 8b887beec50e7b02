"""The scan PE (``rtl/spe/pe.py``): its result stream ``o`` (the result buffer's,
``rtl/spe/outbuf.py``) obeys the stream rules under any pair stream that keeps to them,
any weight-value memory data and any consumer.

The buffer's head is read asynchronously from its memory; it stays put only if no result
is ever written over it, which the result credit guarantees (``room``: at most
``OUT_SLOTS`` results promised and not taken). For k-induction the harness asserts the
credit's invariant: the buffer's ``pending`` is at most ``OUT_SLOTS`` and equals the
results it holds plus the closing ops in flight (the extractor's op register, the address
stages A1, A2, A3 and the MAC's stages R, B, O, P; A1 and A2 through shadow registers of
the harness, checked against A3); its ``tail`` is ``head + count``; the pair queue holds
at most ``PAIR_QUEUE``. The PE's own checks (``checks=True``: the registers kept for
timing equal what they stand for, no overflow) are proved with it."""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.asserts import AnySeq
from amaranth.hdl import Assert

from ...rtl.spe import PAIR_QUEUE, SPE
from ...rtl.spe.outbuf import OUT_SLOTS
from .common import Opened, Spec, as_bits, assert_stream_out, drive_stream_in
from .spe_queue import CFG


class SPEStream(Spec):
    """``ignore_ready``: the result buffer sees ``o.ready`` high while the collector
    stalls (a result dropped)."""

    mutations = ("ignore_ready",)

    def body(self, m: Module) -> None:
        dut = SPE(CFG, checks=True)
        opened = Opened(dut)
        m.submodules.dut = opened
        drive_stream_in(m, dut.i)
        m.d.comb += [as_bits(dut.wval_rd.data).eq(AnySeq(len(as_bits(dut.wval_rd.data)))),
                     dut.clear.eq(AnySeq(1))]
        ready = AnySeq(1)
        m.d.comb += dut.o.ready.eq(1 if self.mutation == "ignore_ready" else ready)
        assert_stream_out(m, dut.o.valid, ready, dut.o.payload)
        if self.mutation is None:
            sub = opened.module.submodules
            ext, addr = sub.extract, sub.address
            # the address stages A1, A2 followed by shadow registers (A3 is its ref port)
            a1, a2 = Signal(), Signal()
            a3 = addr.ref.valid & addr.ref.payload.close
            m.d.sync += [a1.eq(ext.op.valid & ext.op.payload.close), a2.eq(a1)]
            a2_was = Signal()
            m.d.sync += a2_was.eq(a2)
            m.d.comb += Assert(a3 == a2_was)
            closes = [ext.op.valid & ext.op.payload.close, a1, a2, a3]
            closes += [opened.signal(f"v_{s}", "mac") & opened.signal(f"c_{s}", "mac")
                       for s in "RBOP"]
            count, head, tail = (opened.signal(n, "outbuf") for n in ("count", "head", "tail"))
            m.d.comb += [
                Assert(opened.signal("pending", "outbuf") == count + sum(closes)),
                Assert(tail == (head + count)[:len(tail)]),
                Assert(opened.signal("pending", "outbuf") <= OUT_SLOTS),
                Assert(opened.signal("count", "queue") <= PAIR_QUEUE),
            ]
