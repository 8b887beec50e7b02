"""Framing of the system's command protocol (``protocol.py``): :class:`FrameReceiver` turns
request bytes into one event per request, :class:`ReplySender` turns a reply header and its
payload words into reply bytes (``rtl/system/``).

Receiver timing: a request's bytes are taken one a cycle at most (``i.ready`` is high while
hunting, inside a frame and while flushing). A word shows in a register in the cycle after
its last byte is taken and is used in that cycle (the CRC register steps, a payload word
goes out on ``buf_wr``, the CRC word is compared), so the event of a complete frame shows
on ``o`` ``EVENT_LATENCY`` cycles after the cycle its CRC word's last byte was taken.
Inside a frame (after the sync byte), ``timeout_cycles`` consecutive cycles without a byte
end the frame: its ``TIMEOUT`` event shows ``timeout_cycles + 1`` cycles after the last
byte taken. From the cycle after a frame's last byte (or the timeout) until ``release``,
``i.ready`` is low: one request outstanding (a FIFO in front keeps the bytes that arrive
meanwhile, ``system.py``).

Resynchronisation: a ``release`` with ``flush`` high (the request was refused) makes the
receiver drop bytes until ``timeout_cycles`` consecutive cycles pass without one; it hunts
for the sync byte from the next cycle on. So what is left of a refused transmission (the
tail of a frame whose count was corrupted, a request sent behind it) cannot start a false
frame, whatever its bytes, as long as it has no pause of the timeout.

Sender timing: a header taken on ``hdr`` shows its sync byte on ``o`` the next cycle; the
next word is loaded in the cycle the last byte of the present one is taken, so with ``o``
always ready and ``words`` always valid the sender gives one byte a cycle, replies back to
back included (``REPLY_BYTES_PER_CYCLE``).
"""

from __future__ import annotations

import functools
import operator

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from ...sim.formats import CRC32_INIT
from ...sim.formats import HEADER_WORDS as IMAGE_HEADER_WORDS
from ..decoder.crc import crc32_step
from ..mem import WritePortSignature, addr_bits
from .protocol import LOAD_WORDS, SYNC_REPLY, SYNC_REQUEST, Cmd, Reply

__all__ = ["FrameReceiver", "ReplySender", "request_layout", "reply_layout",
           "EVENT_LATENCY", "REPLY_BYTES_PER_CYCLE", "JUNK_BITS", "MIN_LOAD_WORDS"]

# cycles from the cycle a frame's last byte is taken to its event on ``o``
EVENT_LATENCY = 2
# the sender's throughput with ``o`` always ready and ``words`` always valid
REPLY_BYTES_PER_CYCLE = 1
# width of the receiver's saturating junk counter
JUNK_BITS = 16
# the smallest LOAD count: the descriptor and an image header
MIN_LOAD_WORDS = LOAD_WORDS + IMAGE_HEADER_WORDS


def request_layout() -> data.StructLayout:
    """A request event: the header's fields and the receiver's verdict (``Reply.OK`` or why
    the request was refused)."""
    return data.StructLayout({"cmd": 8, "count": 16, "arg": 32, "code": Reply})


def reply_layout() -> data.StructLayout:
    """A reply header: R0's fields (``count`` payload words follow on ``words``) and R1."""
    return data.StructLayout({"cmd": 8, "code": 8, "count": 16, "detail": 32})


class _State(enum.Enum, shape=3):
    HUNT = 0     # looking for the sync byte
    RECV = 1     # inside a frame
    CHECK = 2    # the CRC word is in ``word``: the verdict is made
    EVENT = 3    # the event is on ``o``
    WAIT = 4     # the event was taken; waiting for ``release``
    FLUSH = 5    # after a refusal: dropping bytes until a pause of ``timeout_cycles``


class _Word(enum.Enum, shape=2):
    """The word of the frame that is being received."""
    H0 = 0
    H1 = 1
    PAYLOAD = 2
    CRC = 3


