"""The board top of the engine: a bit-serial bridge from the UART pins to the host port.

A host bus word (address, data, write, read) is shifted in from the UART receive pin, a
button strobes it onto the engine's host port, and the read data is shifted out on the
UART transmit pin; busy and done drive LEDs. Every register and memory of the engine can
reach the read data, so synthesis keeps the whole design (the report's multiplier count
shows it). The board needs resources ``uart``, ``button_fire`` and two ``led``.
"""

from __future__ import annotations

from amaranth import Cat, Elaboratable, Module, Signal
from amaranth.lib import io

from ...sim.config import Config
from ..engine import Engine

__all__ = ["BridgeTop"]


class BridgeTop(Elaboratable):
    def __init__(self, cfg: Config):
        self.cfg = cfg

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = eng = Engine(self.cfg)
        uart = platform.request("uart", 0, dir="-")
        m.submodules.rx = rx = io.Buffer("i", uart.rx)
        m.submodules.tx = tx = io.Buffer("o", uart.tx)
        m.submodules.fire = strobe = io.Buffer("i", platform.request("button_fire", 0, dir="-"))
        leds = []
        for i in range(2):
            m.submodules[f"led{i}"] = led = io.Buffer("o", platform.request("led", i, dir="-"))
            leds.append(led)
        shreg = Signal(66)
        m.d.sync += shreg.eq(Cat(rx.i, shreg[:-1]))
        s_prev = Signal()
        m.d.sync += s_prev.eq(strobe.i)
        fire = strobe.i & ~s_prev
        m.d.comb += [eng.host.addr.eq(shreg[0:32]), eng.host.wdata.eq(shreg[32:64]),
                     eng.host.we.eq(fire & shreg[64]), eng.host.re.eq(fire & shreg[65])]
        out = Signal(32)
        with m.If(eng.host.rvalid):
            m.d.sync += out.eq(eng.host.rdata)
        with m.Else():
            m.d.sync += out.eq(Cat(out[1:], out[0]))
        m.d.comb += [tx.o.eq(out[0]), leds[0].o.eq(eng.busy), leds[1].o.eq(eng.done)]
        return m


