"""The descriptor check, and the job sizes derived from the descriptor.

Free-running registered arithmetic on the descriptor registers: after the host's last
descriptor write, :data:`CHECK_LATENCY` cycles later the three error flags and the sizes
are valid (the control waits that long before it reads them). The checks:

* ``bad_shape``: a zero C, H, W, K, R or S; R or S above 7; stride not 1 or 2; pad >= R
  or S; the kernel larger than the padded image;
* ``bad_desc``: NCH != ceil(C / J), F != ceil(K / P), HO or WO not the output size;
* ``too_big``: a field above 16 bits; K above ``max_filters``; C above ``max_channels``;
  the activations, weights or outputs beyond their memories; C x R x S above
  ``max_reduction``.

Timing rules: every product has its operands registered before its DSP block and its
result after it; a 32 x 16 product is two 16 x 16 partial products and a registered sum;
every check term is registered on its own, then their OR.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ...sim.config import Config
from .regmap import DESC, desc_layout

__all__ = ["DescriptorCheck", "CHECK_LATENCY"]

# the longest chain of registered steps: R*S, F*RS, the wide product's two partial
# products (operands, product) and their sum, the terms, their OR
CHECK_LATENCY = 9


class DescriptorCheck(wiring.Component):
    """Checks and sizes of a layer descriptor.

    Parameters
    ----------
    cfg : Config
        ``pes``, ``scan_width`` and the memory and layer limits.

    Members
    -------
    desc : In(desc_layout())
    bad_shape, bad_desc, too_big : Out(1)
        The error flags (``EngineError`` BAD_SHAPE, BAD_DESC, TOO_BIG).
    rs : Out(8)
        R x S.
    npix : Out(32)
        HO x WO, output pixels.
    total : Out(48)
        HO x WO x F x P, results the PEs produce (empty slots included).
    """

    def __init__(self, cfg: Config):
        self.cfg = cfg
        super().__init__({
            "desc": In(desc_layout()),
            "bad_shape": Out(1), "bad_desc": Out(1), "too_big": Out(1),
            "rs": Out(8), "npix": Out(32), "total": Out(48),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        J, P = cfg.scan_width, cfg.pes
        d = {n: self.desc[n.lower()] for n in DESC}
        v16 = {n: d[n][0:16] for n in DESC}
        # output sizes in registered steps: padded size, minus the kernel, the stride,
        # then the compare
        hp, wp = Signal(34), Signal(34)
        hpr, wpr = Signal(signed(35)), Signal(signed(35))
        ho_c, wo_c = Signal(signed(35)), Signal(signed(35))
        ho_ok, wo_ok = Signal(), Signal()
        stride2 = Signal()
        m.d.sync += [hp.eq(d["H"] + 2 * d["PAD"]), wp.eq(d["W"] + 2 * d["PAD"]),
                     hpr.eq(hp - d["R"]), wpr.eq(wp - d["S"]), stride2.eq(d["STRIDE"] == 2),
                     ho_c.eq(Mux(stride2, hpr >> 1, hpr) + 1),
                     wo_c.eq(Mux(stride2, wpr >> 1, wpr) + 1),
                     ho_ok.eq(ho_c == d["HO"]), wo_ok.eq(wo_c == d["WO"])]
        big16 = Cat(*[d[n][16:32] != 0 for n in DESC if n != "MODE"]).any()

        def mul_reg(a, b, width, name):
            """a * b, operands registered before the product, the product after it."""
            ra = Signal(len(a), name=f"{name}_a")
            rb = Signal(len(b), name=f"{name}_b")
            out = Signal(width, name=name)
            m.d.sync += [ra.eq(a), rb.eq(b), out.eq(ra * rb)]
            return out

        def mul_wide(a, b, name):
            """a (up to 32 bits) x b (16 bits): two 16 x 16 partial products, then their
            registered sum."""
            lo = mul_reg(a[0:16], b, 48, f"{name}_lo")
            hi = mul_reg(a[16:32], b, 48, f"{name}_hi")
            out = Signal(48, name=name)
            m.d.sync += out.eq((hi << 16) + lo)
            return out

        rs = mul_reg(d["R"][0:4], d["S"][0:4], 8, "rs")
        p_hw = mul_reg(v16["H"], v16["W"], 32, "p_hw")
        p_frs = mul_reg(v16["F"], rs, 24, "p_frs")
        # outputs take ceil(K / L) * L channels' room (each lane holds K / L of them)
        L = cfg.out_lanes
        k_up = Signal(17)
        m.d.comb += k_up.eq((v16["K"] + (L - 1)) & ~(L - 1))
        p_kho = mul_reg(k_up, v16["HO"], 33, "p_kho")
        npix = mul_reg(v16["HO"], v16["WO"], 32, "npix")
        red_need = mul_reg(v16["C"], rs, 24, "red_need")
        act_need = mul_wide(p_hw, v16["NCH"], "act_need")
        wgt_need = mul_wide(p_frs, v16["NCH"], "wgt_need")
        out_need = mul_wide(p_kho, v16["WO"], "out_need")
        total = mul_wide(npix, v16["F"] * P, "total")
        m.d.comb += [self.rs.eq(rs), self.npix.eq(npix), self.total.eq(total)]
        shape_terms = [Cat(*[d[n] == 0 for n in ("C", "H", "W", "K", "R", "S")]).any(),
                       (d["R"] > 7) | (d["S"] > 7),
                       (d["STRIDE"] != 1) & (d["STRIDE"] != 2),
                       (d["PAD"] >= d["R"]) | (d["PAD"] >= d["S"]),
                       hpr[-1] | wpr[-1]]
        desc_terms = [d["NCH"] * J < d["C"], (d["NCH"] - 1) * J >= d["C"],
                      d["F"] * P < d["K"], (d["F"] - 1) * P >= d["K"], ~ho_ok, ~wo_ok]
        big_terms = [big16, d["K"] > cfg.max_filters, d["C"] > cfg.max_channels,
                     act_need > cfg.act_mem_chunks, wgt_need > cfg.wgt_mem_chunks,
                     out_need > cfg.out_mem_words, red_need > cfg.max_reduction]
        for flag, terms, name in ((self.bad_shape, shape_terms, "bad_shape"),
                                  (self.bad_desc, desc_terms, "bad_desc"),
                                  (self.too_big, big_terms, "too_big")):
            regs = Signal(len(terms), name=f"{name}_t")
            m.d.sync += [regs.eq(Cat(*terms)), flag.eq(regs.any())]
        return m
