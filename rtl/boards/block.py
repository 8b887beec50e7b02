"""Out-of-context top of one block, for quick synthesis and timing loops."""

from __future__ import annotations

from amaranth import Cat, ClockDomain, Elaboratable, Module, Signal, Value

from ...sim.config import Config
from ..engine import Engine
from ..pe import PE

__all__ = ["BlockTop"]


class BlockTop(Elaboratable):
    """Out-of-context wrapper of one block with three pins: every input of the block is
    driven from a shift register fed by ``din``, every output is registered and folded
    into ``dout``, so synthesis keeps all of the block's logic and every path starts and
    ends at a flip-flop (register-to-register timing, as inside the engine)."""

    def __init__(self, block: str, cfg: Config):
        self.block, self.cfg = block, cfg
        self.clk = Signal()
        self.din = Signal()
        self.dout = Signal()

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = cd = ClockDomain("sync", reset_less=True)
        m.d.comb += cd.clk.eq(self.clk)
        dut = {"pe": PE, "engine": Engine}[self.block](self.cfg)
        m.submodules.dut = dut
        ins, outs = [], []
        for _path, member, value in dut.signature.flatten(dut):
            (ins if member.flow.name == "In" else outs).append(Value.cast(value))
        width = sum(len(v) for v in ins)
        sh = Signal(width)
        m.d.sync += sh.eq(Cat(self.din, sh[:-1]))
        pos = 0
        for v in ins:
            m.d.comb += v.eq(sh[pos:pos + len(v)])
            pos += len(v)
        folded = Signal()
        acc = 0
        for v in outs:
            r = Signal(len(v))
            m.d.sync += r.eq(v)
            acc = acc ^ r.xor()
        m.d.sync += folded.eq(acc)
        m.d.comb += self.dout.eq(folded)
        return m


