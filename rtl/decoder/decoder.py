"""The compressed-format decoder: image words in, bitmap chunks out, at line rate.

The decoder takes the 32-bit words of one memory image (``docs/formats.md``) as a stream,
``last`` set on the image's final word, and emits the engine's internal form: one
:func:`chunk_layout` payload per J-channel chunk. It accepts one word per cycle whenever its
output register is free (``o.ready`` high), so the input never waits on the decoder itself;
a chunk leaves as soon as its last word is checked.

The format is chosen at run time by the image's header; the format parameters (J, R, N, M)
are the elaboration-time :class:`~doublesparse.sim.config.Config` and an image asking for
others is refused with ``BAD_FORMAT``.

Errors: every word is checked in the cycle it is accepted. A word that breaks a rule emits
nothing and commits nothing; ``error`` takes the code (:class:`doublesparse.sim.formats.Err`)
at once, the decoder discards words up to the next ``last`` and then pulses ``done`` and
returns to idle, so the next image decodes normally. The chunk flagged ``end`` is emitted
only for an image that passed every check. The cycle-exact software twin of this block is
:class:`doublesparse.sim.formats.Parser`.

Structure: :class:`HeaderParser` checks the header words and keeps their fields,
:class:`RecordParser` and :class:`RunLengthParser` check a body word and merge its values
into the chunk being assembled. This component holds what they share: the word index, the
draining flag, the position within the image (vector, chunk base), the accumulator, the body
CRC, the length rules and the output register.

Body CRC: a register advanced by :func:`~.crc.crc32_step` (an XOR tree per bit) with every
body word taken, so the check costs no cycle. At the body's final word the CRC-32 of the
body must equal header word 9; the header stage keeps that word as ``body_key``
(:func:`~.crc.crc32_key`), so the test is ``word == crc ^ body_key``: a comparison with
registers, as short as the other length rules.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ...sim.config import Config
from ...sim.formats import CRC32_INIT, HEADER_WORDS, Err, Fmt
from ..chunk import chunk_layout
from .crc import crc32_step
from .header import HeaderParser
from .layouts import WORD_LAYOUT, channel_width, partial_layout, position_width
from .record import RecordParser
from .runlength import RunLengthParser

__all__ = ["Decoder", "WORD_LAYOUT"]


class Decoder(wiring.Component):
    """Compressed image to bitmap chunks.

    Parameters
    ----------
    cfg : Config
        ``join_width``, ``run_bits``, ``nm_n``, ``nm_m``, ``max_channels`` and
        ``max_positions`` are used.

    Members
    -------
    i : In(stream.Signature(WORD_LAYOUT))
        Image words; ``last`` on the final word of each image.
    o : Out(stream.Signature(chunk_layout(J)))
        Decoded chunks.
    busy : Out(1)
        An image is in progress (from its first word until ``done``).
    done : Out(1)
        One-cycle pulse when an image finishes, successfully or after an error.
    error : Out(4)
        Error code of the current / most recent image (0 = OK); set in the cycle the bad
        word is accepted, cleared when the next image's first word is accepted.
    """

    def __init__(self, cfg: Config | None = None):
        self.cfg = cfg = cfg or Config()
        super().__init__({
            "i": In(stream.Signature(WORD_LAYOUT)),
            "o": Out(stream.Signature(chunk_layout(cfg.join_width))),
            "busy": Out(1),
            "done": Out(1),
            "error": Out(4),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        J = cfg.join_width
        m.submodules.header = header = HeaderParser(cfg)
        m.submodules.record = record = RecordParser(cfg)
        m.submodules.rle = rle = RunLengthParser(cfg)

        word = self.i.payload.data
        wlast = self.i.payload.last

        # ---------------------------------------------------------------- state
        idx = Signal(32)            # word index within the image
        draining = Signal()         # discarding words up to the next last
        crc = Signal(32)            # CRC register over the body words taken
        vpos = Signal(position_width(cfg))      # vector (position) index
        base = Signal(channel_width(cfg))       # first channel of the current chunk
        acc = Signal(partial_layout(J))         # the chunk being assembled
        tail = Signal()             # emitting the chunks left after a vector's last word

        rem = Signal(channel_width(cfg))        # channels left from base on
        m.d.comb += rem.eq(header.channels - base)
        last_chunk = rem <= J
        final_vec = vpos == header.positions - 1
        in_header = idx < HEADER_WORDS
        is_rle = header.format == Fmt.RLE
        out_free = ~self.o.valid | self.o.ready

        m.d.comb += [
            header.word.eq(word), header.index.eq(idx[0:4]),
            record.word.eq(word), record.nm.eq(header.format == Fmt.NM),
            record.remaining.eq(rem), record.acc.eq(acc),
            rle.word.eq(word), rle.base.eq(base), rle.channels.eq(header.channels),
            rle.acc.eq(acc),
        ]

        # ---------------------------------------------------------------- error of the word
        # content rules first, then the length rules: the body must end exactly at the
        # image's last word and at the header's word count, with the body's CRC matching
        crc_next = crc32_step(crc, word)
        crc_ok = word == crc ^ header.body_key     # crc32(body) == header word 9
        body_end = Mux(is_rle, rle.end, record.end & last_chunk) & final_vec
        at_total = idx == header.total - 1
        length_err = Mux(body_end,
                         Mux(wlast & at_total, Mux(crc_ok, 0, Err.BAD_CHECKSUM), Err.LENGTH),
                         Mux(wlast | at_total, Err.TRUNCATED, 0))
        content_err = Mux(is_rle, rle.error, record.error)
        err = Signal(4)
        with m.If(in_header):
            m.d.comb += err.eq(Mux(header.error != 0, header.error,
                                   Mux(wlast, Err.TRUNCATED, 0)))
        with m.Else():
            m.d.comb += err.eq(Mux(content_err != 0, content_err, length_err))

        # ---------------------------------------------------------------- control
        emit = Signal()             # a chunk is complete: load the output register
        emit_chunk = Signal(partial_layout(J))
        emit_last = Signal()        # ... and it is its vector's last
        acc_next = Signal(partial_layout(J))
        finish = Signal()           # the image ends this cycle
        m.d.comb += acc_next.eq(acc)
        m.d.sync += acc.eq(acc_next)

        def complete(chunk, last):
            m.d.comb += [emit.eq(1), emit_chunk.eq(chunk), emit_last.eq(last),
                         acc_next.eq(0)]

        with m.If(tail):
            # RLE: emit the chunks left in the vector after its last word
            with m.If(out_free):
                complete(acc, last_chunk)
                with m.If(last_chunk):
                    m.d.sync += tail.eq(0)
        with m.Elif(draining):
            m.d.comb += self.i.ready.eq(1)
            with m.If(self.i.valid & wlast):
                m.d.sync += draining.eq(0)
                m.d.comb += finish.eq(1)
        with m.Else():
            hold = ~in_header & is_rle & (err == 0) & rle.hold
            m.d.comb += self.i.ready.eq(out_free & ~hold)
            with m.If(self.i.valid & out_free):
                with m.If(idx == 0):
                    m.d.sync += [self.error.eq(0), self.busy.eq(1), crc.eq(CRC32_INIT)]
                    m.d.comb += [acc_next.eq(0), record.start.eq(1), rle.start.eq(1)]
                with m.If(err != 0):
                    m.d.sync += self.error.eq(err)
                    with m.If(wlast):
                        m.d.comb += finish.eq(1)
                    with m.Else():
                        m.d.sync += draining.eq(1)
                with m.Elif(in_header):
                    m.d.sync += idx.eq(idx + 1)
                    m.d.comb += header.commit.eq(1)
                with m.Elif(is_rle):
                    m.d.comb += rle.commit.eq(1)
                    with m.If(~hold):
                        m.d.sync += [idx.eq(idx + 1), crc.eq(crc_next)]
                    with m.If(rle.spill):
                        # the current chunk is complete; class-1 entries start the next
                        complete(rle.merged, 0)
                        m.d.comb += acc_next.eq(rle.fresh)
                        with m.If(~hold & rle.end):
                            m.d.sync += tail.eq(1)
                    with m.Elif(rle.end):
                        complete(rle.merged, last_chunk)
                        with m.If(~last_chunk):
                            m.d.sync += tail.eq(1)
                    with m.Elif(rle.fills & ~last_chunk):
                        complete(rle.merged, 0)
                    with m.Else():
                        m.d.comb += acc_next.eq(rle.merged)
                with m.Else():
                    m.d.comb += record.commit.eq(1)
                    m.d.sync += [idx.eq(idx + 1), crc.eq(crc_next)]
                    with m.If(record.end):
                        complete(record.merged, last_chunk)
                    with m.Else():
                        m.d.comb += acc_next.eq(record.merged)

        # ---------------------------------------------------------------- chunk out
        m.d.sync += self.done.eq(0)
        with m.If(emit):
            m.d.sync += [
                self.o.valid.eq(1),
                self.o.payload.mask.eq(emit_chunk.mask),
                self.o.payload.values.eq(emit_chunk.values),
                self.o.payload.last.eq(emit_last),
                self.o.payload.end.eq(emit_last & final_vec),
            ]
            with m.If(emit_last):
                m.d.sync += [vpos.eq(vpos + 1), base.eq(0)]
                with m.If(final_vec):
                    m.d.comb += finish.eq(1)
            with m.Else():
                m.d.sync += base.eq(base + J)
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        m.d.comb += rle.restart.eq(finish | (emit & emit_last))
        with m.If(finish):
            m.d.sync += [self.done.eq(1), self.busy.eq(0), idx.eq(0), vpos.eq(0), base.eq(0)]
        return m
