"""The system: the engine behind the framed command protocol, host side as byte streams.

::

    i (bytes) ─► FrameReceiver ─req─► Executor ─hdr, words─► ReplySender ─► o (bytes)
                      │ buf_wr          │ │ host bus                ▲ done
                      ▼                 │ └──────► Engine           │
                 frame buffer ◄─buf_rd──┤                           │
                   (RAM)                └─► LoadPath (decoder, loader) ─► bus writes

:class:`StreamSystem` offers the host side as ``amaranth.lib.stream`` byte streams, so an
SoC can use it without a UART; :class:`UARTSystem` puts a UART (``uart.py``) on them.
``protocol.py`` defines the requests and replies.
"""

from __future__ import annotations

from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ...sim.config import Config
from ..engine import Engine
from ..mem import RAM
from .executor import Executor
from .frame import FrameReceiver, ReplySender
from .loadpath import LoadPath
from .protocol import FRAME_TIMEOUT_BYTES
from .uart import DEFAULT_BAUD, UARTRx, UARTTx, divisor_for

__all__ = ["StreamSystem", "UARTSystem", "FRAME_WORDS"]

#: payload words a request may carry (the frame buffer's depth): a LOAD's descriptor and
#: image, or a WRITE's words
FRAME_WORDS = 2048


class StreamSystem(wiring.Component):
    """Engine, load path and protocol, with byte streams on the host side.

    Parameters
    ----------
    cfg : Config
    timeout_cycles : int
        A request that stops this long is dropped (``Reply.TIMEOUT``).
    buffer_words : int
        Frame buffer depth.

    Members
    -------
    i : In(stream.Signature(8))
        Request bytes.
    o : Out(stream.Signature(8))
        Reply bytes.
    framing_errors, overruns : In(16)
        The link's counters, reported by STATUS (0 without a UART).
    busy, error : Out(1)
        The engine runs; the last request was refused (for LEDs).
    """

    def __init__(self, cfg: Config, timeout_cycles: int, buffer_words: int = FRAME_WORDS):
        self.cfg, self.timeout_cycles, self.buffer_words = cfg, timeout_cycles, buffer_words
        super().__init__({
            "i": In(stream.Signature(8)), "o": Out(stream.Signature(8)),
            "framing_errors": In(16), "overruns": In(16),
            "busy": Out(1), "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        m.submodules.rx = rx = FrameReceiver(self.buffer_words, self.timeout_cycles)
        m.submodules.buf = buf = RAM(32, self.buffer_words)
        m.submodules.exe = exe = Executor(cfg, self.buffer_words)
        m.submodules.load = load = LoadPath(cfg)
        m.submodules.tx = tx = ReplySender()
        m.submodules.engine = engine = Engine(cfg)
        wiring.connect(m, wiring.flipped(self.i), rx.i)
        wiring.connect(m, rx.buf_wr, buf.w)
        wiring.connect(m, rx.o, exe.req)
        wiring.connect(m, exe.buf_rd, buf.r)
        wiring.connect(m, exe.host, engine.host)
        wiring.connect(m, exe.load_i, load.i)
        wiring.connect(m, load.o, exe.load_w)
        wiring.connect(m, exe.hdr, tx.hdr)
        wiring.connect(m, exe.words, tx.words)
        wiring.connect(m, tx.o, wiring.flipped(self.o))
        m.d.comb += [
            rx.release.eq(exe.release), exe.reply_done.eq(tx.done),
            exe.engine_busy.eq(engine.busy),
            load.go.eq(exe.load_go), load.commit.eq(exe.load_commit),
            load.target.eq(exe.load_target), load.pe.eq(exe.load_pe),
            load.entry0.eq(exe.load_entry0), load.value0.eq(exe.load_value0),
            exe.load_result.eq(load.result), exe.load_too_big.eq(load.too_big),
            exe.load_error.eq(load.error), exe.load_entries.eq(load.entries),
            exe.load_values.eq(load.values),
            exe.framing_errors.eq(self.framing_errors), exe.overruns.eq(self.overruns),
            self.busy.eq(engine.busy),
        ]
        with m.If(tx.hdr.valid & tx.hdr.ready):
            m.d.sync += self.error.eq(tx.hdr.payload.code != 0)
        return m


class UARTSystem(wiring.Component):
    """:class:`StreamSystem` behind a UART (8N1).

    Parameters
    ----------
    cfg : Config
    clock_hz : int
    baud : int
        Default ``uart.DEFAULT_BAUD``; the divisor is checked by ``uart.divisor_for``.

    Members
    -------
    rx : In(1)
        The UART's receive pin (idle high).
    tx : Out(1)
        The transmit pin.
    busy, error : Out(1)
    """

    def __init__(self, cfg: Config, clock_hz: int, baud: int = DEFAULT_BAUD,
                 buffer_words: int = FRAME_WORDS):
        self.cfg, self.buffer_words = cfg, buffer_words
        self.divisor = divisor_for(clock_hz, baud)
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1),
                          "busy": Out(1), "error": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.urx = urx = UARTRx(self.divisor)
        m.submodules.utx = utx = UARTTx(self.divisor)
        m.submodules.sys = sys_ = StreamSystem(
            self.cfg, FRAME_TIMEOUT_BYTES * 10 * self.divisor, self.buffer_words)
        wiring.connect(m, urx.o, sys_.i)
        wiring.connect(m, sys_.o, utx.i)
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx),
                     sys_.framing_errors.eq(urx.framing_errors),
                     sys_.overruns.eq(urx.overruns),
                     self.busy.eq(sys_.busy), self.error.eq(sys_.error)]
        return m
