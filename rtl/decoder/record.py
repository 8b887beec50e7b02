"""The record parser: bitmap and N:M record words, one word per cycle."""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ...sim.config import Config
from ...sim.formats import Err
from .layouts import channel_width, partial_layout

__all__ = ["RecordParser"]


class RecordParser(wiring.Component):
    """One word of a bitmap or N:M chunk record (``docs/formats.md``) against the chunk
    being assembled: its error code, whether it ends the record, and the chunk with its
    values placed.

    A record is the chunk's metadata (bitmap: a J-bit mask in ``mask_bytes`` bytes; N:M:
    ``nm_groups * N`` positions of ``nm_pos_bits`` bits in ``nm_meta_bytes`` bytes), then
    one byte per value, zero-padded to whole words. The parser keeps its place in the
    record (word index, the metadata word, value and word counts) and advances it on
    ``commit``; the outputs are combinational in ``word``, ``acc``, ``remaining`` and that
    place.

    Rules, in order of precedence: ``NM_ORDER`` (N:M positions of a group not strictly
    ascending), ``PAST_END`` (a mask bit or N:M position at or past ``remaining``),
    ``COUNT_MISMATCH`` (a zero value under a bitmap mask bit, a nonzero padding byte, or
    nonzero N:M metadata of a group past ``remaining`` or above the metadata bits).

    Parameters
    ----------
    cfg : Config
        ``join_width``, ``nm_n``, ``nm_m`` and the record sizes derived from them are used.

    Members
    -------
    word : In(32)
        The presented word.
    nm : In(1)
        The image is N:M (else bitmap).
    remaining : In(channel_width(cfg))
        Channels of the vector from the chunk's first channel on (J or more: a full chunk).
    acc : In(partial_layout(J))
        The chunk assembled from the record's earlier words.
    start : In(1)
        A new image starts: the next committed word is a record's first.
    commit : In(1)
        ``word`` is taken (it broke no rule): advance within the record.
    error : Out(4)
        ``Err`` code of the first content rule ``word`` breaks; 0 if none.
    end : Out(1)
        ``word`` is the record's last: the chunk is complete.
    merged : Out(partial_layout(J))
        ``acc`` with ``word``'s metadata and values placed; meaningful only when ``error``
        is 0.
    """

    def __init__(self, cfg: Config):
        self.cfg = cfg
        J = cfg.join_width
        super().__init__({
            "word": In(32),
            "nm": In(1),
            "remaining": In(channel_width(cfg)),
            "acc": In(partial_layout(J)),
            "start": In(1),
            "commit": In(1),
            "error": Out(4),
            "end": Out(1),
            "merged": Out(partial_layout(J)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        J, N, M = cfg.join_width, cfg.nm_n, cfg.nm_m
        PB = cfg.nm_pos_bits
        NM_SLOTS = cfg.nm_groups * N
        word, is_nm, rem, acc = self.word, self.nm, self.remaining, self.acc

        widx = Signal(4)            # word within the record
        meta_r = Signal(32)         # the record's first word
        nvals_r = Signal(range(J + 1))
        nwords_r = Signal(4)

        first = widx == 0
        validmask = Cat(*[rem > lane for lane in range(J)])
        meta_bytes = Mux(is_nm, cfg.nm_meta_bytes, cfg.mask_bytes)
        meta_src = Mux(first, word, meta_r)
        # bitmap metadata
        bm_mask = word[0:J]
        bm_count = sum(bm_mask[i] for i in range(J))
        # N:M metadata
        posf = [meta_src[s * PB:(s + 1) * PB] for s in range(NM_SLOTS)]
        grp_valid = [rem > g * M for g in range(cfg.nm_groups)]
        nm_count = N * sum(grp_valid[g] for g in range(cfg.nm_groups))
        nm_order_bad = Cat(*[grp_valid[g] & (posf[g * N + k] >= posf[g * N + k + 1])
                             for g in range(cfg.nm_groups) for k in range(N - 1)] or [Const(0)]
                           ).any()
        nm_meta_extra = Cat(*[(posf[s] != 0) & ~grp_valid[s // N] for s in range(NM_SLOTS)],
                            word[cfg.nm_meta_bits:8 * cfg.nm_meta_bytes] != 0
                            if cfg.nm_meta_bits < 8 * cfg.nm_meta_bytes else Const(0)).any()
        nvals = Signal(range(J + 1))
        nwords = Signal(4)
        with m.If(first):
            m.d.comb += nvals.eq(Mux(is_nm, nm_count, bm_count))
        with m.Else():
            m.d.comb += nvals.eq(nvals_r)
        m.d.comb += nwords.eq(Mux(first, (meta_bytes + nvals + 3) >> 2, nwords_r))
        chan_tab = Array([Const((s // N) * M, range(J)) + posf[s] for s in range(NM_SLOTS)])

        # per byte of the word: is it a value to place, in which lane, at which channel
        past_terms = [first & ~is_nm & (bm_mask & ~validmask).any()]
        count_terms = [first & is_nm & nm_meta_extra]
        nz, lane, chan = [], [], []
        run_k = acc.count
        for b in range(4):
            s = Signal(signed(8), name=f"slot{b}")
            m.d.comb += s.eq(widx * 4 + b - meta_bytes)
            byte = word[8 * b:8 * b + 8]
            is_slot = s >= 0
            in_rec = is_slot & (s < nvals)
            ch = Signal(range(2 * J), name=f"chan{b}")
            m.d.comb += ch.eq(chan_tab[s[0:6]] if NM_SLOTS else 0)
            nzb = Signal(name=f"nz{b}")
            m.d.comb += nzb.eq(in_rec & (byte != 0))
            count_terms += [is_slot & ~in_rec & (byte != 0),     # padding
                            ~is_nm & in_rec & (byte == 0)]       # a zero under a mask bit
            past_terms.append(is_nm & nzb & ~(rem > ch))
            ln = Signal(range(J + 4), name=f"lane{b}")
            m.d.comb += ln.eq(run_k)
            run_k = run_k + nzb
            nz.append(nzb)
            lane.append(ln)
            chan.append(ch)

        m.d.comb += [
            self.error.eq(Mux(first & is_nm & nm_order_bad, Err.NM_ORDER,
                              Mux(Cat(*past_terms).any(), Err.PAST_END,
                                  Mux(Cat(*count_terms).any(), Err.COUNT_MISMATCH, 0)))),
            self.end.eq(widx + 1 == nwords),
        ]

        # the chunk with this word placed
        nm_bits = 0
        m.d.comb += self.merged.values.eq(acc.values)
        for b in range(4):
            nm_bits = nm_bits | Mux(nz[b], (Const(1, J) << chan[b])[0:J], 0)
            with m.If(nz[b]):
                for ln in range(J):
                    with m.If(lane[b] == ln):
                        m.d.comb += self.merged.values[ln].eq(word[8 * b:8 * b + 8])
        m.d.comb += [
            self.merged.mask.eq(Mux(is_nm, acc.mask | nm_bits, Mux(first, bm_mask, acc.mask))),
            self.merged.count.eq(lane[3] + nz[3]),
        ]

        # place within the record
        with m.If(self.start):
            m.d.sync += widx.eq(0)
        with m.If(self.commit):
            with m.If(first):
                m.d.sync += [meta_r.eq(word), nvals_r.eq(nvals), nwords_r.eq(nwords)]
            m.d.sync += widx.eq(Mux(self.end, 0, widx + 1))
        return m
