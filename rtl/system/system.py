"""The system: the engine behind the framed command protocol, host side as byte streams.

::

    i (bytes) ─► FIFO ─► FrameReceiver ─req─► Executor ─hdr, words─► ReplySender ─► o (bytes)
                              │ buf_wr          │ │ host bus                ▲ done
                              ▼                 │ └──────► Engine           │
                         frame buffer ◄─buf_rd──┤                           │
                           (RAM)                └─► LoadPath (decoder, loader) ─► bus writes

:class:`StreamSystem` offers the host side as ``amaranth.lib.stream`` byte streams, so an
SoC can use it without a UART; :class:`UARTSystem` puts a UART (``uart.py``) on them.
``protocol.py`` defines the requests and replies.

The receive FIFO (block RAM) keeps the bytes of the next request while the executor works
on the present one, so a host may send a request before the previous reply has arrived
(``protocol.py``: at most one request waiting, no larger than the FIFO). When a refused
request is released the FIFO is emptied and the receiver drops bytes until the line pauses
(``frame.py``): what was sent behind a refused request is never executed.
"""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.hdl import ResetInserter
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ...sim.config import Config
from ..engine import Engine
from ..mem import RAM
from .executor import Executor
from .frame import FrameReceiver, ReplySender
from .loadpath import LoadPath
from .protocol import FRAME_TIMEOUT_BYTES
from .uart import DEFAULT_BAUD, UARTRx, UARTTx, divisor_for

__all__ = ["StreamSystem", "UARTSystem", "FRAME_WORDS", "RX_FIFO_BYTES"]

#: payload words a request may carry (the frame buffer's depth): a LOAD's descriptor and
#: image, or a WRITE's words
FRAME_WORDS = 2048
#: the receive FIFO's depth in bytes (one ECP5 block RAM as 2048 x 9): the largest request
#: a host may send before the previous reply has arrived
RX_FIFO_BYTES = 2048


class StreamSystem(wiring.Component):
    """Engine, load path and protocol, with byte streams on the host side.

    Parameters
    ----------
    cfg : Config
    timeout_cycles : int
        A request that stops this long is dropped (``Reply.TIMEOUT``); after a refusal,
        bytes are dropped until a pause this long.
    buffer_words : int
        Frame buffer depth.
    rx_fifo_bytes : int
        Receive FIFO depth.

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

    def __init__(self, cfg: Config, timeout_cycles: int, buffer_words: int = FRAME_WORDS,
                 rx_fifo_bytes: int = RX_FIFO_BYTES):
        if rx_fifo_bytes < 1:
            raise ValueError(f"rx_fifo_bytes = {rx_fifo_bytes}: must be >= 1")
        self.cfg, self.timeout_cycles, self.buffer_words = cfg, timeout_cycles, buffer_words
        self.rx_fifo_bytes = rx_fifo_bytes
        super().__init__({
            "i": In(stream.Signature(8)), "o": Out(stream.Signature(8)),
            "framing_errors": In(16), "overruns": In(16),
            "busy": Out(1), "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        fifo = SyncFIFOBuffered(width=8, depth=self.rx_fifo_bytes)
        clear = Signal()                      # a refused request is released: empty the FIFO
        m.submodules.rxq = ResetInserter({"sync": clear})(fifo)
        m.submodules.rx = rx = FrameReceiver(self.buffer_words, self.timeout_cycles)
        m.submodules.buf = buf = RAM(32, self.buffer_words)
        m.submodules.exe = exe = Executor(cfg, self.buffer_words)
        m.submodules.load = load = LoadPath(cfg)
        m.submodules.tx = tx = ReplySender()
        m.submodules.engine = engine = Engine(cfg)
        m.d.comb += [fifo.w_data.eq(self.i.payload), fifo.w_en.eq(self.i.valid),
                     self.i.ready.eq(fifo.w_rdy),
                     rx.i.payload.eq(fifo.r_data), rx.i.valid.eq(fifo.r_rdy),
                     fifo.r_en.eq(rx.i.ready),
                     clear.eq(exe.release & exe.flush)]
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
            rx.release.eq(exe.release), rx.flush.eq(exe.flush), exe.reply_done.eq(tx.done),
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
    buffer_words, rx_fifo_bytes : int
        As :class:`StreamSystem`'s; its timeout is ``FRAME_TIMEOUT_BYTES`` byte times.

    Members
    -------
    rx : In(1)
        The UART's receive pin (idle high).
    tx : Out(1)
        The transmit pin.
    busy, error : Out(1)
    """

    def __init__(self, cfg: Config, clock_hz: int, baud: int = DEFAULT_BAUD,
                 buffer_words: int = FRAME_WORDS, rx_fifo_bytes: int = RX_FIFO_BYTES):
        self.cfg, self.buffer_words, self.rx_fifo_bytes = cfg, buffer_words, rx_fifo_bytes
        self.divisor = divisor_for(clock_hz, baud)
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1),
                          "busy": Out(1), "error": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.urx = urx = UARTRx(self.divisor)
        m.submodules.utx = utx = UARTTx(self.divisor)
        m.submodules.sys = sys_ = StreamSystem(
            self.cfg, FRAME_TIMEOUT_BYTES * 10 * self.divisor, self.buffer_words,
            self.rx_fifo_bytes)
        wiring.connect(m, urx.o, sys_.i)
        wiring.connect(m, sys_.o, utx.i)
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx),
                     sys_.framing_errors.eq(urx.framing_errors),
                     sys_.overruns.eq(urx.overruns),
                     self.busy.eq(sys_.busy), self.error.eq(sys_.error)]
        return m
