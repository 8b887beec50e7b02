"""The double-sparse processing element: inner join of weight and activation chunks.

Dataflow (one chunk pair enters per cycle, up to ``M`` effectual products leave per cycle)::

    w chunks ─┐  join + unpack    pair queue (D)     window select       multiply  accumulate
              ├─► (AND check,  ──► [e0][e1]..[eD-1] ─► first M set bits ─► M x ─► Σ + acc ─► o
    a chunks ─┘   dense lanes)                       of e0.rest ++ e1      int8²    int32

* **Join**: a weight chunk and an activation chunk covering the same J channels are taken
  together; their packed values are expanded to dense lanes (lane i holds the value of
  channel i, found by a prefix count of the mask) and the pair is queued.
* **Window select**: the match mask of the head pair (bits not yet used) is concatenated with
  the match mask of the next pair (look-ahead of one chunk, never across the end of an
  accumulation) and the first ``M`` set bits are taken with a prefix count. Pairs with no
  match cost nothing beyond the scan; a head with fewer than ``M`` matches is topped up
  from the next pair, so multipliers stay busy across chunk boundaries. Up to two pairs
  leave the queue per cycle, which lets the PE catch up after a burst of dense chunks.
* **Multiply / accumulate**: ``M`` int8 x int8 products, summed into an ``acc_width``
  accumulator. The config guarantees ``acc_width`` holds ``max_reduction`` products, so a
  supported accumulation cannot overflow; a longer one is flagged (``err``, ``TOO_LONG``)
  and its value is the two's-complement sum wrapped to ``acc_width`` bits, as in the model.

The scan costs one cycle per chunk pair at most (the queue is filled at one pair a cycle),
so a dot product of ``L`` channels takes at least ``ceil(L / J)`` cycles; with
``J >= 8 M`` (checked by :class:`~doublesparse.sim.config.Config`) that never exceeds
``pairs / M`` once matched pairs make up 1 in 8 channels.
"""

from __future__ import annotations

import functools
import operator

from amaranth import Array, Cat, Module, Mux, Signal, signed
from amaranth.hdl import Assert
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ...sim.config import Config
from ..chunk import chunk_layout

__all__ = ["PE", "PEError", "result_layout", "PE_STAGES"]

# registers a chunk pair passes before the pair queue: input, counts (two steps), unpack,
# compress
PE_STAGES = 5


class PEError:
    """Codes of the PE's ``error`` output (sticky until ``clear``)."""

    OK = 0
    LAST_MISMATCH = 1   # weight and activation accumulations end on different chunks
    TOO_LONG = 2        # accumulation longer than config.max_reduction channels

    MEANING = {
        0: "no error",
        1: "weight and activation streams marked 'last' on different chunks; the chunks of "
           "the longer side up to its 'last' were dropped and the result is flagged",
        2: "accumulation longer than max_reduction; its result is flagged",
    }


def result_layout(acc_width: int) -> data.StructLayout:
    return data.StructLayout({"value": signed(acc_width), "err": 1})


def _entry_layout(J: int, M: int) -> data.StructLayout:
    """A queued chunk pair: how many channels match (both nonzero), ``cle[v]`` = cnt <= v
    for v <= M (the window's control loop uses these flags, not a comparator), and the
    operands of those channels, packed in channel order (``pw[r]``, ``pa[r]``: the r-th
    match)."""
    return data.StructLayout({
        "cnt": range(J + 1), "cle": M + 1,
        "pw": data.ArrayLayout(signed(8), J), "pa": data.ArrayLayout(signed(8), J),
        "last": 1, "err": 1,
    })


def _or(values):
    return functools.reduce(operator.or_, values)


