"""Window: the pair queue and the select control (``docs/pe.md``).

The queue is a circular buffer in distributed RAM, written at the tail. The window is its
first two pairs (pair 0 and pair 1), whose operands are read straight out of the RAM at
registered head pointers; nothing wide moves when pairs leave. Each cycle the window
selects up to M matches: entry ``u0 + k`` of pair 0 while ``k < r0`` (``u0`` used, ``r0``
left), then entry ``k - r0`` of pair 1 (never across the end of an accumulation), and
0, 1 or 2 pairs leave.

The control loop (how many pairs leave, what is left of pair 0) runs on narrow copies of
each pair's count, flags and ``cnt <= v`` bits: the registers ``c0``, ``c1`` hold those of
pairs 0 and 1 and are refilled from a narrow copy of the queue read at the head pointers of
pairs 2 and 3 (or straight from the incoming pair). Every next-state value is computed from
flip-flops in parallel and only chosen by the pop count.
"""

from __future__ import annotations

import functools
import operator

from amaranth import Cat, Module, Mux, Shape, Signal, signed
from amaranth.hdl import Assert
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ...sim.config import Config
from .join import pair_layout

__all__ = ["Window", "QUEUE_DELAY", "step_layout", "stats_layout"]

# cycles from a pair arriving on `pair` to it being selectable as pair 0 (the queue write
# and the window's control registers)
QUEUE_DELAY = 1


@functools.cache
def step_layout(J: int, M: int) -> data.StructLayout:
    """One select step: the operands of pairs 0 and 1 (``p0``, ``p1``: ``pw``, ``pa``
    as in :func:`pair_layout`), ``start[k]`` = u0 + k, ``r0_le[v]`` = r0 <= v (v <= M),
    ``sel[k]``: lane k carries a product (a thermometer code), ``close``: the step ends an
    accumulation, ``err``: the accumulation is flagged."""
    ops = data.StructLayout({"pw": data.ArrayLayout(signed(8), J),
                             "pa": data.ArrayLayout(signed(8), J)})
    return data.StructLayout({
        "p0": ops, "p1": ops,
        "start": data.ArrayLayout(Shape.cast(range(J + 1)).width, M),
        "r0_le": M + 1, "sel": M, "close": 1, "err": 1,
    })


@functools.cache
def stats_layout(M: int) -> data.StructLayout:
    """What one select step did: ``products`` selected, ``empty`` pairs with no match
    that left the queue, ``held``: the window held a pair."""
    return data.StructLayout({"products": range(M + 1), "empty": 2, "held": 1})


def _or(values):
    return functools.reduce(operator.or_, values)


