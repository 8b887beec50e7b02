"""Join: takes a weight chunk and an activation chunk together and turns the pair into the
operands of its matching channels, packed (``docs/pe.md``).

Stages (a register each, none of them ever stalls)::

    IN   both chunks as they arrive, 'last' and the pair's error flag
    P1   prefix counts of both masks and of the match mask: adder levels 0 and 1
    PC   ... the remaining levels
    UP   packed values -> dense lanes (lane i takes value number popcount(mask[0:i]))
    CP   the matching lanes packed in channel order, with their count (the pair payload)

Nothing but the handshake sits between the inputs and the IN register. Because no stage
stalls, a pair may only be taken while the consumer promises room for it ``PE_STAGES``
cycles later (``room``): flow control by credit, not by a ready chain.
"""

from __future__ import annotations

import functools
import operator

from amaranth import Array, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ...sim.config import Config
from ..chunk import chunk_layout

__all__ = ["Join", "PEError", "PE_STAGES", "pair_layout"]

# registers a chunk pair passes from the inputs to the pair payload: IN, P1, PC, UP, CP
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


@functools.cache
def pair_layout(J: int, M: int) -> data.StructLayout:
    """A joined chunk pair: how many channels match (both nonzero), ``cle[v]`` = cnt <= v
    for v <= M (the window's control loop uses these flags, not a comparator), the operands
    of those channels packed in channel order (``pw[r]``, ``pa[r]``: the r-th match; the
    entries from ``cnt`` on are zero), ``last`` (the pair ends an accumulation) and ``err``
    (the accumulation is flagged)."""
    return data.StructLayout({
        "cnt": range(J + 1), "cle": M + 1,
        "pw": data.ArrayLayout(signed(8), J), "pa": data.ArrayLayout(signed(8), J),
        "last": 1, "err": 1,
    })


def _or(values):
    return functools.reduce(operator.or_, values)


def _prefix_levels(m, cur, width, name, lvl, upto=None):
    """Levels ``lvl`` .. ``upto - 1`` of a Sklansky parallel prefix count over ``cur``
    (log2(width) adder levels in all instead of a ripple of width adders); returns the
    partial sums after them."""
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


def _two_step_prefix(m, bits, width, name):
    """pc[i] = number of set bits of ``bits`` below i, for i = 0 .. width, computed in two
    registered steps: adder levels 0 and 1 (counts within groups of four), a register, the
    remaining levels. The result is combinational from the registers of the first step."""
    part = _prefix_levels(m, [bits[i] for i in range(width)], width, name, 0, 2)
    regs = []
    for i, v in enumerate(part):
        r = Signal(range(width + 1), name=f"{name}_p1_{i}")
        m.d.sync += r.eq(v)
        regs.append(r)
    cur = _prefix_levels(m, regs, width, name, 2)
    pc = [Signal(range(width + 1), name=f"{name}{i}") for i in range(width + 1)]
    m.d.comb += pc[0].eq(0)
    for i in range(width):
        m.d.comb += pc[i + 1].eq(cur[i])   # inclusive prefix of bits[0..i]
    return pc


def _unpack(m, mask, vals, pc, width, name):
    """Dense lanes of a packed chunk: lane i holds value number pc[i] if mask[i], else 0."""
    lanes = Signal(data.ArrayLayout(signed(8), width), name=name)
    for i in range(width):
        src = Array([vals[j] for j in range(i + 1)])
        m.d.comb += lanes[i].eq(Mux(mask[i], src[pc[i][:max(1, i.bit_length())]], 0))
    return lanes