class FrameReceiver(wiring.Component):
    """Request frames in, one event per request out; payload words into a frame buffer.

    The receiver hunts for ``SYNC_REQUEST`` (other bytes count as ``junk``), then takes
    H0, H1, the payload (``count`` words; none for ``Cmd.READ``) and the CRC word, all
    little-endian. Payload word ``k`` is written at buffer index ``k`` when ``count <=
    buffer_words`` (otherwise it is only taken into the CRC). The CRC register steps by
    :func:`crc32_step` once a word. At the CRC word the verdict is, in this order:
    ``BAD_CRC``, ``BAD_CMD`` (unknown command or H0 bits 15..8 not 0), ``BAD_LENGTH``
    (WRITE: ``1 <= count <= buffer_words``; LOAD: ``MIN_LOAD_WORDS <= count <=
    buffer_words``; READ: ``count >= 1``; STATUS, START: ``count == 0``), else ``OK``.
    A ``TIMEOUT`` event carries the fields received so far (0 for those not received).
    After a ``release`` with ``flush`` high, bytes are dropped until ``timeout_cycles``
    cycles pass without one, then the receiver hunts again.

    Parameters
    ----------
    buffer_words : int
        Words of the frame buffer.
    timeout_cycles : int
        Cycles without a byte that end a frame (at least 2).

    Members
    -------
    i : In(stream.Signature(8))
        Request bytes.
    buf_wr : Out(WritePortSignature(addr_bits(buffer_words), 32))
        Payload words, at index 0, 1, ... of the frame buffer (``en``, ``addr`` and
        ``data`` are decoded from registers).
    o : Out(stream.Signature(request_layout()))
        One event per request; ``valid`` and ``payload`` come from registers.
    release : In(1)
        The executor is done with the event's request (accepted from the cycle the event
        is taken on); ``i.ready`` is low from the frame's end until then.
    flush : In(1)
        With ``release``: the request was refused; drop bytes until a pause.
    junk : Out(JUNK_BITS)
        Bytes discarded outside frames, while hunting for the sync byte or flushing
        (saturates).
    """

    def __init__(self, buffer_words: int, timeout_cycles: int):
        if buffer_words < 1:
            raise ValueError(f"buffer_words = {buffer_words}: must be >= 1")
        if timeout_cycles < 2:
            raise ValueError(f"timeout_cycles = {timeout_cycles}: must be >= 2")
        self.buffer_words, self.timeout_cycles = buffer_words, timeout_cycles
        super().__init__({
            "i": In(stream.Signature(8)),
            "buf_wr": Out(WritePortSignature(addr_bits(buffer_words), 32)),
            "o": Out(stream.Signature(request_layout())),
            "release": In(1),
            "flush": In(1),
            "junk": Out(JUNK_BITS),
        })

    def _header_checks(self, h0):
        """(bad_cmd, bad_length, fits) of the header word ``h0``: comparisons with
        constants."""
        cmd, count, B = h0[:8], h0[16:], self.buffer_words
        known = functools.reduce(operator.or_, [cmd == c for c in Cmd])
        fits = count <= B
        length_ok = Mux(cmd == Cmd.WRITE, (count != 0) & fits,
                    Mux(cmd == Cmd.LOAD, (count >= MIN_LOAD_WORDS) & fits,
                    Mux(cmd == Cmd.READ, count != 0, count == 0)))
        return ~known | (h0[8:16] != 0), ~length_ok, fits

    def elaborate(self, platform):
        m = Module()
        T = self.timeout_cycles
        state = Signal(_State)
        part = Signal(_Word)
        nbyte = Signal(2)                        # bytes of the present word taken
        shreg = Signal(24)                       # its first three bytes, byte 0 lowest
        word = Signal(32)                        # the last complete word ...
        word_valid = Signal()                    # ... in the cycle after its last byte
        idle = Signal(range(T))                  # cycles without a byte inside a frame
        crc = Signal(32, init=CRC32_INIT)
        cmd, count, arg = Signal(8), Signal(16), Signal(32)
        code = Signal(Reply)
        left = Signal(16)                        # payload words still to come
        widx = Signal(len(self.buf_wr.addr))
        bad_cmd, bad_length, fits = Signal(), Signal(), Signal()

        take = self.i.valid & self.i.ready
        byte = self.i.payload
        count_junk = self.junk.eq(self.junk + (self.junk != (1 << JUNK_BITS) - 1))
        after_release = [state.eq(Mux(self.flush, _State.FLUSH, _State.HUNT)), idle.eq(0)]
        m.d.comb += [
            self.i.ready.eq((state == _State.HUNT) | (state == _State.RECV)
                            | (state == _State.FLUSH)),
            self.o.payload.cmd.eq(cmd), self.o.payload.count.eq(count),
            self.o.payload.arg.eq(arg), self.o.payload.code.eq(code),
            self.buf_wr.addr.eq(widx), self.buf_wr.data.eq(word),
            self.buf_wr.en.eq(word_valid & (part == _Word.PAYLOAD) & fits),
        ]
        m.d.sync += word_valid.eq(0)

        with m.Switch(state):
            with m.Case(_State.HUNT):
                with m.If(take & (byte == SYNC_REQUEST)):
                    m.d.sync += [state.eq(_State.RECV), part.eq(_Word.H0), nbyte.eq(0),
                                 idle.eq(0), crc.eq(CRC32_INIT),
                                 cmd.eq(0), count.eq(0), arg.eq(0)]
                with m.Elif(take):
                    m.d.sync += count_junk
            with m.Case(_State.RECV):
                with m.If(take):
                    m.d.sync += [shreg.eq(Cat(shreg[8:], byte)), nbyte.eq(nbyte + 1),
                                 idle.eq(0)]
                    with m.If(nbyte == 3):
                        m.d.sync += [word.eq(Cat(shreg, byte)), word_valid.eq(1)]
                        with m.If(part == _Word.CRC):
                            m.d.sync += state.eq(_State.CHECK)
                with m.Elif(idle == T - 1):
                    m.d.sync += [state.eq(_State.EVENT), self.o.valid.eq(1),
                                 code.eq(Reply.TIMEOUT)]
                with m.Else():
                    m.d.sync += idle.eq(idle + 1)
            with m.Case(_State.CHECK):
                m.d.sync += [state.eq(_State.EVENT), self.o.valid.eq(1)]
                with m.If(word != (crc ^ CRC32_INIT)):
                    m.d.sync += code.eq(Reply.BAD_CRC)
                with m.Elif(bad_cmd):
                    m.d.sync += code.eq(Reply.BAD_CMD)
                with m.Elif(bad_length):
                    m.d.sync += code.eq(Reply.BAD_LENGTH)
                with m.Else():
                    m.d.sync += code.eq(Reply.OK)
            with m.Case(_State.EVENT):
                with m.If(self.o.ready):
                    m.d.sync += [self.o.valid.eq(0), state.eq(_State.WAIT)]
                    with m.If(self.release):
                        m.d.sync += after_release
            with m.Case(_State.WAIT):
                with m.If(self.release):
                    m.d.sync += after_release
            with m.Case(_State.FLUSH):
                with m.If(take):
                    m.d.sync += [idle.eq(0), count_junk]
                with m.Elif(idle == T - 1):
                    m.d.sync += state.eq(_State.HUNT)
                with m.Else():
                    m.d.sync += idle.eq(idle + 1)

        # the word registered last cycle: header fields, CRC step, payload count
        with m.If(word_valid & (part != _Word.CRC)):
            m.d.sync += crc.eq(crc32_step(crc, word))
        with m.If(word_valid):
            with m.Switch(part):
                with m.Case(_Word.H0):
                    checks = self._header_checks(word)
                    m.d.sync += [cmd.eq(word[:8]), count.eq(word[16:]), part.eq(_Word.H1),
                                 left.eq(Mux(word[:8] == Cmd.READ, 0, word[16:])),
                                 bad_cmd.eq(checks[0]), bad_length.eq(checks[1]),
                                 fits.eq(checks[2])]
                with m.Case(_Word.H1):
                    m.d.sync += [arg.eq(word), widx.eq(0),
                                 part.eq(Mux(left == 0, _Word.CRC, _Word.PAYLOAD))]
                with m.Case(_Word.PAYLOAD):
                    m.d.sync += [widx.eq(widx + 1), left.eq(left - 1),
                                 part.eq(Mux(left == 1, _Word.CRC, _Word.PAYLOAD))]
        return m


