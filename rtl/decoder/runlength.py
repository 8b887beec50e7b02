"""The run-length parser: one run-length word (two entries) per cycle."""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ...sim.config import Config
from ...sim.formats import Err
from .layouts import channel_width, partial_layout

__all__ = ["RunLengthParser"]


class RunLengthParser(wiring.Component):
    """One run-length word (``docs/formats.md``) against the chunk being assembled: its
    error code and how its entries split between this chunk and the next.

    A word holds up to two entries (value, run: the zeros before the value) in bits 0..28,
    the entry count in bits 29..30 and the vector's last word flag in bit 31. The parser
    keeps ``pos``, the channel after the last placed entry, and whether entry 0 of the
    presented word is already placed (the word is held); both update on ``commit``.

    Each entry is classed by the chunk it lands in, relative to ``base``: 0 = the current
    chunk, 1 = the next, 2 = further. Class-0 entries merge into ``acc`` (``merged``);
    class-1 entries start the next chunk (``fresh``). If any entry lies beyond the current
    chunk (``spill``), the current chunk is complete. A class-2 entry keeps the word
    (``hold``): the decoder commits it again in the next cycle, one chunk further on, until
    no entry is of class 2; an entry 0 placed in an earlier cycle is not placed again.
    ``merged`` and ``fresh`` are meaningful only when ``error`` is 0.

    Rules, in order of precedence: ``PAST_END`` (an entry at or past ``channels``),
    ``COUNT_MISMATCH`` (an entry count of 3, or nonzero bits past the counted entries).

    Parameters
    ----------
    cfg : Config
        ``join_width`` and ``run_bits`` are used.

    Members
    -------
    word : In(32)
        The presented word.
    base : In(channel_width(cfg))
        First channel of the current chunk.
    channels : In(channel_width(cfg))
        Channels per vector (C).
    acc : In(partial_layout(J))
        The current chunk assembled so far.
    start : In(1)
        A new image starts: entry 0 of the next word is not yet placed.
    commit : In(1)
        The decoder acts on ``word`` (it broke no rule): advance ``pos`` past the placed
        entries. With ``hold`` the word stays presented, else it is consumed.
    restart : In(1)
        A channel vector ends: the next run counts from channel 0. Overrides ``commit``.
    error : Out(4)
        ``Err`` code of the first content rule ``word`` breaks; 0 if none.
    end : Out(1)
        ``word`` is its vector's last.
    hold : Out(1)
        An entry is of class 2: the word stays presented.
    spill : Out(1)
        An entry is of class 1 or 2: the current chunk is complete.
    fills : Out(1)
        The channel after the word's last entry is ``base + J``: the word completes the
        current chunk.
    merged : Out(partial_layout(J))
        ``acc`` with the class-0 entries placed.
    fresh : Out(partial_layout(J))
        The next chunk with the class-1 entries placed.
    """

    def __init__(self, cfg: Config):
        self.cfg = cfg
        J, cw = cfg.join_width, channel_width(cfg)
        super().__init__({
            "word": In(32),
            "base": In(cw),
            "channels": In(cw),
            "acc": In(partial_layout(J)),
            "start": In(1),
            "commit": In(1),
            "restart": In(1),
            "error": Out(4),
            "end": Out(1),
            "hold": Out(1),
            "spill": Out(1),
            "fills": Out(1),
            "merged": Out(partial_layout(J)),
            "fresh": Out(partial_layout(J)),
        })

    def elaborate(self, platform):
        m = Module()
        J, R = self.cfg.join_width, self.cfg.run_bits
        EW = 8 + R                  # bits of an entry
        cw = channel_width(self.cfg)
        word, base, acc = self.word, self.base, self.acc

        pos = Signal(cw)            # the channel after the last entry
        e0done = Signal()           # entry 0 of the presented word is already merged

        n_ent = word[29:31]
        v0 = ((n_ent == 1) | (n_ent == 2)) & ~e0done
        v1 = n_ent == 2
        val0, run0 = word[0:8], word[8:EW]
        val1, run1 = word[EW:EW + 8], word[EW + 8:2 * EW]
        p0 = Signal(cw)
        p1 = Signal(cw)
        m.d.comb += [p0.eq(pos + run0), p1.eq(Mux(v0, p0 + 1, pos) + run1)]
        rel0 = Signal(cw)
        rel1 = Signal(cw)
        m.d.comb += [rel0.eq(p0 - base), rel1.eq(p1 - base)]
        cls0 = Mux(rel0 < J, 0, Mux(rel0 < 2 * J, 1, 2))
        cls1 = Mux(rel1 < J, 0, Mux(rel1 < 2 * J, 1, 2))
        far0 = v0 & (cls0 == 2)
        far1 = v1 & (cls1 == 2)
        end_pos = Mux(v1, p1 + 1, Mux(v0, p0 + 1, pos))

        payload = word[0:29]
        count_bad = Mux(n_ent == 0, payload != 0,
                        Mux(n_ent == 1, payload[EW:] != 0,
                            Mux(n_ent == 2, payload[2 * EW:] != 0 if 2 * EW < 29 else 0, 1)))
        past_bad = (v0 & (p0 >= self.channels)) | (v1 & (p1 >= self.channels))
        m.d.comb += [
            self.error.eq(Mux(past_bad, Err.PAST_END, Mux(count_bad, Err.COUNT_MISMATCH, 0))),
            self.end.eq(word[31]),
            self.hold.eq(far0 | far1),
            self.spill.eq((v0 & (cls0 != 0)) | (v1 & (cls1 != 0))),
            self.fills.eq(end_pos == base + J),
        ]

        # class-0 entries merge into the current chunk
        nz0 = v0 & (val0 != 0)
        nz1 = v1 & (val1 != 0)
        in0 = nz0 & (cls0 == 0)
        in1 = nz1 & (cls1 == 0)
        k1 = acc.count + in0
        m.d.comb += [
            self.merged.mask.eq(acc.mask | Mux(in0, (Const(1, J) << rel0[0:5])[0:J], 0)
                                | Mux(in1, (Const(1, J) << rel1[0:5])[0:J], 0)),
            self.merged.values.eq(acc.values),
            self.merged.count.eq(k1 + in1),
        ]
        for ln in range(J):
            with m.If(in0 & (acc.count == ln)):
                m.d.comb += self.merged.values[ln].eq(val0)
            with m.If(in1 & (k1 == ln)):
                m.d.comb += self.merged.values[ln].eq(val1)
        # class-1 entries start the next chunk
        nx0 = nz0 & (cls0 == 1)
        nx1 = nz1 & (cls1 == 1)
        m.d.comb += [
            self.fresh.mask.eq(Mux(nx0, (Const(1, J) << (rel0 - J)[0:5])[0:J], 0)
                               | Mux(nx1, (Const(1, J) << (rel1 - J)[0:5])[0:J], 0)),
            # every lane assigned: bits a design never drives come out of the Verilog
            # backend undriven (X under Icarus)
            self.fresh.values.eq(Cat(Mux(nx0, val0, Mux(nx1, val1, 0)),
                                     Mux(nx0 & nx1, val1, 0), Const(0, 8 * (J - 2)))),
            self.fresh.count.eq(nx0 + nx1),
        ]

        with m.If(self.start):
            m.d.sync += e0done.eq(0)
        with m.If(self.commit):
            with m.If(self.hold):
                # the word stays; entry 0 is done if it was placed
                with m.If(v0 & ~far0):
                    m.d.sync += [e0done.eq(1), pos.eq(p0 + 1)]
            with m.Else():
                m.d.sync += [e0done.eq(0), pos.eq(end_pos)]
        with m.If(self.restart):
            m.d.sync += pos.eq(0)
        return m
