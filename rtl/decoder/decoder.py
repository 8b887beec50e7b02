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
"""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ...sim.config import Config
from ...sim.formats import HEADER_WORDS, MAGIC, MAX_BODY_WORDS, Err, Fmt
from ..chunk import chunk_layout

__all__ = ["Decoder", "WORD_LAYOUT"]

WORD_LAYOUT = data.StructLayout({"data": 32, "last": 1})


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

    def elaborate(self, platform):  # noqa: C901 - one FSM, kept in one place on purpose
        m = Module()
        cfg = self.cfg
        J = cfg.join_width
        R = cfg.run_bits
        EW = 8 + R
        N, M = cfg.nm_n, cfg.nm_m
        PB = cfg.nm_pos_bits
        NM_SLOTS = cfg.nm_groups * N
        cw = (cfg.max_channels + 4 * J + 4 * (1 << R)).bit_length() + 1
        pw = (cfg.max_positions + 1).bit_length()

        word = self.i.payload.data
        wlast = self.i.payload.last

        # ---------------------------------------------------------------- state
        idx = Signal(32)            # word index within the image
        draining = Signal()
        hsum = Signal(32)           # running header sum
        fmt = Signal(2)
        c = Signal(cw)              # channels
        npos = Signal(pw)
        total = Signal(32)          # header words + body words
        check_want = Signal(32)     # body checksum from the header
        bck = Signal(32)            # running body checksum
        vpos = Signal(pw)           # vector (position) index
        base = Signal(cw)           # first channel of the current chunk
        acc_mask = Signal(J)
        acc_vals = Signal(data.ArrayLayout(signed(8), J))
        acc_k = Signal(range(J + 1))
        widx = Signal(4)            # word within a bitmap / N:M record
        meta_r = Signal(32)
        nvals_r = Signal(range(J + 1))
        nwords_r = Signal(4)
        pos = Signal(cw)            # RLE: next channel after the last entry
        e0done = Signal()           # RLE: entry 0 of the presented word already merged
        tail = Signal()             # RLE: emitting the chunks left after a vector's last word

        # ---------------------------------------------------------------- helpers
        out_free = ~self.o.valid | self.o.ready
        rem = Signal(cw)            # channels left from base on
        m.d.comb += rem.eq(c - base)
        last_chunk = rem <= J
        final_vec = vpos == npos - 1
        validmask = Cat(*[rem > l for l in range(J)])

        err = Signal(4)             # content/length error of the presented word (0 = none)
        emit = Signal()             # load the output register this cycle
        emit_mask = Signal(J)
        emit_vals = Signal(data.ArrayLayout(signed(8), J))
        emit_last = Signal()

        # next accumulator contents (current chunk merged with this cycle's values)
        cur_mask = Signal(J)
        cur_vals = Signal(data.ArrayLayout(signed(8), J))
        cur_k = Signal(range(J + 1))
        m.d.comb += [cur_mask.eq(acc_mask), cur_vals.eq(acc_vals), cur_k.eq(acc_k)]

        check_next = Cat(bck[31], bck[0:31]) ^ word     # rotl(bck, 1) ^ word

        def length_err(structural_end):
            at_total = idx == total - 1
            return Mux(structural_end,
                       Mux(wlast & at_total,
                           Mux(check_next == check_want, 0, Err.BAD_CHECKSUM), Err.LENGTH),
                       Mux(wlast | at_total, Err.TRUNCATED, 0))

        def image_done():
            m.d.sync += [self.done.eq(1), self.busy.eq(0), idx.eq(0), vpos.eq(0),
                         base.eq(0), pos.eq(0)]

        def next_vector():
            m.d.sync += [vpos.eq(vpos + 1), base.eq(0), pos.eq(0)]

        # ---------------------------------------------------------------- output register
        with m.If(emit):
            m.d.sync += [
                self.o.valid.eq(1),
                self.o.payload.mask.eq(emit_mask),
                self.o.payload.values.eq(emit_vals),
                self.o.payload.last.eq(emit_last),
                self.o.payload.end.eq(emit_last & final_vec),
            ]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        m.d.sync += self.done.eq(0)

        # ================================================================ header
        in_header = idx < HEADER_WORDS
        f_code = word[0:8]
        f_j, f_p0, f_p1 = word[8:16], word[16:24], word[24:32]
        fmt_ok = (((f_code == Fmt.BITMAP) & (f_j == J) & (f_p0 == 0) & (f_p1 == 0))
                  | ((f_code == Fmt.RLE) & (f_j == 0) & (f_p0 == R) & (f_p1 == 0))
                  | ((f_code == Fmt.NM) & (f_j == J) & (f_p0 == N) & (f_p1 == M)))
        hdr_err = Signal(4)
        with m.Switch(idx[0:4]):
            with m.Case(0):
                m.d.comb += hdr_err.eq(Mux(word != MAGIC, Err.BAD_MAGIC, 0))
            with m.Case(1):
                m.d.comb += hdr_err.eq(Mux(fmt_ok, 0, Err.BAD_FORMAT))
            with m.Case(2):
                m.d.comb += hdr_err.eq(Mux((word >= 1) & (word <= 4), 0, Err.BAD_HEADER))
            with m.Case(3):
                m.d.comb += hdr_err.eq(
                    Mux((word >= 1) & (word <= cfg.max_channels), 0, Err.BAD_HEADER))
            with m.Case(7):
                m.d.comb += hdr_err.eq(
                    Mux((word >= 1) & (word <= cfg.max_positions), 0, Err.BAD_HEADER))
            with m.Case(8):
                m.d.comb += hdr_err.eq(
                    Mux((word >= 1) & (word <= MAX_BODY_WORDS), 0, Err.BAD_HEADER))
            with m.Case(10):
                m.d.comb += hdr_err.eq(Mux((hsum + word)[0:32] != 0, Err.BAD_HEADER, 0))

        # ================================================================ bitmap / N:M records
        is_nm = fmt == Fmt.NM
        first = widx == 0
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

        rec_order = first & is_nm & nm_order_bad
        past_terms = [first & ~is_nm & (bm_mask & ~validmask).any()]
        count_terms = [first & is_nm & nm_meta_extra]
        nz = []                      # per byte: a value to append
        lane = []                    # per byte: its lane
        chan = []                    # per byte (N:M): its channel within the chunk
        run_k = acc_k
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
            pad_bad = is_slot & ~in_rec & (byte != 0)
            zero_bad = ~is_nm & in_rec & (byte == 0)
            past_bad = is_nm & nzb & ~(rem > ch)
            count_terms += [pad_bad, zero_bad]
            past_terms.append(past_bad)
            ln = Signal(range(J + 4), name=f"lane{b}")
            m.d.comb += ln.eq(run_k)
            run_k = run_k + nzb
            nz.append(nzb)
            lane.append(ln)
            chan.append(ch)
        rec_past = Cat(*past_terms).any()
        rec_count = Cat(*count_terms).any()
        rec_end = widx + 1 == nwords
        rec_struct_end = rec_end & last_chunk & final_vec
        rec_err = Mux(rec_order, Err.NM_ORDER,
                      Mux(rec_past, Err.PAST_END,
                          Mux(rec_count, Err.COUNT_MISMATCH, length_err(rec_struct_end))))

        # ================================================================ run-length
        n_ent = word[29:31]
        vlast = word[31]
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
        payload = word[0:29]
        rle_count_bad = Mux(n_ent == 0, payload != 0,
                            Mux(n_ent == 1, payload[EW:] != 0,
                                Mux(n_ent == 2, payload[2 * EW:] != 0 if 2 * EW < 29 else 0, 1)))
        rle_past_bad = (v0 & (p0 >= c)) | (v1 & (p1 >= c))
        rle_struct_end = vlast & final_vec
        rle_err = Mux(rle_past_bad, Err.PAST_END,
                      Mux(rle_count_bad, Err.COUNT_MISMATCH, length_err(rle_struct_end)))

        # ================================================================ error select
        with m.If(in_header):
            m.d.comb += err.eq(Mux(hdr_err != 0, hdr_err, Mux(wlast, Err.TRUNCATED, 0)))
        with m.Elif(fmt == Fmt.RLE):
            m.d.comb += err.eq(rle_err)
        with m.Else():
            m.d.comb += err.eq(rec_err)

        # ================================================================ control
        m.d.comb += self.i.ready.eq(0)
        with m.If(tail):
            # RLE: emit the chunks left in the vector after its last word
            with m.If(out_free):
                m.d.comb += [emit.eq(1), emit_mask.eq(acc_mask), emit_vals.eq(acc_vals),
                             emit_last.eq(last_chunk)]
                m.d.sync += [acc_mask.eq(0), acc_vals.eq(0), acc_k.eq(0)]
                with m.If(last_chunk):
                    m.d.sync += tail.eq(0)
                    next_vector()
                    with m.If(final_vec):
                        image_done()
                with m.Else():
                    m.d.sync += base.eq(base + J)
        with m.Elif(draining):
            m.d.comb += self.i.ready.eq(1)
            with m.If(self.i.valid & wlast):
                m.d.sync += draining.eq(0)
                image_done()
        with m.Else():
            hold = ~in_header & (fmt == Fmt.RLE) & (err == 0) & (
                (v0 & (cls0 == 2)) | (v1 & (cls1 == 2)))
            m.d.comb += self.i.ready.eq(out_free & ~hold)
            with m.If(self.i.valid & out_free):
                with m.If(idx == 0):
                    m.d.sync += [self.error.eq(0), self.busy.eq(1), widx.eq(0), e0done.eq(0),
                                 bck.eq(0),
                                 acc_mask.eq(0), acc_vals.eq(0), acc_k.eq(0)]
                with m.If(err != 0):
                    m.d.sync += self.error.eq(err)
                    with m.If(wlast):
                        image_done()
                    with m.Else():
                        m.d.sync += draining.eq(1)
                with m.Elif(in_header):
                    m.d.sync += [idx.eq(idx + 1), hsum.eq(Mux(idx == 0, word, hsum + word))]
                    with m.Switch(idx[0:4]):
                        with m.Case(1):
                            m.d.sync += fmt.eq(f_code)
                        with m.Case(3):
                            m.d.sync += c.eq(word)
                        with m.Case(7):
                            m.d.sync += npos.eq(word)
                        with m.Case(8):
                            m.d.sync += total.eq(word + HEADER_WORDS)
                        with m.Case(9):
                            m.d.sync += check_want.eq(word)
                with m.Else():
                    with m.If(~hold):
                        m.d.sync += bck.eq(check_next)
                    with m.If(fmt == Fmt.RLE):
                        self._rle_commit(m, locals())
                    with m.Else():
                        self._record_commit(m, locals())
        return m

    # ------------------------------------------------------------------------------------
    def _record_commit(self, m, v):
        """Commit one checked bitmap / N:M record word (``v``: elaborate()'s locals)."""
        J = self.cfg.join_width
        m.d.sync += v["idx"].eq(v["idx"] + 1)
        cur_mask, cur_vals, cur_k = v["cur_mask"], v["cur_vals"], v["cur_k"]
        acc_mask, acc_vals, acc_k = v["acc_mask"], v["acc_vals"], v["acc_k"]
        nz, lane, chan, word = v["nz"], v["lane"], v["chan"], v["word"]
        is_nm, first = v["is_nm"], v["first"]
        with m.If(first):
            m.d.sync += [v["meta_r"].eq(v["word"]), v["nvals_r"].eq(v["nvals"]),
                         v["nwords_r"].eq(v["nwords"])]
        nm_bits = 0
        for b in range(4):
            nm_bits = nm_bits | Mux(nz[b], (Const(1, J) << chan[b])[0:J], 0)
            with m.If(nz[b]):
                for ln in range(J):
                    with m.If(lane[b] == ln):
                        m.d.comb += cur_vals[ln].eq(word[8 * b:8 * b + 8])
        m.d.comb += cur_mask.eq(Mux(is_nm, acc_mask | nm_bits,
                                    Mux(first, v["bm_mask"], acc_mask)))
        m.d.comb += cur_k.eq(lane[3] + nz[3])
        with m.If(v["rec_end"]):
            m.d.sync += v["widx"].eq(0)
            self._emit_cur(m, v, v["last_chunk"])
        with m.Else():
            m.d.sync += [v["widx"].eq(v["widx"] + 1), acc_mask.eq(cur_mask),
                         acc_vals.eq(cur_vals), acc_k.eq(cur_k)]

    def _emit_cur(self, m, v, last):
        """Emit the merged chunk, clear the accumulator, advance to the next chunk."""
        J = self.cfg.join_width
        m.d.comb += [v["emit"].eq(1), v["emit_mask"].eq(v["cur_mask"]),
                     v["emit_vals"].eq(v["cur_vals"]), v["emit_last"].eq(last)]
        m.d.sync += [v["acc_mask"].eq(0), v["acc_vals"].eq(0), v["acc_k"].eq(0)]
        with m.If(last):
            v["next_vector"]()
            with m.If(v["final_vec"]):
                v["image_done"]()
        with m.Else():
            m.d.sync += v["base"].eq(v["base"] + J)

    def _rle_commit(self, m, v):
        """Commit one checked run-length word, or the part of it that fits (``v``: locals).

        Each entry is classed by the chunk it lands in: 0 = current, 1 = next, 2 = further.
        Entries of class 0 merge into the accumulator; if any entry lies beyond it, the
        merged chunk is emitted this cycle and class-1 entries start the next chunk, so a
        chunk boundary costs no cycle. Class-2 entries wait (the word is held) while the
        empty chunks before them are emitted, one per cycle.
        """
        J = self.cfg.join_width
        acc_mask, acc_vals, acc_k = v["acc_mask"], v["acc_vals"], v["acc_k"]
        cur_mask, cur_vals, cur_k = v["cur_mask"], v["cur_vals"], v["cur_k"]
        v0, v1, p0, p1 = v["v0"], v["v1"], v["p0"], v["p1"]
        rel0, rel1, cls0, cls1 = v["rel0"], v["rel1"], v["cls0"], v["cls1"]
        val0, val1 = v["val0"], v["val1"]
        pos, base, e0done, vlast = v["pos"], v["base"], v["e0done"], v["vlast"]
        nz0 = v0 & (val0 != 0)
        nz1 = v1 & (val1 != 0)
        in0 = nz0 & (cls0 == 0)
        in1 = nz1 & (cls1 == 0)
        # merge class-0 entries into the current chunk
        k1 = acc_k + in0
        m.d.comb += [
            cur_mask.eq(acc_mask | Mux(in0, (Const(1, J) << rel0[0:5])[0:J], 0)
                        | Mux(in1, (Const(1, J) << rel1[0:5])[0:J], 0)),
            cur_k.eq(k1 + in1),
        ]
        for ln in range(J):
            with m.If(in0 & (acc_k == ln)):
                m.d.comb += cur_vals[ln].eq(val0)
            with m.If(in1 & (k1 == ln)):
                m.d.comb += cur_vals[ln].eq(val1)
        # class-1 entries start the next chunk
        nx0 = nz0 & (cls0 == 1)
        nx1 = nz1 & (cls1 == 1)
        new_mask = Signal(J)
        new_vals = Signal(data.ArrayLayout(signed(8), J))
        m.d.comb += [
            new_mask.eq(Mux(nx0, (Const(1, J) << (rel0 - J)[0:5])[0:J], 0)
                        | Mux(nx1, (Const(1, J) << (rel1 - J)[0:5])[0:J], 0)),
            # assign every lane: bits a design never drives come out of the Verilog
            # backend undriven (X under Icarus)
            new_vals.eq(Cat(Mux(nx0, val0, Mux(nx1, val1, 0)), Mux(nx0 & nx1, val1, 0),
                            Const(0, 8 * (J - 2)))),
        ]
        new_k = nx0 + nx1
        fwd = (v0 & (cls0 != 0)) | (v1 & (cls1 != 0))
        far0 = v0 & (cls0 == 2)
        far1 = v1 & (cls1 == 2)
        end_pos = Mux(v1, p1 + 1, Mux(v0, p0 + 1, pos))
        with m.If(fwd):
            self._emit_cur(m, v, 0)
            with m.If(far0 | far1):
                # keep the word; entry 0 is done if it was merged
                with m.If(v0 & ~far0):
                    m.d.sync += [e0done.eq(1), pos.eq(p0 + 1)]
                m.d.sync += [acc_mask.eq(new_mask), acc_vals.eq(new_vals), acc_k.eq(new_k)]
            with m.Else():
                m.d.sync += [e0done.eq(0), pos.eq(end_pos), v["idx"].eq(v["idx"] + 1),
                             acc_mask.eq(new_mask), acc_vals.eq(new_vals), acc_k.eq(new_k)]
                with m.If(vlast):
                    m.d.sync += v["tail"].eq(1)
        with m.Else():
            m.d.sync += [e0done.eq(0), pos.eq(end_pos), v["idx"].eq(v["idx"] + 1)]
            with m.If(vlast):
                self._emit_cur(m, v, v["last_chunk"])
                with m.If(~v["last_chunk"]):
                    m.d.sync += v["tail"].eq(1)
            with m.Elif((end_pos == base + J) & ~v["last_chunk"]):
                self._emit_cur(m, v, 0)
            with m.Else():
                m.d.sync += [acc_mask.eq(cur_mask), acc_vals.eq(cur_vals), acc_k.eq(cur_k)]
