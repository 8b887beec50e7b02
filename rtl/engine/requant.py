"""The requantizer: collected results in, output memory writes out.

For a result of filter slot ``slot`` and pixel ``pix`` it reads the filter index k
(``KMAP[slot]``; a value >= K marks an empty slot, whose result is dropped), then k's
multiplier, shift and bias, and writes the output word at ``(k / L) * Ho * Wo + pix`` of
its lane's bank (L = ``out_lanes``; the lane holds the filters with ``k mod L`` equal to
its index, so ``k / L`` is a shift): the biased accumulator ``b = acc + bias[k]``
(wrapped to ``acc_width`` bits, like the accumulator) as a raw int32 word (MODE bit 0),
or::

    y = (b * mult[k] + 2^(shift[k] - 1)) >> shift[k]     (arithmetic shift; no rounding
                                                          term when shift = 0)
    y = max(y, 0) if MODE bit 1 (ReLU);  clamped to -128..127, sign-extended to 32 bits

(``sim/conv.py:add_bias`` and ``requantize`` are the same formulas.) It never stalls: one
result a cycle in, one write a cycle out, :data:`REQUANT_STAGES` cycles later.

Timing rules: every memory's output is registered before it is used (the KMAP index
before it addresses the next memories; the multiplier, shift and bias, whose registers
beside the memories drive only a second register each); the bias is added on the way
from those second registers into the products' operand registers, which the placer puts
beside the DSP blocks; the product is split in two 16-bit-operand halves; the rounding
add, the full sum, the shift in two steps (multiples of 8, then 0..7) and the clamp each
have a cycle; ReLU and the clamp decide from y's bits (OR / AND trees), not from
comparators.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ...sim.config import Config
from ..mem import ReadPortSignature, WritePortSignature, addr_bits
from .layouts import collected_layout, fmax_slots, kmap_bits, lane_addr_bits, lane_bits
from .regmap import desc_layout

__all__ = ["Requantizer", "REQUANT_STAGES"]

# registers from a collected result to its write: Y (KMAP read), Y2, Z (multiplier,
# shift and bias read), Z2, A (the bias again), Z3 (bias added: product operands), B, C, E, F, G, H
REQUANT_STAGES = 12


class Requantizer(wiring.Component):
    """Per-output-channel requantization and the output address.

    Parameters
    ----------
    cfg : Config

    Members
    -------
    i : In(stream.Signature(collected_layout(cfg), always_ready=True))
    kmap_rd, mult_rd, shift_rd, bias_rd : Out(ReadPortSignature(...))
        The KMAP (filter of each slot), MULT (int16), SHIFT (0..47) and BIAS (int32)
        memories.
    out_wr : Out(WritePortSignature(lane_addr_bits(cfg), 32))
        The lane's bank of the output memory.
    retired : Out(1)
        A result left the pipeline this cycle (written, or dropped for an empty slot).
    desc : In(desc_layout())
        ``K`` and ``MODE`` (constant during a job).
    npix : In(32)
        ``Ho * Wo``, taken at ``start``.
    start : In(1)
    """

    def __init__(self, cfg: Config):
        self.cfg = cfg
        nslots = cfg.pes * fmax_slots(cfg)
        super().__init__({
            "i": In(stream.Signature(collected_layout(cfg), always_ready=True)),
            "kmap_rd": Out(ReadPortSignature(addr_bits(nslots), kmap_bits(cfg))),
            "mult_rd": Out(ReadPortSignature(addr_bits(cfg.max_filters), signed(16))),
            "shift_rd": Out(ReadPortSignature(addr_bits(cfg.max_filters), 6)),
            "bias_rd": Out(ReadPortSignature(addr_bits(cfg.max_filters), signed(32))),
            "out_wr": Out(WritePortSignature(lane_addr_bits(cfg), 32)),
            "retired": Out(1),
            "desc": In(desc_layout()), "npix": In(32), "start": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, d = self.cfg, self.desc
        acc_w, oa_bits, kb = cfg.acc_width, lane_addr_bits(cfg), kmap_bits(cfg)
        lb = lane_bits(cfg)
        npix = Signal(32)
        with m.If(self.start):
            m.d.sync += npix.eq(self.npix)
        m.d.comb += [self.kmap_rd.addr.eq(self.i.payload.slot), self.kmap_rd.en.eq(1)]
        y_valid, y_acc, y_pix = Signal(), Signal(signed(acc_w)), Signal(oa_bits)
        m.d.sync += [y_valid.eq(self.i.valid), y_acc.eq(self.i.payload.acc),
                     y_pix.eq(self.i.payload.pix)]
        # Y2: the filter index registered out of the KMAP memory
        y2_valid, y2_acc, y2_pix = Signal(), Signal(signed(acc_w)), Signal(oa_bits)
        kval = Signal(kb)
        m.d.sync += [y2_valid.eq(y_valid), y2_acc.eq(y_acc), y2_pix.eq(y_pix),
                     kval.eq(self.kmap_rd.data)]
        m.d.comb += [self.mult_rd.addr.eq(kval), self.shift_rd.addr.eq(kval),
                     self.bias_rd.addr.eq(kval), self.mult_rd.en.eq(1),
                     self.shift_rd.en.eq(1), self.bias_rd.en.eq(1)]
        z_valid, z_acc, z_pix, z_k = Signal(), Signal(signed(acc_w)), Signal(oa_bits), Signal(kb)
        m.d.sync += [z_valid.eq(y2_valid), z_acc.eq(y2_acc), z_pix.eq(y2_pix), z_k.eq(kval)]
        # Z2: the multiplier, shift and bias registered out of their memories
        z2_valid, z2_acc, z2_pix, z2_k = (Signal(), Signal(signed(acc_w)), Signal(oa_bits),
                                          Signal(kb))
        z_mult, z_shift, z_bias = Signal(signed(16)), Signal(6), Signal(signed(32))
        m.d.sync += [z2_valid.eq(z_valid), z2_acc.eq(z_acc), z2_pix.eq(z_pix), z2_k.eq(z_k),
                     z_mult.eq(self.mult_rd.data), z_shift.eq(self.shift_rd.data),
                     z_bias.eq(self.bias_rd.data)]
        # A: the bias in a register of its own (the one beside its memory drives nothing
        # else); the multiplier and shift wait
        a_valid, a_acc, a_pix, a_k = (Signal(), Signal(signed(acc_w)), Signal(oa_bits),
                                      Signal(kb))
        a_mult, a_shift, a_bias = Signal(signed(16)), Signal(6), Signal(signed(32))
        m.d.sync += [a_valid.eq(z2_valid), a_acc.eq(z2_acc), a_pix.eq(z2_pix),
                     a_k.eq(z2_k), a_mult.eq(z_mult), a_shift.eq(z_shift),
                     a_bias.eq(z_bias)]
        # the biased accumulator, wrapped to acc_width bits
        biased = Signal(signed(acc_w))
        m.d.comb += biased.eq(a_acc + a_bias)
        # Z3: the product operands in registers of their own (one load each: they sit
        # beside the DSP blocks, away from the memories' output registers)
        z3_valid, z3_acc, z3_pix, z3_k = (Signal(), Signal(signed(acc_w)), Signal(oa_bits),
                                          Signal(kb))
        z3_shift = Signal(6)
        a_lo, a_hi = Signal(16), Signal(signed(acc_w - 16))
        m_lo, m_hi = Signal(signed(16)), Signal(signed(16))
        m.d.sync += [z3_valid.eq(a_valid), z3_acc.eq(biased), z3_pix.eq(a_pix),
                     z3_k.eq(a_k), z3_shift.eq(a_shift),
                     a_lo.eq(biased[0:16]), a_hi.eq(biased[16:].as_signed()),
                     m_lo.eq(a_mult), m_hi.eq(a_mult)]
        # B: partial products (acc = hi * 2^16 + lo), the rounding term, the address
        # product; C: low part + rounding, the address; E: the full sum
        b_valid, b_keep = Signal(), Signal()
        b_lo, b_hi = Signal(signed(34)), Signal(signed(acc_w))
        b_rnd, b_shift = Signal(48), Signal(6)
        b_acc = Signal(signed(acc_w))
        b_kp, b_pix = Signal(oa_bits), Signal(oa_bits)
        m.d.sync += [b_valid.eq(z3_valid), b_keep.eq(z3_k < d.k), b_acc.eq(z3_acc),
                     b_lo.eq(a_lo * m_lo), b_hi.eq(a_hi * m_hi),
                     b_rnd.eq((Const(1, 48) << z3_shift) >> 1),    # 2**(shift-1), 0 if 0
                     b_shift.eq(z3_shift), b_kp.eq((z3_k >> lb) * npix[0:oa_bits]),
                     b_pix.eq(z3_pix)]
        c_valid, c_keep = Signal(), Signal()
        c_lo, c_hi = Signal(signed(49)), Signal(signed(acc_w))
        c_shift, c_acc, c_addr = Signal(6), Signal(signed(acc_w)), Signal(oa_bits)
        m.d.sync += [c_valid.eq(b_valid), c_keep.eq(b_keep), c_acc.eq(b_acc),
                     c_lo.eq(b_lo + b_rnd), c_hi.eq(b_hi), c_shift.eq(b_shift),
                     c_addr.eq(b_kp + b_pix)]
        e_valid, e_keep = Signal(), Signal()
        e_sum, e_shift = Signal(signed(acc_w + 18)), Signal(6)
        e_acc, e_addr = Signal(signed(acc_w)), Signal(oa_bits)
        m.d.sync += [e_valid.eq(c_valid), e_keep.eq(c_keep), e_acc.eq(c_acc),
                     e_sum.eq((c_hi << 16) + c_lo), e_shift.eq(c_shift), e_addr.eq(c_addr)]
        # F, G: the arithmetic shift in two steps (multiples of 8, then 0..7)
        f_valid, f_keep = Signal(), Signal()
        f_sum, f_shift = Signal(signed(acc_w + 18)), Signal(3)
        f_acc, f_addr = Signal(signed(acc_w)), Signal(oa_bits)
        m.d.sync += [f_valid.eq(e_valid), f_keep.eq(e_keep), f_acc.eq(e_acc),
                     f_sum.eq(e_sum >> Cat(Const(0, 3), e_shift[3:6])),
                     f_shift.eq(e_shift[0:3]), f_addr.eq(e_addr)]
        g_valid, g_keep = Signal(), Signal()
        y = Signal(signed(acc_w + 18))
        g_acc, g_addr = Signal(signed(acc_w)), Signal(oa_bits)
        m.d.sync += [g_valid.eq(f_valid), g_keep.eq(f_keep), g_acc.eq(f_acc),
                     y.eq(f_sum >> f_shift), g_addr.eq(f_addr)]
        # H: ReLU and the int8 clamp from y's bits: negative when its sign is set, above
        # 127 when non-negative with any of bits 7.. set, below -128 when negative with
        # any of them clear. MODE is copied into registers beside this stage.
        raw_r, relu_r = Signal(), Signal()
        m.d.sync += [raw_r.eq(d.mode[0]), relu_r.eq(d.mode[1])]
        y_neg, y_top = y[-1], y[7:]
        y8 = Signal(8)
        with m.If(y_neg & relu_r):
            m.d.comb += y8.eq(0)
        with m.Elif(~y_neg & y_top.any()):
            m.d.comb += y8.eq(127)
        with m.Elif(y_neg & ~y_top.all()):
            m.d.comb += y8.eq(0x80)
        with m.Else():
            m.d.comb += y8.eq(y[0:8])
        h_valid, h_keep = Signal(), Signal()
        h_data, h_addr = Signal(32), Signal(oa_bits)
        m.d.sync += [h_valid.eq(g_valid), h_keep.eq(g_keep), h_addr.eq(g_addr),
                     h_data.eq(Mux(raw_r, g_acc, y8.as_signed()))]
        m.d.comb += [self.out_wr.addr.eq(h_addr), self.out_wr.data.eq(h_data),
                     self.out_wr.en.eq(h_valid & h_keep), self.retired.eq(h_valid)]
        return m
