"""The address pipeline: sequencer steps in, broadcast entries out.

Each step becomes the activation chunk's address ``(iy * W + ix) * NCH + c`` and the
weight chunk's address ``(j * R * S + r * S + s) * NCH + c`` in registered steps, then
the activation memory is read::

    A step ─► B products (iy*W, j*RS, r*S) ─► B2 sums ─► C products (*NCH) ─► C2 addresses
      ─► s1 block RAM ─► s2 near registers ─► s3 bank registers ─► s4 selected chunk ─► o

Every stage moves on ``advance`` = ``~s4.valid | o.ready``: the pipeline stalls as one
piece, and takes a step from the input whenever it moves. Addresses are computed modulo
the memory sizes (exact: the descriptor check refuses a layer that does not fit), so each
product fits one DSP block; the products' constant operands are copies of their own
(free-running registers), so that no DSP block's operand comes from the descriptor
registers' other users. s4 drives the routes to the P queues, so the bank registers feed
only the bank select.
"""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ...sim.config import Config
from ..chunk import chunk_bits
from ..mem import ReadPortSignature
from .layouts import STEP_LAYOUT, act_addr_bits, entry_layout, wgt_addr_bits
from .regmap import desc_layout

__all__ = ["AddressPipeline", "ADDRESS_STAGES", "READ_STAGES"]

# registered stages from a step to its chunk address: A, B, B2, C, C2
ADDRESS_STAGES = 5
# stages from the chunk address to the chunk in s4: s1 (block RAM), s2, s3, s4
READ_STAGES = 4


class AddressPipeline(wiring.Component):
    """Steps to broadcast entries (activation chunk, weight address, last).

    Parameters
    ----------
    cfg : Config

    Members
    -------
    i : In(stream.Signature(STEP_LAYOUT))
        Steps; ``ready`` is the pipeline's ``advance`` and does not depend on ``valid``.
    o : Out(stream.Signature(entry_layout(cfg)))
        Entries, in step order.
    act_rd : Out(ReadPortSignature(act_addr_bits(cfg), 9 J))
        The activation memory (a ``BankedMemory`` with two register stages).
    desc : In(desc_layout())
    rs : In(8)
        R x S, taken at ``start``.
    start : In(1)
    """

    def __init__(self, cfg: Config):
        self.cfg = cfg
        super().__init__({
            "i": In(stream.Signature(STEP_LAYOUT)),
            "o": Out(stream.Signature(entry_layout(cfg))),
            "act_rd": Out(ReadPortSignature(act_addr_bits(cfg), chunk_bits(cfg.scan_width))),
            "desc": In(desc_layout()), "rs": In(8), "start": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, d = self.cfg, self.desc
        aa_bits, wb = act_addr_bits(cfg), wgt_addr_bits(cfg)
        a_v, b_v, b2_v, c_v, c2_v = Signal(), Signal(), Signal(), Signal(), Signal()
        a_st = Signal(STEP_LAYOUT)
        b_py, b_px, b_tj, b_tr, b_ts = (Signal(aa_bits), Signal(aa_bits), Signal(wb),
                                        Signal(wb), Signal(4))
        b_c, b_last = Signal(16), Signal()
        b2_pix, b2_tap, b2_c, b2_last = Signal(aa_bits), Signal(wb), Signal(16), Signal()
        c_ap, c_wp, c_c, c_last = Signal(aa_bits), Signal(wb), Signal(16), Signal()
        c_aaddr, c_waddr, c2_last = Signal(aa_bits), Signal(wb), Signal()
        # s1..s4, each (valid, weight address, last); the chunk is in the memory's
        # registers for s1..s3 and in the output register for s4
        s_st = [(Signal(name=f"s{i}_valid"), Signal(wb, name=f"s{i}_waddr"),
                 Signal(name=f"s{i}_last")) for i in range(1, READ_STAGES + 1)]
        s4_valid, s4_waddr, s4_last = s_st[-1]
        s_moves = [dst.eq(src) for dsts, srcs in zip(s_st, [(c2_v, c_waddr, c2_last)] +
                                                     s_st[:-1], strict=True)
                   for dst, src in zip(dsts, srcs, strict=True)]
        s4_data = Signal(chunk_bits(cfg.scan_width), reset_less=True)
        advance = ~s4_valid | self.o.ready
        m.d.comb += [self.i.ready.eq(advance),
                     self.act_rd.addr.eq(c_aaddr), self.act_rd.en.eq(advance),
                     self.o.valid.eq(s4_valid), self.o.payload.a.eq(s4_data),
                     self.o.payload.waddr.eq(s4_waddr), self.o.payload.last.eq(s4_last)]
        # the products' constant operands
        rs = Signal(8)
        k_wa, k_s = Signal(aa_bits), Signal(4)
        nch_a, nch_w = Signal(aa_bits), Signal(wb)
        m.d.sync += [k_wa.eq(d.w[0:16][:aa_bits]), k_s.eq(d.s[0:4]),
                     nch_a.eq(d.nch[0:16][:aa_bits]), nch_w.eq(d.nch[0:16][:wb])]
        with m.If(self.start):
            m.d.sync += rs.eq(self.rs)
        with m.If(advance):
            m.d.sync += [
                a_v.eq(self.i.valid), a_st.eq(self.i.payload),
                b_v.eq(a_v), b_py.eq(a_st.iy[:aa_bits] * k_wa), b_px.eq(a_st.ix),
                b_tj.eq(a_st.j[:wb] * rs), b_tr.eq(a_st.r * k_s), b_ts.eq(a_st.s),
                b_c.eq(a_st.c), b_last.eq(a_st.last),
                b2_v.eq(b_v), b2_pix.eq(b_py + b_px), b2_tap.eq(b_tj + b_tr + b_ts),
                b2_c.eq(b_c), b2_last.eq(b_last),
                c_v.eq(b2_v), c_ap.eq(b2_pix * nch_a), c_wp.eq(b2_tap * nch_w),
                c_c.eq(b2_c), c_last.eq(b2_last),
                c2_v.eq(c_v), c_aaddr.eq(c_ap + c_c), c_waddr.eq(c_wp + c_c),
                c2_last.eq(c_last),
                *s_moves, s4_data.eq(self.act_rd.data),
            ]
        return m
