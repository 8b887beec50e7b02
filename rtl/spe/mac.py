"""MAC: weight read, one multiplier and the accumulator of the scan PE (``rtl/spe/``)."""

from __future__ import annotations

from amaranth import Module, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ...sim.config import Config
from ..mem import ReadPortSignature
from .layouts import ref_layout, result_layout, wval_addr_bits

__all__ = ["MAC", "MAC_STAGES"]

# cycles from a ref at the weight-value memory's port to its result on ``res``: the
# memory's read register (R), the register beside it (B), the operand registers (O) and
# the product (P); the accumulator adds P in the cycle ``res`` shows the sum
MAC_STAGES = 4


class MAC(wiring.Component):
    """Reads the weight, multiplies and accumulates; never stalls.

    ``ref.addr`` drives the weight-value memory (``en`` = ``ref.valid``); its data, one
    cycle later (R), is registered right beside the memory (B); the weight and the
    activation byte (delayed alongside) are registered again at the multiplier (O); the
    product is registered (P). In the cycle after P is loaded the accumulator adds it:
    for a ``close`` op the sum leaves on ``res`` (valid that cycle, combinational from the
    adder: the result buffer registers it) and the accumulator restarts at 0. The sum
    wraps to ``acc_width`` bits (two's complement).

    Parameters
    ----------
    cfg : Config
        ``acc_width``, ``wval_mem_words``.

    Members
    -------
    ref : In(stream.Signature(ref_layout(cfg), always_ready=True))
        Located matches.
    wval_rd : Out(ReadPortSignature(wval_addr_bits(cfg), signed(8)))
        The weight-value memory (``data``: the word at the ``addr`` of the last cycle with
        ``en``).
    res : Out(stream.Signature(result_layout(acc_width), always_ready=True))
        One result per ``close`` op, ``MAC_STAGES`` cycles after its ref.
    busy : Out(1)
        A match is in the stages.
    """

    def __init__(self, cfg: Config):
        self.cfg = cfg
        super().__init__({
            "ref": In(stream.Signature(ref_layout(cfg), always_ready=True)),
            "wval_rd": Out(ReadPortSignature(wval_addr_bits(cfg), signed(8))),
            "res": Out(stream.Signature(result_layout(cfg.acc_width), always_ready=True)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        AW = self.cfg.acc_width
        r = self.ref.payload
        m.d.comb += [self.wval_rd.addr.eq(r.addr), self.wval_rd.en.eq(self.ref.valid)]
        # valid, close, act along R, B, O; P keeps valid and close
        v = [Signal(name=f"v_{s}") for s in "RBOP"]
        c = [Signal(name=f"c_{s}") for s in "RBOP"]
        a = [Signal(signed(8), name=f"a_{s}") for s in "RB"]
        m.d.sync += [v[0].eq(self.ref.valid), c[0].eq(r.close), a[0].eq(r.act),
                     a[1].eq(a[0])]
        m.d.sync += [v[k + 1].eq(v[k]) for k in range(3)]
        m.d.sync += [c[k + 1].eq(c[k]) for k in range(3)]
        wv = Signal(signed(8))                        # B: beside the memory
        w_op = Signal(signed(8))                      # O: at the multiplier
        a_op = Signal(signed(8))
        prod = Signal(signed(16))                     # P
        m.d.sync += [wv.eq(self.wval_rd.data), w_op.eq(wv), a_op.eq(a[1]),
                     prod.eq(w_op * a_op)]
        acc = Signal(signed(AW))
        total = Signal(signed(AW))
        m.d.comb += total.eq(acc + prod)
        with m.If(v[3]):
            m.d.sync += acc.eq(total)
            with m.If(c[3]):
                m.d.sync += acc.eq(0)
        m.d.comb += [self.res.valid.eq(v[3] & c[3]), self.res.payload.value.eq(total),
                     self.busy.eq(v[0] | v[1] | v[2] | v[3])]
        return m