class _Next(enum.Enum, shape=3):
    """The word the sender loads next."""
    SYNC = 0
    R0 = 1
    R1 = 2
    PAYLOAD = 3
    CRC = 4


class ReplySender(wiring.Component):
    """Reply headers and payload words in, the bytes of ``protocol.reply_frame`` out.

    A 32-bit output register shifts a byte out each time ``o`` takes one; when it is empty
    or its last byte is being taken, the next word is loaded: the sync byte (with a header
    from ``hdr``), R0, R1, the ``count`` payload words (from ``words``), the CRC word. The
    CRC register steps by :func:`crc32_step` with R0, R1 and every payload word loaded
    (one XOR tree behind a multiplexer of the word to load).

    Members
    -------
    hdr : In(stream.Signature(reply_layout()))
        One header per reply.
    words : In(stream.Signature(32))
        Exactly ``count`` payload words after each header.
    o : Out(stream.Signature(8))
        Reply bytes; ``valid`` and ``payload`` are decoded from registers.
    done : Out(1)
        High in the cycle the reply's last byte is taken on ``o``.
    """

    def __init__(self):
        super().__init__({
            "hdr": In(stream.Signature(reply_layout())),
            "words": In(stream.Signature(32)),
            "o": Out(stream.Signature(8)),
            "done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        nxt = Signal(_Next)
        out = Signal(32)                          # bytes to send, the next one lowest
        nbytes = Signal(range(5))                 # bytes left in ``out``
        is_crc = Signal()                         # ``out`` holds the CRC word
        hdr = Signal(reply_layout())
        left = Signal(16)                         # payload words still to load
        crc = Signal(32, init=CRC32_INIT)

        take = self.o.valid & self.o.ready
        load = (nbytes == 0) | ((nbytes == 1) & self.o.ready)
        m.d.comb += [self.o.valid.eq(nbytes != 0), self.o.payload.eq(out[:8]),
                     self.done.eq(take & (nbytes == 1) & is_crc)]
        with m.If(take):
            m.d.sync += [out.eq(out[8:]), nbytes.eq(nbytes - 1)]

        word = Signal(32)                         # the next word after the sync byte
        with m.Switch(nxt):
            with m.Case(_Next.R0):
                m.d.comb += word.eq(Cat(hdr.cmd, hdr.code, hdr.count))
            with m.Case(_Next.R1):
                m.d.comb += word.eq(hdr.detail)
            with m.Case(_Next.PAYLOAD):
                m.d.comb += [word.eq(self.words.payload), self.words.ready.eq(load)]
            with m.Case(_Next.CRC):
                m.d.comb += word.eq(crc ^ CRC32_INIT)
        m.d.comb += self.hdr.ready.eq(load & (nxt == _Next.SYNC))

        with m.If(self.hdr.ready & self.hdr.valid):
            m.d.sync += [out.eq(SYNC_REPLY), nbytes.eq(1), nxt.eq(_Next.R0), is_crc.eq(0),
                         hdr.eq(self.hdr.payload), left.eq(self.hdr.payload.count),
                         crc.eq(CRC32_INIT)]
        with m.Elif(load & (nxt != _Next.SYNC) & ((nxt != _Next.PAYLOAD) | self.words.valid)):
            m.d.sync += [out.eq(word), nbytes.eq(4), is_crc.eq(nxt == _Next.CRC),
                         crc.eq(crc32_step(crc, word))]
            with m.Switch(nxt):
                with m.Case(_Next.R0):
                    m.d.sync += nxt.eq(_Next.R1)
                with m.Case(_Next.R1):
                    m.d.sync += nxt.eq(Mux(left == 0, _Next.CRC, _Next.PAYLOAD))
                with m.Case(_Next.PAYLOAD):
                    m.d.sync += [left.eq(left - 1),
                                 nxt.eq(Mux(left == 1, _Next.CRC, _Next.PAYLOAD))]
                with m.Case(_Next.CRC):
                    m.d.sync += nxt.eq(_Next.SYNC)
        return m
