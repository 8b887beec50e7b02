"""The loader: the decoder's chunks into engine entries, as writes on the engine's bus.

A LOAD (``protocol.py``) decodes one image with the hardware decoder (``rtl/decoder/``);
its chunks (``join_width`` = J channels: a mask and the packed nonzeros) arrive here in
order, and every ``scan_width`` = S channels of a channel vector become one engine entry:

* ``ACT``: an activation lane chunk (``rtl/chunk.py``: the mask, channel i's value in
  lane i), written to ``ACT`` entry ``entry0 + n``;
* ``WGT``: a weight chunk of PE ``pe`` (``rtl/engine/layouts.py:wgt_entry_layout``: the mask
  and the address of its first nonzero), written to ``WGT`` entry ``entry0 + n`` of the
  PE, its nonzeros one ``WVAL`` write each from weight value ``value0`` on. As in
  ``sim/conv.py:make_job``, a base past the memory's end (an empty entry after the last
  value) is stored as its last address.

A vector's chunks fill an entry from channel 0 on; the entry ends after S / J chunks or at
the vector's last chunk (the rest of its lanes are zero). The lanes go through shift
registers, one a cycle (S cycles an entry), so no lane decode or J-to-1 select is built;
the entry's words then leave one a cycle, in word order: the host port stores an entry
when its last word is written (``rtl/engine/host.py``).

With ``commit`` low (the check pass) nothing is written: the loader counts entries and
values and raises ``too_big`` if the image would run past the target memory (an entry at
or past its depth, a value at or past ``wval_mem_words``). The executor commits only an
image whose check pass ended without a decoder error or ``too_big``.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ...sim.config import Config, ConfigError
from ..chunk import chunk_layout
from ..engine.regmap import REGION, REGION_SHIFT, chunk_word_bits, entry_words
from ..spe import wval_addr_bits
from .protocol import Target

__all__ = ["Loader", "write_layout"]


def write_layout() -> data.StructLayout:
    """A write on the engine's host bus."""
    return data.StructLayout({"addr": 32, "data": 32})


