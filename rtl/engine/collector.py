"""The result collector of an output lane: its PEs' result streams in, one collected
result a cycle out.

Each PE's results first enter a two-entry buffer beside the collector whose ``ready`` to
the PE is a register (fewer than two entries): no path runs from one PE's output through
the grant and back into a PE in one cycle. A round-robin grant picks one buffered result
a cycle (the PE after the one served last goes first); the grant is one-hot, each bit a
function of the buffers' valid bits and the last grant only (two LUT levels), and the
granted value is an AND-OR of the heads. Stage W registers the granted result and the
grant; per-PE counters (filter slot j, output pixel) move on the registered grant, and
stage X registers the result with its KMAP slot ``p * fmax_slots + j`` and pixel.

PE p's results arrive in sequencer order: for each pixel, its slots j = 0 .. F - 1. The
engine has ``out_lanes`` collectors; the one of lane l takes PEs ``l * n .. l * n + n - 1``
(``n = lane_pes(cfg)``).
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ...sim.config import Config
from ..spe import result_layout
from .layouts import collected_layout, fmax_slots, lane_addr_bits, lane_pes
from .regmap import desc_layout

__all__ = ["ResultCollector", "COLLECT_STAGES", "COLLECT_BUFFER"]

# registers from a PE's output to the collected result: buffer, W, X
COLLECT_STAGES = 3
# results a PE may have waiting in the collector's buffer
COLLECT_BUFFER = 2


class ResultCollector(wiring.Component):
    """Round-robin collection of the PEs' results, with their filter slot and pixel.

    Parameters
    ----------
    cfg : Config
    first : int
        Index of the first PE this collector takes (its slots start at
        ``first * fmax_slots``).

    Members
    -------
    i : In(stream.Signature(result_layout(acc_width))).array(lane_pes(cfg))
        The PEs' results; ``ready`` is a flip-flop.
    o : Out(stream.Signature(collected_layout(cfg), always_ready=True))
        One result a cycle at most.
    desc : In(desc_layout())
        ``F``, filter slots per PE.
    start : In(1)
        Pulse: every PE's next result is slot 0 of pixel 0.
    """

    def __init__(self, cfg: Config, first: int = 0):
        self.cfg, self.first = cfg, first
        super().__init__({
            "i": In(stream.Signature(result_layout(cfg.acc_width))).array(lane_pes(cfg)),
            "o": Out(stream.Signature(collected_layout(cfg), always_ready=True)),
            "desc": In(desc_layout()), "start": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        P, FM, acc_w = lane_pes(cfg), fmax_slots(cfg), cfg.acc_width
        first = self.first
        F = self.desc.f[0:16]
        k_f1 = Signal()
        m.d.sync += k_f1.eq(F == 1)
        # two-entry buffers
        cb_head = [Signal(signed(acc_w), name=f"cb_head{p}") for p in range(P)]
        cb_next = [Signal(signed(acc_w), name=f"cb_next{p}") for p in range(P)]
        cb_n = [Signal(range(3), name=f"cb_n{p}") for p in range(P)]
        cb_ne = [Signal(name=f"cb_ne{p}") for p in range(P)]           # cb_n != 0
        rr = Signal(P, init=1)
        grant = Signal(P)
        terms = []
        for p in range(P):
            cases = []
            for base in range(P):
                dist = (p - base) % P or P
                earlier = [(base + o) % P for o in range(1, dist)]
                blocked = Cat(*[cb_ne[q] for q in earlier]).any() if earlier else 0
                cases.append(rr[base] & ~blocked)
            terms.append(cb_ne[p] & Cat(*cases).any())
        m.d.comb += grant.eq(Cat(*terms))
        got = grant.any()
        with m.If(got):
            m.d.sync += rr.eq(grant)
        for p in range(P):
            src = self.i[p]
            push = src.valid & ~cb_n[p][1]
            pop = grant[p]
            n_next = cb_n[p] + push - pop
            m.d.comb += src.ready.eq(~cb_n[p][1])
            m.d.sync += [cb_n[p].eq(n_next), cb_ne[p].eq(n_next != 0)]
            val_in = src.payload.value
            with m.If(pop):
                m.d.sync += cb_head[p].eq(Mux(cb_n[p] == 2, cb_next[p], val_in))
            with m.Elif(push & (cb_n[p] == 0)):
                m.d.sync += cb_head[p].eq(val_in)
            with m.If(push & (cb_n[p] - pop == 1)):
                m.d.sync += cb_next[p].eq(val_in)

        def by_sel(values, sel):
            out = 0
            for p in range(P):
                out = out | Mux(sel[p], values[p], 0)
            return out

        # stage W: the granted result and the grant
        w_valid = Signal()
        w_acc = Signal(signed(acc_w))
        w_grant = Signal(P)
        m.d.sync += [w_valid.eq(got), w_acc.eq(by_sel(cb_head, grant)), w_grant.eq(grant)]
        # per-PE filter slot and pixel of the next result
        res_j = [Signal(16, name=f"res_j{p}") for p in range(P)]
        res_jl = [Signal(name=f"res_jl{p}") for p in range(P)]    # res_j == F - 1
        res_pix = [Signal(32, name=f"res_pix{p}") for p in range(P)]
        for p in range(P):
            with m.If(w_grant[p]):
                with m.If(res_jl[p]):
                    m.d.sync += [res_j[p].eq(0), res_jl[p].eq(k_f1),
                                 res_pix[p].eq(res_pix[p] + 1)]
                with m.Else():
                    m.d.sync += [res_j[p].eq(res_j[p] + 1), res_jl[p].eq(res_j[p] + 2 == F)]
        # stage X
        x_valid = Signal()
        x_acc = Signal(signed(acc_w))
        x_slot = Signal(range(cfg.pes * FM))
        x_pix = Signal(lane_addr_bits(cfg))
        m.d.sync += [x_valid.eq(w_valid), x_acc.eq(w_acc),
                     x_slot.eq(by_sel([(first + p) * FM + res_j[p] for p in range(P)],
                                      w_grant)),
                     x_pix.eq(by_sel(res_pix, w_grant))]
        m.d.comb += [self.o.valid.eq(x_valid), self.o.payload.acc.eq(x_acc),
                     self.o.payload.slot.eq(x_slot), self.o.payload.pix.eq(x_pix)]
        with m.If(self.start):
            for p in range(P):
                m.d.sync += [res_j[p].eq(0), res_jl[p].eq(k_f1), res_pix[p].eq(0)]
        return m
