"""The compressed-format decoder (``rtl/decoder/``), through its ports only (its internals
are free to change): the output stream obeys the stream rules, the decoder never
deadlocks, and every image ends.

The words come from any upstream that keeps to the stream rules: any values (so any
header, any format, any body, a right or a wrong CRC), any ``last`` flags (images of any
length, back to back), any gaps.

* ``DecoderStream``: ``o`` keeps to the stream rules under any consumer (k-induction).
* ``DecoderAccepts``: with ``o`` always ready, a word offered on ``i`` is accepted within
  ``ACCEPT_BOUND`` cycles.
* ``DecoderEnds``: with ``o`` always ready, ``done`` pulses within ``END_BOUND`` cycles of
  the word with ``last`` being accepted; at ``done`` the image either carries an error
  code or its chunk flagged ``end`` has been emitted, never both.

The last two are bounded model checks from the initial state (``docs/verification.md``
gives the depth): the decoder's state (word index, CRC, positions) makes unreachable
states that an induction would have to rule out through its internals.
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth import Module, Signal
from amaranth.asserts import AnySeq
from amaranth.hdl import Assert, Cover

from ...rtl.decoder import WORD_LAYOUT, Decoder
from ...sim.config import Config
from .common import Spec, assert_stream_out, drive_stream_in

CFG = Config(join_width=8, multipliers=1, max_channels=16, max_positions=4)
# a body word of the run-length format holds the input for at most one cycle a chunk it
# skips, and a vector's chunks left after its last word are emitted with the input held:
# at most ceil(max_channels / J) cycles each
ACCEPT_BOUND = -(-CFG.max_channels // CFG.join_width) + 2
END_BOUND = -(-CFG.max_channels // CFG.join_width) + 2


class DecoderStream(Spec):
    """``ignore_ready``: the decoder sees ``o.ready`` high while the consumer stalls."""

    mutations = ("ignore_ready",)

    def body(self, m: Module) -> None:
        m.submodules.dut = dut = Decoder(CFG)
        drive_stream_in(m, dut.i)
        ready = AnySeq(1)
        m.d.comb += dut.o.ready.eq(1 if self.mutation == "ignore_ready" else ready)
        assert_stream_out(m, dut.o.valid, ready, dut.o.payload,
                          cover_stall=[dut.o.payload.end])


class DecoderAccepts(Spec):
    """``stall_output``: ``o.ready`` is left free (the consumer may stall for ever), which
    the property's premise excludes: the input then waits past the bound."""

    mutations = ("stall_output",)

    def body(self, m: Module) -> None:
        m.submodules.dut = dut = Decoder(CFG)
        drive_stream_in(m, dut.i)
        m.d.comb += dut.o.ready.eq(AnySeq(1) if self.mutation == "stall_output" else 1)
        wait = Signal(range(ACCEPT_BOUND + 2))
        with m.If(dut.i.valid & ~dut.i.ready):
            with m.If(wait <= ACCEPT_BOUND):
                m.d.sync += wait.eq(wait + 1)
        with m.Else():
            m.d.sync += wait.eq(0)
        m.d.comb += Assert(wait < ACCEPT_BOUND)
        m.d.comb += Cover(dut.i.valid & dut.i.ready & (wait != 0))


class DecoderEnds(Spec):
    """``lose_last``: the decoder sees ``last`` cleared on a word the solver picks, so an
    image the upstream ended goes on."""

    mutations = ("lose_last",)

    def body(self, m: Module) -> None:
        m.submodules.dut = dut = Decoder(CFG)
        up = SimpleNamespace(valid=dut.i.valid, ready=dut.i.ready,
                             payload=Signal(WORD_LAYOUT, name="up_word"))
        drive_stream_in(m, up)
        up_last = up.payload.last
        m.d.comb += dut.i.payload.eq(up.payload)
        if self.mutation == "lose_last":
            m.d.comb += dut.i.payload.last.eq(up_last & ~AnySeq(1))
        m.d.comb += dut.o.ready.eq(1)
        ending = Signal()                       # a last word was taken, no done yet
        since = Signal(range(END_BOUND + 2))
        end_seen = Signal()
        with m.If(dut.done):
            m.d.sync += [ending.eq(0), since.eq(0), end_seen.eq(0)]
        with m.Else():
            with m.If(dut.i.valid & dut.i.ready & up_last):
                m.d.sync += ending.eq(1)
            with m.If(ending & (since <= END_BOUND)):
                m.d.sync += since.eq(since + 1)
            with m.If(dut.o.valid & dut.o.payload.end):
                m.d.sync += end_seen.eq(1)
        m.d.comb += Assert(since < END_BOUND)
        end_now = end_seen | (dut.o.valid & dut.o.payload.end)
        with m.If(dut.done):
            m.d.comb += Assert((dut.error != 0) != end_now)
        m.d.comb += Cover(dut.done & (dut.error == 0) & (since >= 1))