class Loader(wiring.Component):
    """Decoded chunks to engine entries.

    Parameters
    ----------
    cfg : Config
        ``join_width`` (J) must divide ``scan_width`` (S).

    Members
    -------
    i : In(stream.Signature(chunk_layout(J)))
        The decoder's chunks (``last``: a vector's final chunk; ``end``: the image's).
    go : In(1)
        Pulse: start an image (from any state) with ``target``, ``pe``, ``entry0``,
        ``value0`` and ``commit``.
    target : In(Target)
    pe : In(8)
    entry0, value0 : In(32)
    commit : In(1)
        Write (high) or only count and check (low).
    o : Out(stream.Signature(write_layout()))
        Bus writes (none while ``commit`` is low).
    finished : Out(1)
        The chunk flagged ``end`` has been turned into entries and written; held until the
        next ``go``.
    entries, values : Out(32)
        Entries and weight values of the image so far.
    too_big : Out(1)
        The image runs past its target memory (held until the next ``go``).
    """

    def __init__(self, cfg: Config):
        if cfg.scan_width % cfg.join_width:
            raise ConfigError("scan_width", cfg.scan_width,
                              f"the loader needs a multiple of join_width = {cfg.join_width}")
        self.cfg = cfg
        super().__init__({
            "i": In(stream.Signature(chunk_layout(cfg.join_width))),
            "go": In(1), "target": In(Target), "pe": In(8),
            "entry0": In(32), "value0": In(32), "commit": In(1),
            "o": Out(stream.Signature(write_layout())),
            "finished": Out(1), "entries": Out(32), "values": Out(32), "too_big": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        S, J = cfg.scan_width, cfg.join_width
        is_wgt = Signal()
        pe, commit = Signal(8), Signal()
        ent, val = Signal(32), Signal(32)          # next entry and value addresses
        ent_base = Signal(32)                      # value address of the entry's first lane
        c_mask, c_vals = Signal(J), Signal(8 * J)  # the chunk being unpacked (vals packed)
        c_last, c_end = Signal(), Signal()
        lane = Signal(range(S + 1))                # lanes of the entry done
        sub = Signal(range(J + 1))                 # lanes of the chunk done
        mask = Signal(S)                           # entry mask, shifted in from the top
        lanes = Signal(8 * S)                      # entry lanes (ACT), shifted in likewise
        NW = max(entry_words("ACT", cfg), entry_words("WGT", cfg))
        words = Signal(32 * NW)                    # the entry's words, shifted out
        nwords = Signal(range(NW + 1))
        word = Signal(range(NW))
        mem_depth = Mux(is_wgt, cfg.wgt_mem_chunks, cfg.act_mem_chunks)
        region = Mux(is_wgt, REGION["WGT"] + pe, REGION["ACT"])
        wb = chunk_word_bits(cfg)
        w = self.o.payload
        bit = c_mask[0]
        byte = Mux(bit, c_vals[0:8], 0)
        m.d.comb += [self.entries.eq(ent - self.entry0), self.values.eq(val - self.value0)]

        regs = (is_wgt, pe, commit, ent, val, ent_base, lane)
        with m.FSM():
            with m.State("IDLE"):
                self._restart(m, regs)
            with m.State("TAKE"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    p = self.i.payload
                    m.d.sync += [c_mask.eq(p.mask), c_vals.eq(p.values), c_last.eq(p.last),
                                 c_end.eq(p.end), sub.eq(0)]
                    m.next = "UNPACK"
                self._restart(m, regs)
            with m.State("UNPACK"):
                # one lane a cycle; a WGT nonzero waits for its WVAL write to be taken
                wval_write = is_wgt & bit & commit
                m.d.comb += [self.o.valid.eq(wval_write),
                             w.addr.eq(Cat(val[0:REGION_SHIFT],
                                           (REGION["WVAL"] + pe)[0:32 - REGION_SHIFT])),
                             w.data.eq(byte)]
                with m.If(~wval_write | self.o.ready):
                    self._shift_lane(m, mask, lanes, c_mask, c_vals, bit, byte, lane, sub)
                    with m.If(is_wgt & bit):
                        m.d.sync += val.eq(val + 1)
                        with m.If(val >= cfg.wval_mem_words):
                            m.d.sync += self.too_big.eq(1)
                    with m.If(sub == J - 1):
                        with m.If(lane == S - 1):
                            m.next = "WORDS"
                        with m.Elif(c_last):
                            m.next = "PAD"
                        with m.Else():
                            m.next = "TAKE"
                self._restart(m, regs)
            with m.State("PAD"):
                # zero lanes to the end of the entry
                self._shift_lane(m, mask, lanes, 0, 0, 0, 0, lane, sub)
                with m.If(lane == S - 1):
                    m.next = "WORDS"
                self._restart(m, regs)
            with m.State("WORDS"):
                base = Mux(ent_base >= cfg.wval_mem_words, cfg.wval_mem_words - 1, ent_base)
                wgt = Cat(mask, base[:wval_addr_bits(cfg)])
                m.d.sync += [words.eq(Mux(is_wgt, wgt, Cat(mask, lanes))), word.eq(0),
                             nwords.eq(Mux(is_wgt, entry_words("WGT", cfg),
                                           entry_words("ACT", cfg)))]
                with m.If(ent >= mem_depth):
                    m.d.sync += self.too_big.eq(1)
                m.next = "WRITE"
                self._restart(m, regs)
            with m.State("WRITE"):
                m.d.comb += [self.o.valid.eq(commit), w.data.eq(words[0:32]),
                             w.addr.eq(Cat(word, Const(0, wb - len(word)),
                                           ent[0:REGION_SHIFT - wb], region[0:8]))]
                with m.If(~commit | self.o.ready):
                    m.d.sync += [words.eq(words >> 32), word.eq(word + 1)]
                    with m.If(word == nwords - 1):
                        m.d.sync += [ent.eq(ent + 1), ent_base.eq(val), lane.eq(0)]
                        with m.If(c_end):
                            m.d.sync += self.finished.eq(1)
                            m.next = "IDLE"
                        with m.Else():
                            m.next = "TAKE"
                self._restart(m, regs)
        return m

    def _restart(self, m, regs) -> None:
        """``go`` (from any state): the image's parameters, counters cleared."""
        is_wgt, pe, commit, ent, val, ent_base, lane = regs
        with m.If(self.go):
            m.d.sync += [is_wgt.eq(self.target == Target.WGT), pe.eq(self.pe),
                         commit.eq(self.commit), ent.eq(self.entry0), val.eq(self.value0),
                         ent_base.eq(self.value0), lane.eq(0), self.finished.eq(0),
                         self.too_big.eq(0)]
            m.next = "TAKE"

    @staticmethod
    def _shift_lane(m, mask, lanes, c_mask, c_vals, bit, byte, lane, sub) -> None:
        """One lane into the entry (from the top of the shift registers), the chunk's
        mask shifted on, its packed values shifted on past a nonzero."""
        m.d.sync += [mask.eq(Cat(mask[1:], bit)), lanes.eq(Cat(lanes[8:], byte)),
                     lane.eq(lane + 1), sub.eq(sub + 1)]
        if not isinstance(c_mask, int):
            m.d.sync += [c_mask.eq(c_mask >> 1), c_vals.eq(Mux(bit, c_vals >> 8, c_vals))]
