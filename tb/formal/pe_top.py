"""The dot-product PE (``rtl/pe/pe.py``): its result stream obeys the stream rules under
any weight and activation streams that keep to them and any consumer (k-induction); and
the reference helpers of the result proofs (``pe_join.py``, ``pe_select.py``,
``pe_mac.py``): a packed chunk unpacked, matches ranked, distinct operand values."""

from __future__ import annotations

from amaranth import Array, Module, Mux, Signal, Value, signed
from amaranth.asserts import AnySeq

from ...rtl.pe import PE
from ...sim.config import Config
from .common import Spec, assert_stream_out, drive_stream_in

CFG = Config(join_width=8, multipliers=1, acc_width=20, max_reduction=16, queue_depth=2)


class PEStream(Spec):
    """``ignore_ready``: the PE sees ``o.ready`` high while the consumer stalls."""

    mutations = ("ignore_ready",)

    def body(self, m: Module) -> None:
        m.submodules.dut = dut = PE(CFG)
        drive_stream_in(m, dut.w)
        drive_stream_in(m, dut.a)
        m.d.comb += dut.clear.eq(AnySeq(1))
        ready = AnySeq(1)
        m.d.comb += dut.o.ready.eq(1 if self.mutation == "ignore_ready" else ready)
        assert_stream_out(m, dut.o.valid, ready, dut.o.payload)


def dense(m: Module, mask: Value, values: list, J: int, name: str) -> list:
    """The J channel values of a packed chunk (value number popcount(mask below c), or 0
    where the mask bit is clear)."""
    out = []
    for c in range(J):
        v = Signal(signed(8), name=f"{name}{c}")
        rank = sum(mask[i] for i in range(c)) if c else 0
        m.d.comb += v.eq(Mux(mask[c], Array(values)[rank] if c else values[0], 0))
        out.append(v)
    return out


def ranked(m: Module, match: Value, values: list, name: str) -> list:
    """``values`` of the set bits of ``match``, packed in channel order (entry r: the
    channel whose match rank is r; 0 past the last)."""
    n = len(values)
    out = []
    for r in range(n):
        v = Signal(signed(8), name=f"{name}{r}")
        m.d.comb += v.eq(0)
        for c in range(r, n):
            rank = sum(match[i] for i in range(c)) if c else 0
            with m.If(match[c] & (rank == r)):
                m.d.comb += v.eq(values[c])
        out.append(v)
    return out


def tag(side: str, chunk: int, lane: int) -> int:
    """The value packed in ``lane`` of weight (``w``) or activation (``a``) chunk
    ``chunk``: distinct and nonzero, so every operand names the place it came from."""
    v = 1 + lane + CFG.join_width * chunk
    return v if side == "w" else -v