class PE(wiring.Component):
    """Zero-skipping PE.

    Parameters
    ----------
    cfg : Config
        ``join_width`` (J), ``multipliers`` (M), ``queue_depth`` (pair queue, at least 2),
        ``acc_width``, ``max_reduction``.

    Members
    -------
    w, a : In(stream.Signature(chunk_layout(J)))
        Weight and activation chunks (``end`` is ignored); ``last`` ends an accumulation.
    o : Out(stream.Signature(result_layout(acc_width)))
        One result per accumulation; ``err`` marks a flagged accumulation.
    error : Out(2)
        Sticky code of the last error (:class:`PEError`); cleared by ``clear``.
    busy_cycles, macs, idle_slots, empty_pairs : Out(32)
        Counters: cycles with work in the PE; effectual multiplies; multiplier slots left
        idle in cycles where the queue held a pair; chunk pairs with no matching channel.
    clear : In(1)
        Zero the counters and ``error``.

    ``checks=True`` adds simulation assertions that each register kept for timing equals
    the expression it stands for (used by the Amaranth-simulator tests; not in Verilog).
    """

    def __init__(self, cfg: Config | None = None, *, checks: bool = False):
        self.cfg = cfg = cfg or Config()
        self.checks = checks
        super().__init__({
            "w": In(stream.Signature(chunk_layout(cfg.join_width))),
            "a": In(stream.Signature(chunk_layout(cfg.join_width))),
            "o": Out(stream.Signature(result_layout(cfg.acc_width))),
            "error": Out(2),
            "busy_cycles": Out(32),
            "macs": Out(32),
            "idle_slots": Out(32),
            "empty_pairs": Out(32),
            "clear": In(1),
        })

    @property
    def depth(self) -> int:
        return max(2, self.cfg.queue_depth)

    def elaborate(self, platform):  # noqa: C901 - one pipeline, kept together
        m = Module()
        cfg = self.cfg
        J, M, D = cfg.join_width, cfg.multipliers, self.depth
        AW = cfg.acc_width
        EL = _entry_layout(J, M)

        def prefix_levels(cur, width, name, lvl, upto=None):
            """Levels ``lvl`` .. ``upto - 1`` of a Sklansky parallel prefix count over
            ``cur`` (log2(width) adder levels in all instead of a ripple of width adders);
            returns the partial sums after them."""
            cur = list(cur)
            while (1 << lvl) < width and (upto is None or lvl < upto):
                nxt = []
                for i in range(width):
                    if i >> lvl & 1:
                        src = (i >> lvl << lvl) - 1
                        v = Signal(range(width + 1), name=f"{name}_l{lvl}_{i}")
                        m.d.comb += v.eq(cur[i] + cur[src])
                        nxt.append(v)
                    else:
                        nxt.append(cur[i])
                cur = nxt
                lvl += 1
            return cur

        def prefix_finish(cur, width, name):
            """Signals pc[i] = number of set bits below i from the complete prefix."""
            pc = [Signal(range(width + 1), name=f"{name}{i}") for i in range(width + 1)]
            m.d.comb += pc[0].eq(0)
            for i in range(width):
                m.d.comb += pc[i + 1].eq(cur[i])   # inclusive prefix of bits[0..i]
            return pc

        def unpack(mask, vals, pc, name):
            lanes = Signal(data.ArrayLayout(signed(8), J), name=name)
            for i in range(J):
                src = Array([vals[j] for j in range(i + 1)])
                m.d.comb += lanes[i].eq(Mux(mask[i], src[pc[i][:max(1, i.bit_length())]], 0))
            return lanes

        # ------------------------------------------------------------ input register
        # Stage IN registers both chunks as they arrive (nothing but the handshake sits
        # between the PE's inputs and a flip-flop: the weight chunk comes straight out of a
        # block RAM in the engine). Stage PC counts (prefix sums of both masks and of the
        # match mask), UP unpacks to dense lanes, CP packs the matching pairs; then the pair
        # is queued.
        in_v = Signal()
        in_w = Signal(chunk_layout(J))
        in_a = Signal(chunk_layout(J))
        in_last = Signal()
        in_err = Signal()
        pc_v = Signal()
        up_v = Signal()
        cp_v = Signal()
        cp = Signal(EL)
        # The stages never stall: a pair is taken only while the queue, the window and the
        # stages hold fewer than D + 5 pairs (occ, a register), and the queue has room for
        # D + 5. This takes pairs exactly when a queue of D behind five stalling registers
        # would, with no ready chain and no enable fanning out to the stage registers.
        QC = D + PE_STAGES
        count = Signal(range(QC + 1))     # pairs in the queue (window included)
        occ = Signal(range(QC + 1))       # ... plus the pairs in the five stages
        # in_free is occ < QC, kept in a register of its own (Fmax: `ready` leaves the PE
        # one LUT after flip-flops; it reaches the engine's queue and weight memory read
        # enable across the chip)
        in_free = Signal(init=1)

        drop_w = Signal()                 # resync: discard weight chunks up to 'last'
        drop_a = Signal()
        nchunks = Signal(range(cfg.max_chunks + 2))
        too_long = Signal()
        both = self.w.valid & self.a.valid
        take = Signal()
        mismatch = self.w.payload.last != self.a.payload.last
        long_now = too_long | (nchunks >= cfg.max_chunks)
        with m.If(drop_w):
            m.d.comb += self.w.ready.eq(1)
            with m.If(self.w.valid & self.w.payload.last):
                m.d.sync += drop_w.eq(0)
        with m.Elif(drop_a):
            m.d.comb += self.a.ready.eq(1)
            with m.If(self.a.valid & self.a.payload.last):
                m.d.sync += drop_a.eq(0)
        with m.Else():
            m.d.comb += [take.eq(both & in_free), self.w.ready.eq(take),
                         self.a.ready.eq(take)]
            with m.If(take):
                with m.If(self.w.payload.last | self.a.payload.last):
                    m.d.sync += [nchunks.eq(0), too_long.eq(0)]
                with m.Else():
                    m.d.sync += [nchunks.eq(nchunks + 1), too_long.eq(long_now)]
                with m.If(mismatch):
                    m.d.sync += [drop_w.eq(self.a.payload.last), drop_a.eq(self.w.payload.last),
                                 self.error.eq(PEError.LAST_MISMATCH)]
                with m.Elif(long_now):
                    m.d.sync += self.error.eq(PEError.TOO_LONG)
        m.d.sync += [in_v.eq(take), in_w.eq(self.w.payload), in_a.eq(self.a.payload),
                     in_last.eq(self.w.payload.last | self.a.payload.last),
                     in_err.eq(mismatch | long_now)]

        # ------------------------------------------------------------ counts (stage PC)
        pc_w = Signal(chunk_layout(J))
        pc_a = Signal(chunk_layout(J))
        pc_last, pc_err = Signal(), Signal()
        pc_match = Signal(J)
        pcw = [Signal(range(J + 1), name=f"pcw{i}") for i in range(J)]
        pca = [Signal(range(J + 1), name=f"pca{i}") for i in range(J)]
        pc_rank = [Signal(range(J + 1), name=f"pc_rank{i}") for i in range(J + 1)]
        # the prefix counts in two registered steps (Fmax): stage P1 the first two adder
        # levels (counts within groups of four channels), stage PC the rest
        match_in = in_w.mask & in_a.mask
        p1_v, p1_last, p1_err = Signal(), Signal(), Signal()
        p1_w = Signal(chunk_layout(J))
        p1_a = Signal(chunk_layout(J))
        p1_match = Signal(J)
        m.d.sync += [p1_v.eq(in_v), p1_w.eq(in_w), p1_a.eq(in_a), p1_last.eq(in_last),
                     p1_err.eq(in_err), p1_match.eq(match_in)]

        def two_step(bits, name):
            part = prefix_levels([bits[i] for i in range(J)], J, name, 0, 2)
            regs = []
            for i, v in enumerate(part):
                r = Signal(range(J + 1), name=f"{name}_p1_{i}")
                m.d.sync += r.eq(v)
                regs.append(r)
            return prefix_finish(prefix_levels(regs, J, name, 2), J, name)

        cw = two_step(in_w.mask, "cw")
        ca = two_step(in_a.mask, "ca")
        cr = two_step(match_in, "cr")
        m.d.sync += [pc_v.eq(p1_v), pc_w.eq(p1_w), pc_a.eq(p1_a), pc_last.eq(p1_last),
                     pc_err.eq(p1_err), pc_match.eq(p1_match)]
        m.d.sync += [pcw[i].eq(cw[i]) for i in range(J)]
        m.d.sync += [pca[i].eq(ca[i]) for i in range(J)]
        m.d.sync += [pc_rank[i].eq(cr[i]) for i in range(J + 1)]

        # ------------------------------------------------------------ unpack (stage UP)
        # Packed values to dense lanes: lane i takes value number popcount(mask[0:i]).
        wd = unpack(pc_w.mask, pc_w.values, pcw, "w_dense")
        ad = unpack(pc_a.mask, pc_a.values, pca, "a_dense")
        up_wd = Signal(data.ArrayLayout(signed(8), J))
        up_ad = Signal(data.ArrayLayout(signed(8), J))
        up_match = Signal(J)
        up_rank = [Signal(range(J + 1), name=f"up_rank{i}") for i in range(J + 1)]
        up_last = Signal()
        up_err = Signal()
        m.d.sync += [up_v.eq(pc_v), up_wd.eq(wd), up_ad.eq(ad), up_match.eq(pc_match),
                     up_last.eq(pc_last), up_err.eq(pc_err)]
        m.d.sync += [up_rank[i].eq(pc_rank[i]) for i in range(J + 1)]

        # ------------------------------------------------------------ compress (stage CP)
        # The operands of the matching channels, packed: pw[r] = the lane whose rank is r.
        # The select stage then takes the next M pairs by index, without a search.
        m.d.sync += [cp.cle[v].eq(up_rank[J] <= v) for v in range(M + 1)]
        m.d.sync += [cp_v.eq(up_v), cp.cnt.eq(up_rank[J]), cp.last.eq(up_last),
                     cp.err.eq(up_err)]
        for r in range(J):
            hit = [up_match[i] & (up_rank[i] == r) for i in range(r, J)]
            m.d.sync += [
                cp.pw[r].eq(_or([Mux(h, up_wd[i].as_unsigned(), 0)
                                 for h, i in zip(hit, range(r, J), strict=True)])),
                cp.pa[r].eq(_or([Mux(h, up_ad[i].as_unsigned(), 0)
                                 for h, i in zip(hit, range(r, J), strict=True)])),
            ]

        # ------------------------------------------------------------ pair queue + window
        # The queue is a circular buffer in distributed RAM, written at the tail. The
        # window's operands (pairs 0 and 1) are read straight out of it at the head
        # pointers h0, h1 (registers) by the select stage; nothing wide moves when pairs
        # leave. The control loop (how many pairs leave this cycle, what is left of pair 0)
        # runs on narrow copies of each pair's count, flags and 'cnt <= v' bits: the
        # registers C0, C1 hold those of pairs 0 and 1 and are refilled from a narrow copy
        # of the queue read at h2, h3 (or straight from stage CP), and every next-state
        # value is computed from flip-flops in parallel and only chosen by the pop count.
        CL = data.StructLayout({"cnt": range(J + 1), "cle": M + 1, "last": 1, "err": 1})
        m.submodules.queue = qmem = Memory(shape=EL.size, depth=QC, init=[])
        m.submodules.queue_ctl = cmem = Memory(shape=CL.size, depth=QC, init=[])
        q_wr = qmem.write_port()
        c_wr = cmem.write_port()
        q_rd0 = qmem.read_port(domain="comb")
        q_rd1 = qmem.read_port(domain="comb")
        c_rd2 = cmem.read_port(domain="comb")
        c_rd3 = cmem.read_port(domain="comb")
        tail = Signal(range(QC))
        hp = [Signal(range(QC), init=i, name=f"h{i}") for i in range(4)]   # pairs 0..3

        def wrap(x):
            return Mux(x >= QC, x - QC, x)[0:len(tail)]

        cp_c = Signal(CL)
        m.d.comb += [cp_c.cnt.eq(cp.cnt), cp_c.cle.eq(cp.cle), cp_c.last.eq(cp.last),
                     cp_c.err.eq(cp.err)]
        c0 = Signal(CL)                   # control fields of pair 0, pair 1
        c1 = Signal(CL)
        w0 = data.View(EL, q_rd0.data)    # operands of pair 0, pair 1
        w1 = data.View(EL, q_rd1.data)
        u0 = Signal(range(J + 1))         # pair 0: pairs already multiplied
        u0k = [Signal(range(J + M), name=f"u0k{k}") for k in range(M)]   # u0 + k
        r0 = Signal(range(J + 1))         # ... and still to multiply
        r0_le = Signal(M + 1)             # r0_le[v]: r0 <= v
        push = cp_v
        m.d.comb += [q_wr.addr.eq(tail), q_wr.data.eq(cp), q_wr.en.eq(push),
                     c_wr.addr.eq(tail), c_wr.data.eq(cp_c), c_wr.en.eq(push),
                     q_rd0.addr.eq(hp[0]), q_rd1.addr.eq(hp[1]),
                     c_rd2.addr.eq(hp[2]), c_rd3.addr.eq(hp[3])]
        r2, r3 = data.View(CL, c_rd2.data), data.View(CL, c_rd3.data)
        cand = [Mux(count > 0, c0, cp_c), Mux(count > 1, c1, cp_c),
                Mux(count > 2, r2, cp_c), Mux(count > 3, r3, cp_c)]

        # ------------------------------------------------------------ window select
        # The pipeline only waits when a result is due while both output slots are full:
        # stall = s2_close & out_full, kept in a register of its own computed from their
        # next values (Fmax: `advance` enables the whole window loop and the multiplier
        # pipeline, so it starts at a flip-flop rather than after a LUT)
        s2_close = Signal()
        out_full = Signal()               # both output slots hold a result
        stall = Signal()
        advance = ~stall
        v0 = count >= 1
        v1 = count >= 2
        use1 = v1 & ~c0.last
        consumed0 = v0 & r0_le[M]
        # r0 + c1.cnt <= M, from flags alone
        fits1 = _or([r0_le[v] & c1.cle[M - v] for v in range(M + 1)])
        consumed1 = use1 & consumed0 & fits1
        sum01 = r0 + c1.cnt
        # products this cycle, min(M, r0 (+ c1.cnt)), as a thermometer from the flags:
        # sel_gt[k] = more than k products
        sel_gt = Signal(M)
        for k in range(M):
            both_le = _or([r0_le[v] & c1.cle[k - v] for v in range(k + 1)])
            m.d.comb += sel_gt[k].eq(v0 & ~Mux(use1, both_le, r0_le[k]))
        nsel = Signal(range(M + 1))
        m.d.comb += nsel.eq(sum(sel_gt[k] for k in range(M)))
        close = (consumed0 & c0.last) | (consumed1 & c1.last)
        chunk_err = (consumed0 & c0.err) | (consumed1 & c1.err)
        # pick k: pair u0 + k of pair 0 while k < r0, then pair k - r0 of pair 1. The pick
        # takes two cycles (Fmax: pair 0's operands are spread over many distributed-RAM
        # cells): stage T selects, for each group of four entries of pair 0, the entry
        # (u0 + k) mod 4, and pair 1's operand; stage S1 picks the group and the pair.
        G = -(-J // 4)
        t_grp_w = [[Signal(signed(8), name=f"t_w{k}_g{g}") for g in range(G)]
                   for k in range(M)]
        t_grp_a = [[Signal(signed(8), name=f"t_a{k}_g{g}") for g in range(G)]
                   for k in range(M)]
        t_hi = [Signal(range(max(2, G)), name=f"t_hi{k}") for k in range(M)]
        t_from1_w = [Signal(signed(8), name=f"t_w{k}_p1") for k in range(M)]
        t_from1_a = [Signal(signed(8), name=f"t_a{k}_p1") for k in range(M)]
        t_use0 = Signal(M)
        t_valid = Signal(M)
        t_close = Signal()
        t_err = Signal()
        t_next = []                       # (register, value) loaded when advancing
        for k in range(M):
            i0 = u0k[k][:len(u0)]
            for g in range(G):
                ents = list(range(4 * g, min(J, 4 * g + 4)))
                t_next += [(t_grp_w[k][g], Array([w0.pw[e] for e in ents])[i0[:2]]),
                           (t_grp_a[k][g], Array([w0.pa[e] for e in ents])[i0[:2]])]
            from1_w, from1_a = w1.pw[k], w1.pa[k]
            for j in range(k):            # r0 = k - j: pair 1's pair j
                r0_is = r0_le[k - j] & ~r0_le[k - j - 1]
                from1_w = Mux(r0_is, w1.pw[j], from1_w)
                from1_a = Mux(r0_is, w1.pa[j], from1_a)
            t_next += [(t_hi[k], i0[2:]), (t_from1_w[k], from1_w), (t_from1_a[k], from1_a),
                       (t_use0[k], ~r0_le[k])]
        op_w = [Mux(t_use0[k], Array(t_grp_w[k])[t_hi[k]], t_from1_w[k]) for k in range(M)]
        op_a = [Mux(t_use0[k], Array(t_grp_a[k])[t_hi[k]], t_from1_a[k]) for k in range(M)]

        # queue update: pop 0..2 (when advancing), push 0..1; one-hot pop count
        pop2 = Signal()
        pop1 = Signal()
        m.d.comb += [pop2.eq(advance & consumed1), pop1.eq(advance & consumed0 & ~consumed1)]
        npop = Signal(range(3))
        m.d.comb += npop.eq(Cat(pop1, pop2))

        def by_pops(keep, one, two):
            return Mux(pop2, two, Mux(pop1, one, keep))

        h4 = wrap(hp[3] + 1)
        h5 = wrap(hp[3] + 2)
        nxt = hp + [h4, h5]
        m.d.sync += [hp[i].eq(by_pops(nxt[i], nxt[i + 1], nxt[i + 2])) for i in range(4)]
        m.d.sync += [tail.eq(wrap(tail + push)),
                     count.eq(by_pops(count + push, count + push - 1, count + push - 2)),
                     occ.eq(by_pops(occ + take, occ + take - 1, occ + take - 2))]
        # in_free next cycle = (next occ) < QC, from comparisons of the present occ
        m.d.sync += in_free.eq(Mux(take, pop2 | Mux(pop1, occ < QC, occ < QC - 1),
                                   pop1 | pop2 | (occ < QC)))
        nc0 = by_pops(cand[0], cand[1], cand[2])
        m.d.sync += [c0.eq(nc0), c1.eq(by_pops(cand[1], cand[2], cand[3]))]
        # pair 0's counts: every candidate is a function of flip-flops, chosen by the pops
        fresh = ~v0 | pop2 | (pop1 & ~use1)
        with m.If(fresh):
            m.d.sync += [u0.eq(0), r0.eq(data.View(CL, nc0).cnt),
                         r0_le.eq(data.View(CL, nc0).cle)]
            m.d.sync += [u0k[k].eq(k) for k in range(M)]
        with m.Elif(pop1):
            # pair 1 becomes pair 0 with M - r0 of its pairs used (r0 + cnt > M)
            m.d.sync += [u0.eq(M - r0), r0.eq(sum01 - M),
                         r0_le.eq(Cat(*[sum01 <= M + v for v in range(M + 1)]))]
            m.d.sync += [u0k[k].eq(M + k - r0) for k in range(M)]
        with m.Elif(advance):
            # pair 0 still holds more than M
            m.d.sync += [u0.eq(u0 + M), r0.eq(r0 - M),
                         r0_le.eq(Cat(*[r0 <= M + v for v in range(M + 1)]))]
            m.d.sync += [u0k[k].eq(u0 + M + k) for k in range(M)]

        # ------------------------------------------------------------ pipeline
        s1_valid = Signal(M)
        s1_w = [Signal(signed(8), name=f"s1_w{k}") for k in range(M)]
        s1_a = [Signal(signed(8), name=f"s1_a{k}") for k in range(M)]
        s1_close = Signal()
        s1_err = Signal()
        s2_p = [Signal(signed(16), name=f"s2_p{k}") for k in range(M)]
        s2_err = Signal()
        s2_any = Signal()
        acc = Signal(signed(AW))
        acc_err = Signal()
        res = Signal(result_layout(AW))       # result in the new value of the acc stage
        new_res = Signal()
        taken = self.o.valid & self.o.ready
        total = acc + sum(s2_p)
        with m.If(advance):
            m.d.sync += [reg.eq(val) for reg, val in t_next]
            m.d.sync += [
                t_valid.eq(sel_gt), t_close.eq(close), t_err.eq(chunk_err),
                s1_valid.eq(t_valid), s1_close.eq(t_close), s1_err.eq(t_err),
                s2_close.eq(s1_close), s2_err.eq(s1_err), s2_any.eq(s1_valid.any() | s1_close),
            ]
            for k in range(M):
                m.d.sync += [s1_w[k].eq(op_w[k]), s1_a[k].eq(op_a[k]),
                             s2_p[k].eq(Mux(s1_valid[k], s1_w[k] * s1_a[k], 0))]
            with m.If(s2_close):
                m.d.sync += [acc.eq(0), acc_err.eq(0)]
                m.d.comb += new_res.eq(1)
            with m.Else():
                m.d.sync += [acc.eq(total), acc_err.eq(acc_err | s2_err)]
        m.d.comb += [res.value.eq(total), res.err.eq(acc_err | s2_err)]
        # the next stall: s2_close and out_full as they will be after this cycle (a result
        # taken while both slots are full frees one, and then no result is due: advance =
        # ~s2_close there)
        s2_close_n = Mux(advance, s1_close, s2_close)
        out_full_n = Mux(taken, 0, Mux(new_res, self.o.valid | out_full, out_full))
        m.d.sync += stall.eq(s2_close_n & out_full_n)
        if self.checks:
            m.d.comb += [
                Assert(stall == (s2_close & out_full),
                       "PE stall register differs from s2_close & out_full"),
                Assert(in_free == (occ < QC), "PE in_free register differs from occ < QC"),
            ]

        # two output slots (o is the first): the PE stalls only when a result is due while
        # both are full, a condition of flip-flops alone (no combinational path from
        # o.ready into the pipeline enables)
        slot_b = Signal(result_layout(AW))
        m.d.sync += out_full.eq(out_full_n)    # one next-state expression, shared with stall
        with m.If(taken):
            with m.If(out_full):
                m.d.sync += self.o.payload.eq(slot_b)
                with m.If(new_res):
                    m.d.sync += slot_b.eq(res)
            with m.Else():
                m.d.sync += [self.o.valid.eq(new_res), self.o.payload.eq(res)]
        with m.Elif(new_res):
            with m.If(self.o.valid):
                m.d.sync += slot_b.eq(res)
            with m.Else():
                m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(res)]

        # ------------------------------------------------------------ counters
        busy = (in_v | p1_v | pc_v | up_v | cp_v | v0 | t_valid.any() | t_close
                | s1_valid.any() | s1_close | s2_any
                | s2_close | self.o.valid)
        empty = ((consumed0 & c0.cle[0]).as_unsigned()
                 + (consumed1 & c1.cle[0]).as_unsigned())
        # the increments are registered first (the counters run one cycle behind)
        inc_busy = Signal()
        inc_macs = Signal(range(M + 1))
        inc_idle = Signal(range(M + 1))
        inc_empty = Signal(2)
        m.d.sync += [inc_busy.eq(busy & ~self.clear),
                     inc_macs.eq(Mux(advance & ~self.clear, nsel, 0)),
                     inc_idle.eq(Mux(advance & v0 & ~self.clear, M - nsel, 0)),
                     inc_empty.eq(Mux(advance & ~self.clear, empty, 0))]
        with m.If(self.clear):
            m.d.sync += [self.busy_cycles.eq(0), self.macs.eq(0), self.idle_slots.eq(0),
                         self.empty_pairs.eq(0), self.error.eq(0)]
        with m.Else():
            m.d.sync += [self.busy_cycles.eq(self.busy_cycles + inc_busy),
                         self.macs.eq(self.macs + inc_macs),
                         self.idle_slots.eq(self.idle_slots + inc_idle),
                         self.empty_pairs.eq(self.empty_pairs + inc_empty)]
        return m