class Window(wiring.Component):
    """Pair queue and window select.

    The producer of ``pair`` (the join) takes a pair only while ``room`` is high and
    delivers it ``stages`` cycles later. ``room`` is a register: high while the queue, the
    window and the producer's stages hold fewer than ``depth + stages`` pairs (``occ``,
    counted from ``taken`` and the pops), which is the queue's capacity. This takes pairs
    in exactly the cycles a queue of ``depth`` behind ``stages`` stalling registers would.

    Parameters
    ----------
    cfg : Config
        ``join_width`` (J), ``multipliers`` (M).
    depth : int
        Queue depth as seen by the producer (at least 2).
    stages : int
        Cycles from ``taken`` to the pair on ``pair``.
    checks : bool
        Add a simulation assertion that ``room`` equals ``occ < depth + stages``.

    Members
    -------
    pair : In(stream.Signature(pair_layout(J, M), always_ready=True))
        Joined pairs, written to the queue; selectable ``QUEUE_DELAY`` cycle later.
    taken : In(1)
        The producer took a pair this cycle.
    room : Out(1)
        The producer may take a pair (a register).
    step : Out(stream.Signature(step_layout(J, M), always_valid=True))
        One select step a cycle; ``ready`` (the pipeline advances) moves the window on.
    stats : Out(stream.Signature(stats_layout(M), always_ready=True))
        What the select step did, valid in the cycles the window moves on.
    busy : Out(1)
        The window holds a pair.
    """

    def __init__(self, cfg: Config, *, depth: int, stages: int, checks: bool = False):
        self.cfg, self.depth, self.stages, self.checks = cfg, depth, stages, checks
        J, M = cfg.join_width, cfg.multipliers
        super().__init__({
            "pair": In(stream.Signature(pair_layout(J, M), always_ready=True)),
            "taken": In(1),
            "room": Out(1, init=1),
            "step": Out(stream.Signature(step_layout(J, M), always_valid=True)),
            "stats": Out(stream.Signature(stats_layout(M), always_ready=True)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        J, M = self.cfg.join_width, self.cfg.multipliers
        QC = self.depth + self.stages
        EL = pair_layout(J, M)
        CL = data.StructLayout({"cnt": range(J + 1), "cle": M + 1, "last": 1, "err": 1})
        advance = self.step.ready
        push, take = self.pair.valid, self.taken
        count = Signal(range(QC + 1))     # pairs in the queue (window included)
        occ = Signal(range(QC + 1))       # ... plus the pairs in the producer's stages
        in_free = self.room               # occ < QC, a register (Fmax: it is `ready`)

        m.submodules.queue = qmem = Memory(shape=EL.size, depth=QC, init=[])
        m.submodules.queue_ctl = cmem = Memory(shape=CL.size, depth=QC, init=[])
        q_wr, c_wr = qmem.write_port(), cmem.write_port()
        q_rd0, q_rd1 = qmem.read_port(domain="comb"), qmem.read_port(domain="comb")
        c_rd2, c_rd3 = cmem.read_port(domain="comb"), cmem.read_port(domain="comb")
        tail = Signal(range(QC))
        hp = [Signal(range(QC), init=i, name=f"h{i}") for i in range(4)]   # pairs 0..3

        def wrap(x):
            return Mux(x >= QC, x - QC, x)[0:len(tail)]

        cp = self.pair.payload
        cp_c = Signal(CL)
        m.d.comb += [cp_c.cnt.eq(cp.cnt), cp_c.cle.eq(cp.cle), cp_c.last.eq(cp.last),
                     cp_c.err.eq(cp.err)]
        c0 = Signal(CL)                   # control fields of pair 0, pair 1
        c1 = Signal(CL)
        u0 = Signal(range(J + 1))         # pair 0: matches already selected
        u0k = [Signal(range(J + M), name=f"u0k{k}") for k in range(M)]   # u0 + k
        r0 = Signal(range(J + 1))         # ... and still to select
        r0_le = Signal(M + 1)             # r0_le[v]: r0 <= v
        m.d.comb += [q_wr.addr.eq(tail), q_wr.data.eq(cp), q_wr.en.eq(push),
                     c_wr.addr.eq(tail), c_wr.data.eq(cp_c), c_wr.en.eq(push),
                     q_rd0.addr.eq(hp[0]), q_rd1.addr.eq(hp[1]),
                     c_rd2.addr.eq(hp[2]), c_rd3.addr.eq(hp[3])]
        r2, r3 = data.View(CL, c_rd2.data), data.View(CL, c_rd3.data)
        cand = [Mux(count > 0, c0, cp_c), Mux(count > 1, c1, cp_c),
                Mux(count > 2, r2, cp_c), Mux(count > 3, r3, cp_c)]

        # ------------------------------------------------------------ select
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
        s = self.step.payload
        w0, w1 = data.View(EL, q_rd0.data), data.View(EL, q_rd1.data)
        m.d.comb += [s.p0.pw.eq(w0.pw), s.p0.pa.eq(w0.pa), s.p1.pw.eq(w1.pw),
                     s.p1.pa.eq(w1.pa), s.r0_le.eq(r0_le), s.sel.eq(sel_gt),
                     s.close.eq((consumed0 & c0.last) | (consumed1 & c1.last)),
                     s.err.eq((consumed0 & c0.err) | (consumed1 & c1.err))]
        m.d.comb += [s.start[k].eq(u0k[k][:len(u0)]) for k in range(M)]
        st = self.stats.payload
        m.d.comb += [self.stats.valid.eq(advance), st.products.eq(nsel), st.held.eq(v0),
                     st.empty.eq((consumed0 & c0.cle[0]).as_unsigned()
                                 + (consumed1 & c1.cle[0]).as_unsigned()),
                     self.busy.eq(v0)]

        # ------------------------------------------------------------ queue update
        # pop 0..2 (when advancing), push 0..1; one-hot pop count
        pop2 = Signal()
        pop1 = Signal()
        m.d.comb += [pop2.eq(advance & consumed1), pop1.eq(advance & consumed0 & ~consumed1)]

        def by_pops(keep, one, two):
            return Mux(pop2, two, Mux(pop1, one, keep))

        nxt = hp + [wrap(hp[3] + 1), wrap(hp[3] + 2)]
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
            # pair 1 becomes pair 0 with M - r0 of its matches used (r0 + cnt > M)
            m.d.sync += [u0.eq(M - r0), r0.eq(sum01 - M),
                         r0_le.eq(Cat(*[sum01 <= M + v for v in range(M + 1)]))]
            m.d.sync += [u0k[k].eq(M + k - r0) for k in range(M)]
        with m.Elif(advance):
            # pair 0 still holds more than M
            m.d.sync += [u0.eq(u0 + M), r0.eq(r0 - M),
                         r0_le.eq(Cat(*[r0 <= M + v for v in range(M + 1)]))]
            m.d.sync += [u0k[k].eq(u0 + M + k) for k in range(M)]
        if self.checks:
            m.d.comb += Assert(in_free == (occ < QC), "PE in_free register differs from occ < QC")
        return m
