"""The header parser: checks the 11 header words and keeps the fields the body needs."""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ...sim.config import Config
from ...sim.formats import CRC32_INIT, HEADER_WORDS, MAGIC, MAX_BODY_WORDS, Err, Fmt
from .crc import crc32_key, crc32_step
from .layouts import channel_width, position_width

__all__ = ["HeaderParser"]


class HeaderParser(wiring.Component):
    """Header words (``docs/formats.md``) in, header error code and captured fields out.

    ``error`` is combinational: the rule that ``word`` breaks as header word ``index``.
    A committed word advances the header's CRC register (:func:`~.crc.crc32_step`, one
    word a cycle) and, for the words that carry one, the captured field; the fields are
    registers and hold until the next commit of their word. The rules: word 0 is ``MAGIC``
    (a version 1 image, magic ``"DSP1"``, is ``BAD_MAGIC`` too); word 1 names a format
    whose parameters (J, R, N, M) are this config's and whose unused fields are 0 (else
    ``BAD_FORMAT``); ndim (word 2) is 1..4, channels (3) 1..``max_channels``, positions (7)
    1..``max_positions``, body words (8) 1..``MAX_BODY_WORDS``, and word 10 is the CRC-32
    of words 0..9 (else ``BAD_HEADER``). Word 10 is compared with the CRC register, so no
    logic lies between the register and the comparison.

    Word 9, the body's CRC-32, is kept as ``body_key`` (:func:`~.crc.crc32_key`): the
    body's final word ``w`` is right exactly when ``w == state ^ body_key``, ``state`` being
    the body's CRC register before ``w``. The decoder's check at the body's end is then a
    comparison of the word with registers, not with the output of an XOR tree.

    Parameters
    ----------
    cfg : Config
        ``join_width``, ``run_bits``, ``nm_n``, ``nm_m``, ``max_channels`` and
        ``max_positions`` are used.

    Members
    -------
    word : In(32)
        The presented word.
    index : In(4)
        Its index in the image, 0..10.
    commit : In(1)
        The word is taken: add it to the header sum and capture its field.
    error : Out(4)
        ``Err`` code of the rule ``word`` breaks at ``index``; 0 if none.
    format : Out(2)
        Format code (``Fmt``) from word 1.
    channels : Out(channel_width(cfg))
        Channels per position (C), word 3.
    positions : Out(position_width(cfg))
        Positions (channel vectors), word 7.
    total : Out(32)
        Words in the whole image: header words plus word 8 (the body's words).
    body_key : Out(32)
        :func:`~.crc.crc32_key` of word 9 (the body's CRC-32).
    """

    def __init__(self, cfg: Config):
        self.cfg = cfg
        super().__init__({
            "word": In(32),
            "index": In(4),
            "commit": In(1),
            "error": Out(4),
            "format": Out(2),
            "channels": Out(channel_width(cfg)),
            "positions": Out(position_width(cfg)),
            "total": Out(32),
            "body_key": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        J, R, N, M = cfg.join_width, cfg.run_bits, cfg.nm_n, cfg.nm_m
        word, index = self.word, self.index
        hcrc = Signal(32)           # CRC register over the committed header words

        f_code = word[0:8]
        f_j, f_p0, f_p1 = word[8:16], word[16:24], word[24:32]
        fmt_ok = (((f_code == Fmt.BITMAP) & (f_j == J) & (f_p0 == 0) & (f_p1 == 0))
                  | ((f_code == Fmt.RLE) & (f_j == 0) & (f_p0 == R) & (f_p1 == 0))
                  | ((f_code == Fmt.NM) & (f_j == J) & (f_p0 == N) & (f_p1 == M)))

        def in_range(hi):
            return Mux((word >= 1) & (word <= hi), 0, Err.BAD_HEADER)

        with m.Switch(index):
            with m.Case(0):
                m.d.comb += self.error.eq(Mux(word != MAGIC, Err.BAD_MAGIC, 0))
            with m.Case(1):
                m.d.comb += self.error.eq(Mux(fmt_ok, 0, Err.BAD_FORMAT))
            with m.Case(2):
                m.d.comb += self.error.eq(in_range(4))
            with m.Case(3):
                m.d.comb += self.error.eq(in_range(cfg.max_channels))
            with m.Case(7):
                m.d.comb += self.error.eq(in_range(cfg.max_positions))
            with m.Case(8):
                m.d.comb += self.error.eq(in_range(MAX_BODY_WORDS))
            with m.Case(10):
                m.d.comb += self.error.eq(Mux(word != hcrc ^ CRC32_INIT, Err.BAD_HEADER, 0))

        with m.If(self.commit):
            m.d.sync += hcrc.eq(crc32_step(Mux(index == 0, CRC32_INIT, hcrc), word))
            with m.Switch(index):
                with m.Case(1):
                    m.d.sync += self.format.eq(f_code)
                with m.Case(3):
                    m.d.sync += self.channels.eq(word)
                with m.Case(7):
                    m.d.sync += self.positions.eq(word)
                with m.Case(8):
                    m.d.sync += self.total.eq(word + HEADER_WORDS)
                with m.Case(9):
                    m.d.sync += self.body_key.eq(crc32_key(word))
        return m
