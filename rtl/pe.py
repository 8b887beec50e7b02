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
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..sim.config import Config
from .decoder import chunk_layout

__all__ = ["PE", "PEError", "result_layout"]


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


def _entry_layout(J: int) -> data.StructLayout:
    return data.StructLayout({
        "wm": J, "am": J,
        "wd": data.ArrayLayout(signed(8), J), "ad": data.ArrayLayout(signed(8), J),
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
    """

    def __init__(self, cfg: Config | None = None):
        self.cfg = cfg = cfg or Config()
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

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        J, M, D = cfg.join_width, cfg.multipliers, self.depth
        AW = cfg.acc_width
        EL = _entry_layout(J)

        # ------------------------------------------------------------ pair queue state
        # The pair queue is a circular buffer in a memory with two asynchronous read ports
        # (head and head + 1): it maps to distributed RAM instead of D x |entry| flip-flops
        # with a three-way shift per entry.
        m.submodules.queue = qmem = Memory(shape=EL.size, depth=D, init=[])
        q_wr = qmem.write_port()
        q_rd0 = qmem.read_port(domain="comb")
        q_rd1 = qmem.read_port(domain="comb")
        head = Signal(range(D))
        tail = Signal(range(D))
        count = Signal(range(D + 1))

        def wrap(x):
            return Mux(x >= D, x - D, x)[0:len(head)]
        done0 = Signal(J)                 # head pair: match bits already multiplied

        # ------------------------------------------------------------ join + unpack
        def prefix_counts(bits, width, name):
            """Signals pc[i] = number of set bits below i, by a Sklansky parallel prefix:
            log2(width) adder levels instead of a ripple of width adders (Fmax)."""
            cur = [bits[i] for i in range(width)]
            lvl = 0
            while (1 << lvl) < width:
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
            pc = [Signal(range(width + 1), name=f"{name}{i}") for i in range(width + 1)]
            m.d.comb += pc[0].eq(0)
            for i in range(width):
                m.d.comb += pc[i + 1].eq(cur[i])   # inclusive prefix of bits[0..i]
            return pc

        def unpack(mask, vals, name):
            lanes = Signal(data.ArrayLayout(signed(8), J), name=name)
            pc = prefix_counts(mask, J, f"{name}_pc")
            for i in range(J):
                src = Array([vals[j] for j in range(i + 1)])
                m.d.comb += lanes[i].eq(Mux(mask[i], src[pc[i]], 0))
            return lanes

        wd = unpack(self.w.payload.mask, self.w.payload.values, "w_dense")
        ad = unpack(self.a.payload.mask, self.a.payload.values, "a_dense")
        drop_w = Signal()                 # resync: discard weight chunks up to 'last'
        drop_a = Signal()
        nchunks = Signal(range(cfg.max_chunks + 2))
        too_long = Signal()
        room = count < D
        both = self.w.valid & self.a.valid
        push = Signal()
        new = Signal(EL)
        mismatch = self.w.payload.last != self.a.payload.last
        long_now = too_long | (nchunks >= cfg.max_chunks)
        m.d.comb += [
            new.wm.eq(self.w.payload.mask), new.am.eq(self.a.payload.mask),
            new.wd.eq(wd), new.ad.eq(ad),
            new.last.eq(self.w.payload.last | self.a.payload.last),
            new.err.eq(mismatch | long_now),
        ]
        with m.If(drop_w):
            m.d.comb += self.w.ready.eq(1)
            with m.If(self.w.valid & self.w.payload.last):
                m.d.sync += drop_w.eq(0)
        with m.Elif(drop_a):
            m.d.comb += self.a.ready.eq(1)
            with m.If(self.a.valid & self.a.payload.last):
                m.d.sync += drop_a.eq(0)
        with m.Else():
            m.d.comb += [push.eq(both & room), self.w.ready.eq(push), self.a.ready.eq(push)]
            with m.If(push):
                with m.If(new.last):
                    m.d.sync += [nchunks.eq(0), too_long.eq(0)]
                with m.Else():
                    m.d.sync += [nchunks.eq(nchunks + 1), too_long.eq(long_now)]
                with m.If(mismatch):
                    m.d.sync += [drop_w.eq(self.a.payload.last), drop_a.eq(self.w.payload.last),
                                 self.error.eq(PEError.LAST_MISMATCH)]
                with m.Elif(long_now):
                    m.d.sync += self.error.eq(PEError.TOO_LONG)

        # ------------------------------------------------------------ window select
        # The pipeline only waits when a result is due while the previous one has not been
        # taken yet; a result waiting in the output register does not stop the multipliers.
        s2_close = Signal()
        advance = ~(s2_close & self.o.valid & ~self.o.ready)
        m.d.comb += [q_rd0.addr.eq(head), q_rd1.addr.eq(wrap(head + 1))]
        e0, e1 = data.View(EL, q_rd0.data), data.View(EL, q_rd1.data)
        v0 = count >= 1
        v1 = count >= 2
        full0 = e0.wm & e0.am
        match0 = full0 & ~done0
        match1 = e1.wm & e1.am
        use1 = v1 & ~e0.last
        avail = Cat(Mux(v0, match0, 0), Mux(use1, match1, 0))
        onehot = [[Signal(name=f"sel{k}_{i}") for i in range(2 * J)] for k in range(M)]
        pre = prefix_counts(avail, 2 * J, "win_pc")
        for i in range(2 * J):
            for k in range(M):
                m.d.comb += onehot[k][i].eq(avail[i] & (pre[i] == k))
        nsel = Signal(range(M + 1))
        m.d.comb += nsel.eq(Mux(pre[2 * J] > M, M, pre[2 * J]))
        sel = Signal(2 * J)
        m.d.comb += sel.eq(Cat(*[_or([onehot[k][i] for k in range(M)]) for i in range(2 * J)]))
        consumed0 = v0 & ((match0 & ~sel[:J]) == 0)
        consumed1 = use1 & consumed0 & ((match1 & ~sel[J:]) == 0)
        pops = Signal(range(3))
        m.d.comb += pops.eq(Mux(consumed1, 2, Mux(consumed0, 1, 0)))
        close = (consumed0 & e0.last) | (consumed1 & e1.last)
        chunk_err = (consumed0 & e0.err) | (consumed1 & e1.err)
        all_w = [e0.wd[i] for i in range(J)] + [e1.wd[i] for i in range(J)]
        all_a = [e0.ad[i] for i in range(J)] + [e1.ad[i] for i in range(J)]
        op_w = [_or([Mux(onehot[k][i], all_w[i].as_unsigned(), 0) for i in range(2 * J)])
                for k in range(M)]
        op_a = [_or([Mux(onehot[k][i], all_a[i].as_unsigned(), 0) for i in range(2 * J)])
                for k in range(M)]

        # queue update: pop 0..2 (when advancing), push 0..1
        npop = Mux(advance, pops, 0)
        m.d.comb += [q_wr.addr.eq(tail), q_wr.data.eq(new), q_wr.en.eq(push)]
        m.d.sync += [head.eq(wrap(head + npop)), tail.eq(wrap(tail + push)),
                     count.eq(count - npop + push)]
        with m.If(advance):
            with m.If(consumed0):
                m.d.sync += done0.eq(Mux(consumed1 | ~use1, 0, sel[J:]))
            with m.Else():
                m.d.sync += done0.eq(done0 | sel[:J])

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
        with m.If(advance):
            m.d.sync += [
                s1_valid.eq(Cat(*[nsel > k for k in range(M)])),
                s1_close.eq(close), s1_err.eq(chunk_err),
                s2_close.eq(s1_close), s2_err.eq(s1_err), s2_any.eq(s1_valid.any() | s1_close),
            ]
            for k in range(M):
                m.d.sync += [s1_w[k].eq(op_w[k].as_signed()), s1_a[k].eq(op_a[k].as_signed()),
                             s2_p[k].eq(Mux(s1_valid[k], s1_w[k] * s1_a[k], 0))]
            total = acc + sum(s2_p)
            with m.If(s2_close):
                m.d.sync += [self.o.valid.eq(1), self.o.payload.value.eq(total),
                             self.o.payload.err.eq(acc_err | s2_err), acc.eq(0), acc_err.eq(0)]
            with m.Else():
                m.d.sync += [acc.eq(total), acc_err.eq(acc_err | s2_err)]
                with m.If(self.o.ready):
                    m.d.sync += self.o.valid.eq(0)

        # ------------------------------------------------------------ counters
        busy = v0 | s1_valid.any() | s1_close | s2_any | s2_close | self.o.valid
        empty = ((consumed0 & (full0 == 0)).as_unsigned()
                 + (consumed1 & (match1 == 0)).as_unsigned())
        with m.If(self.clear):
            m.d.sync += [self.busy_cycles.eq(0), self.macs.eq(0), self.idle_slots.eq(0),
                         self.empty_pairs.eq(0), self.error.eq(0)]
        with m.Else():
            m.d.sync += self.busy_cycles.eq(self.busy_cycles + busy)
            with m.If(advance):
                m.d.sync += [self.macs.eq(self.macs + nsel),
                             self.idle_slots.eq(self.idle_slots + Mux(v0, M - nsel, 0)),
                             self.empty_pairs.eq(self.empty_pairs + empty)]
        return m
