"""The sequencer: every chunk step of a layer, one a cycle.

For every output pixel (row-major), every filter slot j, every tap (r, s) of the R x S
window that falls inside the image (taps in the zero padding are skipped) and every chunk
c of the pixel's ``NCH`` chunks, the sequencer emits one step: the input pixel (iy, ix),
c, j, r, s, and ``last`` on the final chunk of the final tap (the step that ends an
accumulation).

Timing rules: the step logic starts at flip-flops. Each step counter (c, s, r, j) carries
a registered "last" flag. The pixel walk runs two pixels ahead: G1 holds the coordinates
of the pixel after next (with ``W - 1 - ix0`` and ``H - 1 - iy0`` as registers), G2 the
registered tap bounds of the next pixel, ``cur`` those of the current one; finishing a
pixel moves G2 into ``cur``, G1's bounds into G2 and G1 on by one pixel, so a pixel of a
single step still takes one cycle. Steps are issued into a register Z with a skid
register K behind it while ``room`` (a flip-flop) says Z and K will not both be full; the
output stream presents the older of them. So nothing in the step logic waits on the
stream's ``ready``, which comes from across the chip.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .layouts import STEP_LAYOUT
from .regmap import desc_layout

__all__ = ["Sequencer", "PixelBounds"]

# tap bounds of one pixel: window origin, first / last tap inside the image, single-tap
# flags, last pixel of the layer
PixelBounds = data.StructLayout({"ix0": signed(18), "iy0": signed(18), "s_lo": 4, "s_hi": 4,
                                 "r_lo": 4, "r_hi": 4, "s_one": 1, "r_one": 1, "last": 1})


class Sequencer(wiring.Component):
    """Chunk steps of a layer.

    Members
    -------
    desc : In(desc_layout())
        The descriptor (constant during a job; the job constants derived from it are
        free-running registers, settled before ``load``).
    load : In(1)
        Pulse: the pixel walk's G1 takes pixel 0.
    prime : In(1)
        Held for two cycles after ``load``: moves the pixel walk twice (G2 <- pixel 0, then
        the current pixel <- pixel 0, G2 <- pixel 1).
    start : In(1)
        Pulse after priming: the first step is issued next cycle.
    o : Out(stream.Signature(STEP_LAYOUT))
        The steps, in order.
    running : Out(1)
        Steps remain to be issued.
    """

    def __init__(self):
        super().__init__({
            "desc": In(desc_layout()), "load": In(1), "prime": In(1), "start": In(1),
            "o": Out(stream.Signature(STEP_LAYOUT)), "running": Out(1),
        })

    def elaborate(self, platform):  # noqa: C901 - counters and the pixel walk, one rule
        m = Module()
        d = self.desc
        j, c = Signal(16), Signal(16)
        r, s = Signal(4), Signal(4)
        last_c, last_s, last_r, last_j = Signal(), Signal(), Signal(), Signal()
        seq_on = self.running
        S = d.s[0:4]
        pad, stride = d.pad[0:4], d.stride[0:2]
        nch, F = d.nch[0:16], d.f[0:16]
        # job constants, free-running registers
        k_hm1, k_wm1 = Signal(signed(18)), Signal(signed(18))
        k_rm1, k_sm1 = Signal(4), Signal(4)
        k_nch1, k_f1, k_wo1, k_ho1 = Signal(), Signal(), Signal(), Signal()
        m.d.sync += [k_hm1.eq(d.h[0:16] - 1), k_wm1.eq(d.w[0:16] - 1),
                     k_rm1.eq(d.r[0:4] - 1), k_sm1.eq(S - 1),
                     k_nch1.eq(nch == 1), k_f1.eq(F == 1),
                     k_wo1.eq(d.wo[0:16] == 1), k_ho1.eq(d.ho[0:16] == 1)]

        def lo(x0):
            return Mux(x0 < 0, (-x0)[0:4], 0)

        def hi(lim, km1):
            # lim: taps left inside the image from the window origin, n - 1 - x0
            return Mux(lim < km1, lim[0:4], km1)

        # G1: the pixel after next
        g1_ox, g1_oy = Signal(16), Signal(16)
        g1_ix0, g1_iy0 = Signal(signed(18)), Signal(signed(18))
        g1_oxl, g1_oyl = Signal(), Signal()
        g1_limx, g1_limy = Signal(signed(19)), Signal(signed(19))   # W - 1 - ix0, H - 1 - iy0
        k_limx0, k_limy0 = Signal(signed(19)), Signal(signed(19))   # ... at ix0 = -pad
        m.d.sync += [k_limx0.eq(k_wm1 + pad), k_limy0.eq(k_hm1 + pad)]
        # G2: the next pixel's bounds; cur: the current pixel's
        g2 = Signal(PixelBounds)
        cur = Signal(PixelBounds)
        g1_slo, g1_shi = lo(g1_ix0), hi(g1_limx, k_sm1)
        g1_rlo, g1_rhi = lo(g1_iy0), hi(g1_limy, k_rm1)
        take = Signal()
        iy = (cur.iy0 + r)[0:16]
        ix = (cur.ix0 + s)[0:16]
        step_last = last_r & last_s & last_c

        # Z and its skid register K
        z_v, k_v = Signal(), Signal()
        z_st, k_st = Signal(STEP_LAYOUT), Signal(STEP_LAYOUT)
        room = Signal(init=1)
        issue = seq_on & room
        advance = self.o.ready
        z_taken = advance & ~k_v
        z_left = z_v & ~z_taken
        k_left = k_v & ~advance
        k_next = z_left | k_left
        z_next = issue | (z_left & k_left)
        m.d.sync += [z_v.eq(z_next), k_v.eq(k_next), room.eq(~(z_next & k_next))]
        m.d.comb += [self.o.valid.eq(z_v | k_v), self.o.payload.eq(Mux(k_v, k_st, z_st))]
        with m.If(z_left & ~k_left):
            m.d.sync += k_st.eq(z_st)
        with m.If(issue):
            m.d.sync += [z_st.iy.eq(iy), z_st.ix.eq(ix), z_st.c.eq(c), z_st.j.eq(j),
                         z_st.r.eq(r), z_st.s.eq(s), z_st.last.eq(step_last)]

        # step counters
        with m.If(issue):
            with m.If(~last_c):
                m.d.sync += [c.eq(c + 1), last_c.eq(c + 2 == nch)]
            with m.Else():
                m.d.sync += [c.eq(0), last_c.eq(k_nch1)]
                with m.If(~last_s):
                    m.d.sync += [s.eq(s + 1), last_s.eq(s + 1 == cur.s_hi)]
                with m.Elif(~last_r):
                    m.d.sync += [s.eq(cur.s_lo), last_s.eq(cur.s_one),
                                 r.eq(r + 1), last_r.eq(r + 1 == cur.r_hi)]
                with m.Elif(~last_j):
                    m.d.sync += [s.eq(cur.s_lo), last_s.eq(cur.s_one),
                                 r.eq(cur.r_lo), last_r.eq(cur.r_one),
                                 j.eq(j + 1), last_j.eq(j + 2 == F)]
                with m.Else():
                    m.d.sync += [j.eq(0), last_j.eq(k_f1)]
                    m.d.comb += take.eq(1)
                    with m.If(cur.last):
                        m.d.sync += seq_on.eq(0)

        # pixel walk
        with m.If(take | self.prime):
            # the next pixel becomes current; its first tap
            m.d.sync += [cur.eq(g2), s.eq(g2.s_lo), last_s.eq(g2.s_one), r.eq(g2.r_lo),
                         last_r.eq(g2.r_one)]
            m.d.sync += [g2.ix0.eq(g1_ix0), g2.iy0.eq(g1_iy0), g2.s_lo.eq(g1_slo),
                         g2.s_hi.eq(g1_shi), g2.r_lo.eq(g1_rlo), g2.r_hi.eq(g1_rhi),
                         g2.s_one.eq(g1_slo == g1_shi), g2.r_one.eq(g1_rlo == g1_rhi),
                         g2.last.eq(g1_oxl & g1_oyl)]
            with m.If(~g1_oxl):
                m.d.sync += [g1_ox.eq(g1_ox + 1), g1_ix0.eq(g1_ix0 + stride),
                             g1_limx.eq(g1_limx - stride),
                             g1_oxl.eq(g1_ox + 2 == d.wo[0:16])]
            with m.Else():
                m.d.sync += [g1_ox.eq(0), g1_ix0.eq(-pad), g1_limx.eq(k_limx0),
                             g1_oxl.eq(k_wo1),
                             g1_oy.eq(g1_oy + 1), g1_iy0.eq(g1_iy0 + stride),
                             g1_limy.eq(g1_limy - stride),
                             g1_oyl.eq(g1_oy + 2 == d.ho[0:16])]

        with m.If(self.load):
            m.d.sync += [g1_ox.eq(0), g1_oy.eq(0), g1_ix0.eq(-pad), g1_iy0.eq(-pad),
                         g1_limx.eq(k_limx0), g1_limy.eq(k_limy0),
                         g1_oxl.eq(k_wo1), g1_oyl.eq(k_ho1)]
        with m.If(self.start):
            m.d.sync += [j.eq(0), c.eq(0), last_j.eq(k_f1), last_c.eq(k_nch1), seq_on.eq(1)]
        return m