class Join(wiring.Component):
    """Input handshake, resynchronisation and the five join stages.

    A pair is taken when both chunks are valid and ``room`` is high; both inputs are then
    ready in the same cycle. If the two chunks disagree on ``last``, the pair still closes
    the accumulation (flagged), and the chunks of the longer side up to its own ``last``
    are dropped (ready high, nothing taken) so the next accumulation is aligned again. An
    accumulation of more than ``cfg.max_chunks`` chunks is flagged from the chunk past the
    limit on.

    Parameters
    ----------
    cfg : Config
        ``join_width`` (J), ``multipliers`` (M, the width of the ``cle`` flags),
        ``max_chunks``.

    Members
    -------
    w, a : In(stream.Signature(chunk_layout(J)))
        Weight and activation chunks; ``end`` is ignored.
    room : In(1)
        The consumer of ``pair`` has room for one more pair: a pair may be taken.
    taken : Out(1)
        A pair is taken this cycle. Its payload leaves on ``pair`` exactly ``PE_STAGES``
        cycles later.
    pair : Out(stream.Signature(pair_layout(J, M), always_ready=True))
        Joined pairs, in order, one per pair taken (always ready: see ``room``).
    fault : Out(2)
        The :class:`PEError` code the pair taken this cycle raises, ``OK`` if none.
    busy : Out(1)
        A pair is in one of the stages.
    """

    def __init__(self, cfg: Config):
        self.cfg = cfg
        J = cfg.join_width
        super().__init__({
            "w": In(stream.Signature(chunk_layout(J))),
            "a": In(stream.Signature(chunk_layout(J))),
            "room": In(1),
            "taken": Out(1),
            "pair": Out(stream.Signature(pair_layout(J, cfg.multipliers), always_ready=True)),
            "fault": Out(2),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        J, M = cfg.join_width, cfg.multipliers
        w, a = self.w, self.a

        # ------------------------------------------------------------ handshake, IN
        in_v = Signal()
        in_w = Signal(chunk_layout(J))
        in_a = Signal(chunk_layout(J))
        in_last = Signal()
        in_err = Signal()
        drop_w = Signal()                 # resync: discard weight chunks up to 'last'
        drop_a = Signal()
        nchunks = Signal(range(cfg.max_chunks + 2))
        too_long = Signal()
        take = self.taken
        mismatch = w.payload.last != a.payload.last
        long_now = too_long | (nchunks >= cfg.max_chunks)
        with m.If(drop_w):
            m.d.comb += w.ready.eq(1)
            with m.If(w.valid & w.payload.last):
                m.d.sync += drop_w.eq(0)
        with m.Elif(drop_a):
            m.d.comb += a.ready.eq(1)
            with m.If(a.valid & a.payload.last):
                m.d.sync += drop_a.eq(0)
        with m.Else():
            m.d.comb += [take.eq(w.valid & a.valid & self.room), w.ready.eq(take),
                         a.ready.eq(take)]
            with m.If(take):
                with m.If(w.payload.last | a.payload.last):
                    m.d.sync += [nchunks.eq(0), too_long.eq(0)]
                with m.Else():
                    m.d.sync += [nchunks.eq(nchunks + 1), too_long.eq(long_now)]
                with m.If(mismatch):
                    m.d.sync += [drop_w.eq(a.payload.last), drop_a.eq(w.payload.last)]
                    m.d.comb += self.fault.eq(PEError.LAST_MISMATCH)
                with m.Elif(long_now):
                    m.d.comb += self.fault.eq(PEError.TOO_LONG)
        m.d.sync += [in_v.eq(take), in_w.eq(w.payload), in_a.eq(a.payload),
                     in_last.eq(w.payload.last | a.payload.last),
                     in_err.eq(mismatch | long_now)]

        # ------------------------------------------------------------ counts (P1, PC)
        match_in = in_w.mask & in_a.mask
        p1_v, p1_last, p1_err = Signal(), Signal(), Signal()
        p1_w = Signal(chunk_layout(J))
        p1_a = Signal(chunk_layout(J))
        p1_match = Signal(J)
        m.d.sync += [p1_v.eq(in_v), p1_w.eq(in_w), p1_a.eq(in_a), p1_last.eq(in_last),
                     p1_err.eq(in_err), p1_match.eq(match_in)]
        cw = _two_step_prefix(m, in_w.mask, J, "cw")
        ca = _two_step_prefix(m, in_a.mask, J, "ca")
        cr = _two_step_prefix(m, match_in, J, "cr")

        pc_v, pc_last, pc_err = Signal(), Signal(), Signal()
        pc_w = Signal(chunk_layout(J))
        pc_a = Signal(chunk_layout(J))
        pc_match = Signal(J)
        pcw = [Signal(range(J + 1), name=f"pcw{i}") for i in range(J)]
        pca = [Signal(range(J + 1), name=f"pca{i}") for i in range(J)]
        pc_rank = [Signal(range(J + 1), name=f"pc_rank{i}") for i in range(J + 1)]
        m.d.sync += [pc_v.eq(p1_v), pc_w.eq(p1_w), pc_a.eq(p1_a), pc_last.eq(p1_last),
                     pc_err.eq(p1_err), pc_match.eq(p1_match)]
        m.d.sync += [pcw[i].eq(cw[i]) for i in range(J)]
        m.d.sync += [pca[i].eq(ca[i]) for i in range(J)]
        m.d.sync += [pc_rank[i].eq(cr[i]) for i in range(J + 1)]

        # ------------------------------------------------------------ unpack (UP)
        wd = _unpack(m, pc_w.mask, pc_w.values, pcw, J, "w_dense")
        ad = _unpack(m, pc_a.mask, pc_a.values, pca, J, "a_dense")
        up_v, up_last, up_err = Signal(), Signal(), Signal()
        up_wd = Signal(data.ArrayLayout(signed(8), J))
        up_ad = Signal(data.ArrayLayout(signed(8), J))
        up_match = Signal(J)
        up_rank = [Signal(range(J + 1), name=f"up_rank{i}") for i in range(J + 1)]
        m.d.sync += [up_v.eq(pc_v), up_wd.eq(wd), up_ad.eq(ad), up_match.eq(pc_match),
                     up_last.eq(pc_last), up_err.eq(pc_err)]
        m.d.sync += [up_rank[i].eq(pc_rank[i]) for i in range(J + 1)]

        # ------------------------------------------------------------ compress (CP)
        # pw[r] = the lane whose rank is r: the window then takes matches by index
        cp = self.pair.payload
        m.d.sync += [cp.cle[v].eq(up_rank[J] <= v) for v in range(M + 1)]
        m.d.sync += [self.pair.valid.eq(up_v), cp.cnt.eq(up_rank[J]), cp.last.eq(up_last),
                     cp.err.eq(up_err)]
        for r in range(J):
            hit = [up_match[i] & (up_rank[i] == r) for i in range(r, J)]
            m.d.sync += [
                cp.pw[r].eq(_or([Mux(h, up_wd[i].as_unsigned(), 0)
                                 for h, i in zip(hit, range(r, J), strict=True)])),
                cp.pa[r].eq(_or([Mux(h, up_ad[i].as_unsigned(), 0)
                                 for h, i in zip(hit, range(r, J), strict=True)])),
            ]

        m.d.comb += self.busy.eq(in_v | p1_v | pc_v | up_v | self.pair.valid)
        return m
