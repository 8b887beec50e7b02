"""The scan PE's pair queue (``rtl/spe/queue.py``) against a reference model.

The model counts pushes and pops modulo 32 (twice the queue's 16 pairs, so the pairs in
flight have distinct indices) and follows one pair chosen by the solver (``AnyConst``
index ``T``): the pair pushed with index ``T`` must be the head when the pop with index
``T`` happens. As ``T`` is arbitrary this holds for every pair: what goes in comes out in
order, none lost, none duplicated. ``i.ready`` must equal "fewer than 16 held",
``head_valid`` (and ``busy``) "one or more held". The environment may stall ``i`` at
will (the upstream holds its pair until ready) and pops only while ``head_valid``.

For k-induction the harness also asserts what links the queue's registers to the model:
``count`` equals the model's count, ``tail = head + count`` (mod 16), and the followed
pair sits in the memory at ``head + (T - pops)`` while it is queued (read through a
read port added for the harness). The mutation runs leave these out, so their failures
come from the reference model alone.
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth import Module, Signal
from amaranth.asserts import AnyConst, AnySeq
from amaranth.hdl import Assert, Assume, Cover

from ...rtl.spe.queue import PAIR_QUEUE, PairQueue
from ...sim.config import Config
from .common import Opened, Spec, as_bits, drive_stream_in

CFG = Config(scan_width=16, wval_mem_words=16)
IDX = (2 * PAIR_QUEUE - 1).bit_length()      # model indices: modulo 2 x the queue depth


class QueueModel(Spec):
    """``drop``: one pair the upstream sees taken never reaches the queue (its ``valid``
    is masked at a moment the solver picks). ``dup``: a pop the model sees does not reach
    the queue, so the head pair would come out twice."""

    mutations = ("drop", "dup")

    def body(self, m: Module) -> None:
        D = PAIR_QUEUE
        dut = PairQueue(CFG, checks=self.mutation is None)
        opened = Opened(dut)
        rd = opened.memory("mem").read_port(domain="comb")
        m.submodules.dut = opened

        width = len(as_bits(dut.i.payload))
        up = SimpleNamespace(valid=Signal(name="up_valid"), ready=dut.i.ready,
                             payload=Signal(width, name="up_payload"))
        drive_stream_in(m, up)
        pop = AnySeq(1)
        glitch = AnySeq(1)                          # when a mutation strikes
        m.d.comb += [
            Assume(~pop | dut.head_valid),
            dut.i.valid.eq(up.valid & ~glitch if self.mutation == "drop" else up.valid),
            as_bits(dut.i.payload).eq(up.payload),
            dut.pop.eq(pop & ~glitch if self.mutation == "dup" else pop),
        ]
        push = up.valid & up.ready                  # the transfer as the upstream sees it

        n_in, n_out = Signal(IDX), Signal(IDX)
        T = AnyConst(IDX)
        tagged = Signal(len(as_bits(dut.head)))
        m.d.sync += [n_in.eq(n_in + push), n_out.eq(n_out + pop)]
        with m.If(push & (n_in == T)):
            m.d.sync += tagged.eq(up.payload)
        count = Signal(IDX)
        m.d.comb += count.eq(n_in - n_out)
        m.d.comb += [Assert(count <= D), Assert(dut.i.ready == (count < D)),
                     Assert(dut.head_valid == (count != 0)), Assert(dut.busy == dut.head_valid)]
        with m.If(pop & (n_out == T)):
            m.d.comb += Assert(as_bits(dut.head) == tagged)

        pos = Signal(IDX)                           # the followed pair's place in the queue
        m.d.comb += pos.eq(T - n_out)
        if self.mutation is None:
            head, tail = opened.signal("head"), opened.signal("tail")
            m.d.comb += [Assert(opened.signal("count") == count),
                         Assert(tail == (head + count)[:len(tail)]),
                         rd.addr.eq(head + pos)]
            with m.If(pos < count):
                m.d.comb += Assert(as_bits(rd.data) == tagged)

        full_seen = Signal()
        with m.If(count == D):
            m.d.sync += full_seen.eq(1)
        m.d.comb += Cover(pop & (n_out == T) & full_seen & (T != 0))
