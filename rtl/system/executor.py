"""The executor: one request at a time, against the engine's host bus, and its reply.

It takes the frame receiver's events (``frame.py``), runs the command of each request
that arrived whole and correct (``protocol.py``), sends one reply header and its words to
the reply sender, and, when the reply's last byte has left, releases the frame buffer to
the receiver. A refused request (any code but OK, from the receiver or from here) writes
nothing, is counted in ``refused`` and is released with ``flush`` high: the receiver drops
what follows it until the line pauses (``frame.py``), requests sent behind it included.

* WRITE: each payload word read from the frame buffer (one cycle) and written on the bus.
* READ and STATUS: one bus read at a time, its word (``READ_LATENCY`` cycles later) sent
  on ``words``.
* START: one bus write of CTRL.
* LOAD: the descriptor read from the buffer and checked, then two passes of the image
  through the load path (``loadpath.py``): a check pass that writes nothing, and only if
  it found no fault the commit pass (the loader's writes go to the bus).

Each step takes a couple of cycles and nothing is pipelined: the bytes of the next request
wait in the receive FIFO (``system.py``) meanwhile.
"""

from __future__ import annotations

from amaranth import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ...sim.config import Config
from ..decoder import WORD_LAYOUT
from ..engine.regmap import REG, HostSignature
from ..mem import ReadPortSignature, addr_bits
from .frame import reply_layout, request_layout
from .loader import write_layout
from .protocol import LOAD_WORDS, STATUS_WORDS, Cmd, Reply, Target

__all__ = ["Executor"]


