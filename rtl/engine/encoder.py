"""The re-encoder: int8 outputs back into bitmap chunks, so that layers chain.

ENCODE reads the int8 outputs ``(K, Ho, Wo)`` from the output memory, one word a cycle,
channel-major within each pixel, and builds one lane chunk (``rtl/chunk.py``: mask, channel
i's value in lane i) per S = ``scan_width`` output channels of every pixel; the chunks are
written into the activation memory in the layout the next layer reads (pixel-major,
``ceil(K / S)`` chunks a pixel). The next layer (C = K, H = Ho, W = Wo) then needs only its
weights and descriptor. Channels run on to the end of the last chunk (reads of channels
>= K count as zeros), so ENCODE takes ``ceil(K / S) * S * Ho * Wo`` cycles plus the
pipeline's few. A chunk that would land beyond the activation memory stops it
with ``overflow``.

Timing rules: ``e_ch + 1 >= K`` is a register beside ``e_ch`` (no carry chain in front of
the pixel counter's enable); a read passes the output memory's near and bank registers
(RN, RB) and is registered once more after the bank select (RQ) before it is packed; the
chunk is packed by a shift register (no lane decode fanning out to its 9 S bits) and
registered before it is written.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ...sim.config import Config
from ..chunk import chunk_bits, chunk_word_layout
from ..mem import ReadPortSignature, WritePortSignature, addr_bits
from .layouts import lane_bits, out_addr_bits
from .regmap import desc_layout

__all__ = ["ReEncoder"]


class ReEncoder(wiring.Component):
    """Output words to activation chunks.

    Parameters
    ----------
    cfg : Config

    Members
    -------
    go : In(1)
        Pulse: start (the descriptor's K, HO, WO give the output tensor).
    desc : In(desc_layout())
    out_rd : Out(ReadPortSignature(out_addr_bits(cfg), 32))
        The output memory (two register stages); ``en`` is high while the encoder reads
        (the port is shared with the host, which the host port arbitrates).
    act_wr : Out(WritePortSignature(addr_bits(act_mem_chunks), 9 S))
        The activation memory.
    overflow : Out(1)
        A chunk did not fit the activation memory (it is not written).
    finished : Out(1)
        Idle with nothing in flight.
    """

    def __init__(self, cfg: Config):
        self.cfg = cfg
        super().__init__({
            "go": In(1), "desc": In(desc_layout()),
            "out_rd": Out(ReadPortSignature(out_addr_bits(cfg), 32)),
            "act_wr": Out(WritePortSignature(addr_bits(cfg.act_mem_chunks),
                                             chunk_bits(cfg.scan_width))),
            "overflow": Out(1), "finished": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, d, go = self.cfg, self.desc, self.go
        J = cfg.scan_width
        enc_on = Signal()                  # issuing reads
        e_pix, e_npix = Signal(32), Signal(32)
        e_ch = Signal(16)                  # channel, running past K to the end of the chunk
        e_lane = Signal(range(J))
        lb, L = lane_bits(cfg), cfg.out_lanes
        e_rd = Signal(32)                  # (ch / L) * Npix + pix: the address in a lane
        e_ol = Signal(max(1, lb))          # ch mod L: the output lane (regmap.out_index)
        q_v, q_valid, q_end = Signal(), Signal(), Signal()     # read issued last cycle
        e_addr = Signal(32)
        chunk_end = e_lane == J - 1
        e_pix_last = Signal()              # e_pix + 1 == e_npix
        m.d.sync += e_pix_last.eq(e_pix + 1 == e_npix)
        e_ch_end = Signal()                # e_ch + 1 >= K
        pixel_end = chunk_end & e_ch_end
        with m.If(go):
            m.d.sync += e_ch_end.eq(d.k <= 1)
        with m.Elif(enc_on):
            m.d.sync += e_ch_end.eq(Mux(pixel_end, d.k <= 1, e_ch + 2 >= d.k))
        with m.If(go):
            m.d.sync += [enc_on.eq(1), e_pix.eq(0), e_ch.eq(0), e_lane.eq(0), e_rd.eq(0),
                         e_ol.eq(0),
                         e_npix.eq(d.ho[0:16] * d.wo[0:16]), q_v.eq(0)]
        with m.Elif(enc_on):
            m.d.sync += [q_v.eq(1), q_valid.eq(e_ch < d.k),
                         q_end.eq(chunk_end), e_lane.eq(Mux(chunk_end, 0, e_lane + 1))]
            with m.If(pixel_end):
                m.d.sync += [e_ch.eq(0), e_pix.eq(e_pix + 1), e_rd.eq(e_pix + 1), e_ol.eq(0)]
                with m.If(e_pix_last):
                    m.d.sync += enc_on.eq(0)
            with m.Elif((e_ol == L - 1) if L > 1 else 1):
                m.d.sync += [e_ch.eq(e_ch + 1), e_rd.eq(e_rd + e_npix), e_ol.eq(0)]
            with m.Else():
                m.d.sync += [e_ch.eq(e_ch + 1), e_ol.eq(e_ol + 1)]
        with m.Else():
            m.d.sync += q_v.eq(0)
        m.d.comb += [self.out_rd.addr.eq(Cat(e_ol[:lb], e_rd) if lb else e_rd),
                     self.out_rd.en.eq(enc_on)]
        # RN, RB: the read in the memory's near and bank registers; RQ: registered after
        # the bank select (rn_nz: a channel below K)
        rn_v, rn_nz, rn_end = Signal(), Signal(), Signal()
        rb_v, rb_nz, rb_end = Signal(), Signal(), Signal()
        rq_v, rq_nz, rq_end = Signal(), Signal(), Signal()
        val = Signal(8)
        m.d.sync += [rn_v.eq(q_v & ~go), rn_nz.eq(q_valid), rn_end.eq(q_end),
                     rb_v.eq(rn_v & ~go), rb_nz.eq(rn_nz), rb_end.eq(rn_end),
                     rq_v.eq(rb_v & ~go), rq_nz.eq(rb_nz), rq_end.eq(rb_end),
                     val.eq(self.out_rd.data[0:8])]
        # the value into its lane: a shift register, one lane a cycle (the J reads of a
        # chunk come in J consecutive cycles, lane 0 first), so lane i of the chunk is the
        # i-th value shifted in; no lane decode and no enable over the chunk's wide
        # registers (they sit beside the activation memory's block RAMs)
        nz = rq_nz & (val != 0)
        sh_mask = Signal(J)
        sh_vals = Signal(8 * J)
        next_mask = Cat(sh_mask[1:], nz)
        next_vals = Cat(sh_vals[8:], Mux(rq_nz, val, 0))
        m.d.sync += [sh_mask.eq(next_mask), sh_vals.eq(next_vals)]
        # the chunk is loaded every cycle and written in the cycle after its last lane
        wr_en = Signal()
        wr_addr = Signal(32)
        wr_data = Signal(chunk_word_layout(J))
        m.d.sync += [wr_en.eq(rq_v & rq_end & (e_addr < cfg.act_mem_chunks)),
                     wr_data.mask.eq(next_mask), wr_data.values.eq(next_vals),
                     wr_addr.eq(e_addr)]
        with m.If(go):
            m.d.sync += e_addr.eq(0)
        with m.Elif(rq_v & rq_end):
            m.d.sync += e_addr.eq(e_addr + 1)
        m.d.comb += [self.act_wr.addr.eq(wr_addr), self.act_wr.data.eq(wr_data),
                     self.act_wr.en.eq(wr_en),
                     self.overflow.eq(rq_v & rq_end & (e_addr >= cfg.act_mem_chunks)),
                     self.finished.eq(~enc_on & ~q_v & ~rn_v & ~rb_v & ~rq_v & ~wr_en)]
        return m