class Executor(wiring.Component):
    """Requests to bus operations and replies.

    Parameters
    ----------
    cfg : Config
    buffer_words : int
        The frame buffer's depth.

    Members
    -------
    req : In(stream.Signature(request_layout()))
        The receiver's events.
    release : Out(1)
        Pulse: the request's reply has left; the receiver may take the next.
    flush : Out(1)
        With ``release``: the request was refused.
    buf_rd : Out(ReadPortSignature(addr_bits(buffer_words), 32))
        The frame buffer (payload word n at n).
    host : In(HostSignature())
        The engine's host bus (this side drives it).
    engine_busy : In(1)
    load_i : Out(stream.Signature(WORD_LAYOUT))
        Image words to the load path.
    load_go, load_commit : Out(1)
    load_target : Out(Target)
    load_pe : Out(8)
    load_entry0, load_value0 : Out(32)
    load_w : In(stream.Signature(write_layout()))
        The load path's bus writes.
    load_result, load_too_big : In(1)
    load_error : In(4)
    load_entries, load_values : In(32)
    hdr : Out(stream.Signature(reply_layout()))
    words : Out(stream.Signature(32))
    reply_done : In(1)
        The reply sender sent a reply's last byte.
    framing_errors, overruns : In(16)
        For STATUS.
    refused : Out(32)
        Requests refused since reset.
    """

    def __init__(self, cfg: Config, buffer_words: int):
        self.cfg, self.buffer_words = cfg, buffer_words
        super().__init__({
            "req": In(stream.Signature(request_layout())),
            "release": Out(1), "flush": Out(1),
            "buf_rd": Out(ReadPortSignature(addr_bits(buffer_words), 32)),
            "host": In(HostSignature()),
            "engine_busy": In(1),
            "load_i": Out(stream.Signature(WORD_LAYOUT)),
            "load_go": Out(1), "load_commit": Out(1), "load_target": Out(Target),
            "load_pe": Out(8), "load_entry0": Out(32), "load_value0": Out(32),
            "load_w": In(stream.Signature(write_layout())),
            "load_result": In(1), "load_too_big": In(1), "load_error": In(4),
            "load_entries": In(32), "load_values": In(32),
            "hdr": Out(stream.Signature(reply_layout())),
            "words": Out(stream.Signature(32)),
            "reply_done": In(1),
            "framing_errors": In(16), "overruns": In(16),
            "refused": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        r = self.req.payload
        cmd, count, arg = Signal(8), Signal(16), Signal(32)
        n = Signal(17)                      # word index of the step
        code, detail = Signal(Reply), Signal(32)
        rcount = Signal(16)                 # reply words
        word = Signal(32)                   # a word read from the buffer
        desc = [Signal(32, name=f"desc{i}") for i in range(LOAD_WORDS)]
        h = self.host
        m.d.comb += [self.buf_rd.addr.eq(n), self.hdr.payload.cmd.eq(cmd),
                     self.hdr.payload.code.eq(code), self.hdr.payload.count.eq(rcount),
                     self.hdr.payload.detail.eq(detail), self.flush.eq(code != Reply.OK)]

        wires = self._load_wiring(m, n, count, desc)

        def reply(c, cnt=0, det=0):
            m.d.sync += [code.eq(c), rcount.eq(cnt), detail.eq(det)]
            m.next = "HEADER"

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.req.ready.eq(1)
                with m.If(self.req.valid):
                    m.d.sync += [cmd.eq(r.cmd), count.eq(r.count), arg.eq(r.arg), n.eq(0)]
                    with m.If(r.code != Reply.OK):
                        reply(r.code)
                    with m.Elif(self.engine_busy & ((r.cmd == Cmd.WRITE) | (r.cmd == Cmd.LOAD)
                                                    | ((r.cmd == Cmd.START) & ~r.arg[2]))):
                        reply(Reply.BUSY)
                    with m.Elif(r.cmd == Cmd.WRITE):
                        m.next = "WRITE_READ"
                    with m.Elif(r.cmd == Cmd.START):
                        m.d.comb += [h.addr.eq(REG["CTRL"]), h.wdata.eq(r.arg), h.we.eq(1)]
                        reply(Reply.OK)
                    with m.Elif(r.cmd == Cmd.LOAD):
                        m.next = "DESC_READ"
                    with m.Elif(r.cmd == Cmd.READ):     # the header, then the words
                        reply(Reply.OK, cnt=r.count)
                    with m.Else():
                        reply(Reply.OK, cnt=STATUS_WORDS)
            self._write(m, n, count, arg, reply)
            self._load(m, n, count, desc, reply, wires)
            with m.State("HEADER"):
                m.d.comb += self.hdr.valid.eq(1)
                with m.If(self.hdr.ready):
                    with m.If(code != Reply.OK):
                        m.d.sync += self.refused.eq(self.refused + 1)
                    with m.If((code == Reply.OK) & ((cmd == Cmd.READ) | (cmd == Cmd.STATUS))):
                        m.next = "READ_ISSUE"
                    with m.Else():
                        m.next = "SENDING"
            self._read(m, n, rcount, cmd, arg, word)
            with m.State("SENDING"):
                with m.If(self.reply_done):
                    m.d.comb += self.release.eq(1)
                    m.next = "IDLE"
        return m

    def _write(self, m, n, count, arg, reply) -> None:
        """WRITE: buffer word n read, then written to ``arg + n``."""
        h = self.host
        with m.State("WRITE_READ"):
            m.d.comb += self.buf_rd.en.eq(1)
            m.next = "WRITE_BUS"
        with m.State("WRITE_BUS"):
            m.d.comb += [h.addr.eq(arg + n), h.wdata.eq(self.buf_rd.data), h.we.eq(1)]
            m.d.sync += n.eq(n + 1)
            with m.If(n + 1 == count):
                reply(Reply.OK)
            with m.Else():
                m.next = "WRITE_READ"

    def _read(self, m, n, rcount, cmd, arg, word) -> None:
        """READ / STATUS: reply word n from the bus (or the system's counters)."""
        h = self.host
        status = [None, self.framing_errors, self.overruns, self.refused]
        assert len(status) == STATUS_WORDS
        with m.State("READ_ISSUE"):
            with m.If(n == rcount):
                m.next = "SENDING"
            with m.Elif((cmd == Cmd.READ) | (n == 0)):
                m.d.comb += [h.addr.eq(arg + n), h.re.eq(1)]
                with m.If(cmd == Cmd.STATUS):
                    m.d.comb += h.addr.eq(REG["STATUS"])
                m.next = "READ_WAIT"
            with m.Else():
                with m.Switch(n):
                    for i, v in enumerate(status):
                        if v is not None:
                            with m.Case(i):
                                m.d.sync += word.eq(v)
                m.next = "READ_SEND"
        with m.State("READ_WAIT"):
            with m.If(h.rvalid):
                m.d.sync += word.eq(h.rdata)
                m.next = "READ_SEND"
        with m.State("READ_SEND"):
            m.d.comb += [self.words.valid.eq(1), self.words.payload.eq(word)]
            with m.If(self.words.ready):
                m.d.sync += n.eq(n + 1)
                m.next = "READ_ISSUE"

    def _load_wiring(self, m, n, count, desc):
        """The load path's inputs (outside the FSM); returns ``commit``, target, PE."""
        commit = Signal()
        target, pe = desc[0][0:8], desc[0][8:16]
        m.d.comb += [self.load_target.eq(target), self.load_pe.eq(pe),
                     self.load_entry0.eq(desc[1]), self.load_value0.eq(desc[2]),
                     self.load_commit.eq(commit),
                     self.load_i.payload.data.eq(self.buf_rd.data),
                     self.load_i.payload.last.eq(n == count - 1)]
        # the load path writes only in a commit pass, while no state drives the bus
        h = self.host
        m.d.comb += [self.load_w.ready.eq(1), h.addr.eq(self.load_w.payload.addr),
                     h.wdata.eq(self.load_w.payload.data), h.we.eq(self.load_w.valid)]
        return commit, target, pe

    def _load(self, m, n, count, desc, reply, wires) -> None:
        """LOAD: descriptor, check pass, commit pass."""
        cfg = self.cfg
        commit, target, pe = wires
        with m.State("DESC_READ"):
            m.d.comb += self.buf_rd.en.eq(1)
            m.next = "DESC_KEEP"
        with m.State("DESC_KEEP"):
            with m.Switch(n):
                for i, d in enumerate(desc):
                    with m.Case(i):
                        m.d.sync += d.eq(self.buf_rd.data)
            m.d.sync += n.eq(n + 1)
            with m.If(n == LOAD_WORDS - 1):
                m.next = "DESC_CHECK"
            with m.Else():
                m.next = "DESC_READ"
        with m.State("DESC_CHECK"):
            bad_target = (target > Target.WGT) | ((target == Target.WGT) & (pe >= cfg.pes))
            with m.If(bad_target | (desc[0][16:] != 0)):
                reply(Reply.BAD_TARGET)
            with m.Else():
                m.d.comb += [self.load_go.eq(1), self.load_commit.eq(0)]
                m.d.sync += [n.eq(LOAD_WORDS), commit.eq(0)]
                m.next = "IMAGE_READ"
        with m.State("IMAGE_READ"):
            m.d.comb += self.buf_rd.en.eq(1)
            m.next = "IMAGE_FEED"
        with m.State("IMAGE_FEED"):
            m.d.comb += self.load_i.valid.eq(1)
            with m.If(self.load_i.ready):
                m.d.sync += n.eq(n + 1)
                with m.If(n == count - 1):
                    m.next = "IMAGE_WAIT"
                with m.Else():
                    m.next = "IMAGE_READ"
        with m.State("IMAGE_WAIT"):
            with m.If(self.load_result):
                with m.If(self.load_error != 0):
                    reply(Reply.BAD_IMAGE, det=self.load_error)
                with m.Elif(self.load_too_big):
                    reply(Reply.TOO_BIG)
                with m.Elif(~commit):
                    m.d.comb += [self.load_go.eq(1), self.load_commit.eq(1)]
                    m.d.sync += [n.eq(LOAD_WORDS), commit.eq(1)]
                    m.next = "IMAGE_READ"
                with m.Else():
                    reply(Reply.OK, det=Cat(self.load_entries[0:16], self.load_values[0:16]))
