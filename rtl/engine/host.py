"""The host port: the word bus, the descriptor registers, memory writes and reads.

The register map is ``regmap.py``. The bus is registered on entry, with the address
decoded on the way in (one flag per register and per region), so every decode path starts
at the engine's own flip-flops: a write takes effect one cycle after its cycle. The words
of an activation chunk or a weight chunk are collected in a staging register; writing an
entry's last word (``regmap.entry_words``) stores the whole entry (the memories' write
ports are registered too, so it lands two cycles after the host's write). A weight value
(WVAL) is one word, its low byte.

While the engine is busy every write is ignored (descriptor, MODE, memories, CTRL start and
encode) and counted in IGNORED, except a CTRL write with the abort bit, which is the
``abort`` pulse (the cycle after the bus write, like every write); IGNORED clears when a
start or encode is taken. So a job runs on the descriptor and memories it started with.

Reads: ``rdata`` comes with ``rvalid`` :data:`READ_LATENCY` cycles after ``re``, for
every address, so reads keep their order: an OUT read's address goes to the output memory
in the cycle of ``re`` (not through the bus register) and the word shows after the
memory's block RAM, near and bank registers; a CSR read is selected by an AND-OR of the
registers (no priority chain) and delayed to match. An OUT read while the engine is busy
returns an undefined word; the re-encoder's reads take the output memory's read port
while it runs.
"""

from __future__ import annotations

import functools
import operator

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ...sim.config import Config
from ..chunk import chunk_bits, chunk_word_layout
from ..mem import ReadPortSignature, WritePortSignature, addr_bits
from ..spe import wval_addr_bits
from .layouts import fmax_slots, kmap_bits, out_addr_bits, wgt_addr_bits, wgt_entry_layout
from .regmap import (
    CSR_SPAN,
    DESC,
    REG,
    REGION,
    REGION_SHIFT,
    REGIONS,
    REGISTERS,
    HostSignature,
    chunk_word_bits,
    desc_layout,
    entry_words,
)

__all__ = ["HostPort", "READ_LATENCY"]

# cycles from a read's ``re`` to its ``rvalid``: the bus register (or, for OUT, the block
# RAM's read register), then two more registers (the output memory's near and bank
# registers; for a CSR, two delay registers)
READ_LATENCY = 3
# registers a first step of the CSR read mux ORs together
CSR_GROUP = 8
# levels of the MACS adder tree (each registered): log2(max PEs); the per-PE counters
# settle long before ``done`` (a product is counted at its issue, its result retires
# ISSUE_TO_OUT + collector + requantizer cycles later), so MACS is final when done shows
MACS_TREE_LEVELS = 6


def _sum_tree(m: Module, values) -> Signal:
    """The 32-bit sum of ``values`` by a balanced adder tree with a register after every
    level (``MACS_TREE_LEVELS`` levels at most): one carry chain between registers."""
    level = list(values)
    depth = 0
    while len(level) > 1 or depth == 0:
        nxt = []
        for i in range(0, len(level), 2):
            r = Signal(32, name=f"macs_l{depth}_{i // 2}")
            m.d.sync += r.eq(level[i] + level[i + 1] if i + 1 < len(level) else level[i])
            nxt.append(r)
        level, depth = nxt, depth + 1
    assert depth <= MACS_TREE_LEVELS + 1
    return level[0]


def _fields(name: str, values: dict[str, object]):
    """A register's value from its fields (``regmap``), unused bits zero."""
    reg = next(r for r in REGISTERS if r.name == name)
    parts, pos = [], 0
    for f in sorted(reg.fields, key=lambda f: f.lsb):
        if f.lsb > pos:
            parts.append(Const(0, f.lsb - pos))
        parts.append(values[f.name])
        pos = f.lsb + f.width
    return Cat(*parts)


class HostPort(wiring.Component):
    """Host bus to registers and memories.

    Parameters
    ----------
    cfg : Config

    Members
    -------
    host : Out(HostSignature())
        The engine's host bus.
    desc : Out(desc_layout())
        The descriptor registers.
    start, encode : Out(1)
        CTRL commands written while idle (pulses, the cycle after the bus write).
    abort : Out(1)
        CTRL abort written while busy (a pulse, the cycle after the bus write).
    busy, done, error, cycles : In
        Control state, for STATUS and CYCLES; memory writes and commands are ignored while
        ``busy``.
    pe_busy, pe_macs : In(32).array(P)
        The PEs' counters.
    act_wr, wgt_wr[p], wval_wr[p], kmap_wr, mult_wr, shift_wr, bias_wr : Out(...)
        Writes to the memories.
    enc_wr : In(WritePortSignature(...))
        The re-encoder's activation chunk writes, merged into ``act_wr``.
    out_rd : Out(ReadPortSignature(out_addr_bits(cfg), 32))
        The output memory's read port (``en`` always high).
    enc_rd : In(ReadPortSignature(out_addr_bits(cfg), 32))
        The re-encoder's reads; its ``en`` gives it the output memory's address.
    """

    def __init__(self, cfg: Config):
        self.cfg = cfg
        P, CW = cfg.pes, chunk_bits(cfg.scan_width)
        act = WritePortSignature(addr_bits(cfg.act_mem_chunks), CW)
        out_rd = ReadPortSignature(out_addr_bits(cfg), 32)
        super().__init__({
            "host": Out(HostSignature()), "desc": Out(desc_layout()),
            "start": Out(1), "encode": Out(1), "abort": Out(1),
            "busy": In(1), "done": In(1), "error": In(4), "cycles": In(32),
            "pe_busy": In(32).array(P), "pe_macs": In(32).array(P),
            "act_wr": Out(act), "enc_wr": In(act),
            "wgt_wr": Out(WritePortSignature(wgt_addr_bits(cfg), wgt_entry_layout(cfg))
                          ).array(P),
            "wval_wr": Out(WritePortSignature(wval_addr_bits(cfg), signed(8))).array(P),
            "kmap_wr": Out(WritePortSignature(addr_bits(P * fmax_slots(cfg)),
                                              kmap_bits(cfg))),
            "mult_wr": Out(WritePortSignature(addr_bits(cfg.max_filters), signed(16))),
            "shift_wr": Out(WritePortSignature(addr_bits(cfg.max_filters), 6)),
            "bias_wr": Out(WritePortSignature(addr_bits(cfg.max_filters), signed(32))),
            "out_rd": Out(out_rd), "enc_rd": In(out_rd),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, host = self.cfg, self.host
        P, S = cfg.pes, cfg.scan_width
        NW, WB = entry_words("ACT", cfg), chunk_word_bits(cfg)
        NWW = entry_words("WGT", cfg)
        # the bus register, with the address decoded on the way in
        hb_addr, hb_wdata = Signal(32), Signal(32)
        hb_we, hb_re = Signal(), Signal()
        m.d.sync += [hb_addr.eq(host.addr), hb_wdata.eq(host.wdata), hb_we.eq(host.we),
                     hb_re.eq(host.re)]
        hb_reg = {n: Signal(name=f"hb_reg_{n.lower()}") for n in DESC + ("CTRL",)}
        regions = {g.name: g.base for g in REGIONS if not g.per_pe}
        regions.update({f"WGT{p}": REGION["WGT"] + p for p in range(P)})
        regions.update({f"WVAL{p}": REGION["WVAL"] + p for p in range(P)})
        hb_rg = {n: Signal(name=f"hb_rg_{n.lower()}") for n in regions}
        hb_wsel = Signal(NW)               # one-hot word of a chunk
        m.d.sync += [hb_reg[n].eq(host.addr == REG[n]) for n in hb_reg]
        m.d.sync += [hb_rg[n].eq(host.addr[REGION_SHIFT:32] == v) for n, v in regions.items()]
        m.d.sync += [hb_wsel[w].eq(host.addr[0:WB] == w) for w in range(NW)]
        offset = hb_addr[0:REGION_SHIFT]
        entry = hb_addr[WB:REGION_SHIFT]

        # descriptor and commands
        desc = {n: self.desc[n.lower()] for n in DESC}
        ctrl = hb_we & hb_reg["CTRL"] & ~self.busy
        with m.If(hb_we & ~self.busy):
            for name in DESC:
                with m.If(hb_reg[name]):
                    m.d.sync += desc[name].eq(hb_wdata)
        m.d.comb += [self.start.eq(ctrl & hb_wdata[0]),
                     self.encode.eq(ctrl & ~hb_wdata[0] & hb_wdata[1]),
                     self.abort.eq(hb_we & hb_reg["CTRL"] & hb_wdata[2] & self.busy)]
        # writes ignored while busy, counted since the last start or encode taken
        ignored = Signal(32)
        with m.If(self.start | self.encode):
            m.d.sync += ignored.eq(0)
        with m.Elif(hb_we & self.busy & ~self.abort):
            m.d.sync += ignored.eq(ignored + 1)

        # chunk staging; memory writes
        staging = Signal(chunk_bits(S))
        commit, commit_w = Signal(), Signal()
        chunk_word = Signal(chunk_word_layout(S))
        m.d.comb += chunk_word.eq(staging)
        for w in range(NW):
            with m.If(hb_wsel[w]):
                lo, hi = 32 * w, min(32 * w + 32, len(staging))
                m.d.comb += chunk_word.as_value()[lo:hi].eq(hb_wdata[0:hi - lo])
        with m.If(hb_we & ~hb_rg["CSR"] & ~self.busy):
            m.d.sync += staging.eq(chunk_word)
            m.d.comb += [commit.eq(hb_wsel[NW - 1]),      # an activation chunk's last word
                         commit_w.eq(hb_wsel[NWW - 1])]   # a weight chunk's last word
        host_wr = hb_we & ~self.busy
        enc = self.enc_wr
        m.d.comb += [
            self.act_wr.addr.eq(Mux(enc.en, enc.addr, entry)),
            self.act_wr.data.eq(Mux(enc.en, enc.data, chunk_word)),
            self.act_wr.en.eq(enc.en | (commit & hb_rg["ACT"])),
            self.kmap_wr.addr.eq(offset), self.kmap_wr.data.eq(hb_wdata),
            self.kmap_wr.en.eq(host_wr & hb_rg["KMAP"]),
            self.mult_wr.addr.eq(offset), self.mult_wr.data.eq(hb_wdata[0:16]),
            self.mult_wr.en.eq(host_wr & hb_rg["MULT"]),
            self.shift_wr.addr.eq(offset), self.shift_wr.data.eq(hb_wdata[0:6]),
            self.shift_wr.en.eq(host_wr & hb_rg["SHIFT"]),
            self.bias_wr.addr.eq(offset), self.bias_wr.data.eq(hb_wdata),
            self.bias_wr.en.eq(host_wr & hb_rg["BIAS"]),
        ]
        wbits = wgt_entry_layout(cfg).size
        for p in range(P):
            m.d.comb += [self.wgt_wr[p].addr.eq(entry),
                         self.wgt_wr[p].data.eq(chunk_word.as_value()[0:wbits]),
                         self.wgt_wr[p].en.eq(commit_w & hb_rg[f"WGT{p}"]),
                         self.wval_wr[p].addr.eq(offset), self.wval_wr[p].data.eq(hb_wdata[0:8]),
                         self.wval_wr[p].en.eq(host_wr & hb_rg[f"WVAL{p}"])]

        # reads
        sources = {"STATUS": _fields("STATUS", {"busy": self.busy, "done": self.done,
                                                "error": self.error}),
                   "CYCLES": self.cycles, "MACS": _sum_tree(m, self.pe_macs),
                   "IGNORED": ignored, "PE_BUSY": self.pe_busy, "PE_MACS": self.pe_macs}
        sources.update(desc)
        entries = []
        for r in REGISTERS:
            if "R" in r.access:
                entries += ([(r.addr + p, sources[r.name][p]) for p in range(P)] if r.per_pe
                            else [(r.addr, sources[r.name])])
        assert max(a for a, _ in entries) < CSR_SPAN
        span_bits = (CSR_SPAN - 1).bit_length()
        low, high_zero = offset[0:span_bits], offset[span_bits:REGION_SHIFT] == 0
        # the AND-OR read mux in two registered steps: groups of CSR_GROUP registers, then
        # the groups (no register drives a wide OR across the die in one cycle)
        groups = [entries[i:i + CSR_GROUP] for i in range(0, len(entries), CSR_GROUP)]
        csr_g = [Signal(32, name=f"csr_g{i}") for i in range(len(groups))]
        for sig, grp in zip(csr_g, groups, strict=True):
            m.d.sync += sig.eq(functools.reduce(operator.or_,
                                                [Mux(low == a, v, 0) for a, v in grp]))
        high_zero1 = Signal()
        m.d.sync += high_zero1.eq(high_zero)
        csr_q = Signal(32)
        m.d.sync += csr_q.eq(Mux(high_zero1, functools.reduce(operator.or_, csr_g), 0))
        oa = out_addr_bits(cfg)
        m.d.comb += [self.out_rd.addr.eq(Mux(self.enc_rd.en, self.enc_rd.addr,
                                             host.addr[0:oa])),
                     self.out_rd.en.eq(1), self.enc_rd.data.eq(self.out_rd.data)]
        rv1, rd_out1, rd_out = Signal(), Signal(), Signal()   # rd_out: of the output memory
        m.d.sync += [rv1.eq(hb_re), rd_out1.eq(hb_rg["OUT"]),
                     host.rvalid.eq(rv1), rd_out.eq(rd_out1)]
        m.d.comb += host.rdata.eq(Mux(rd_out, self.out_rd.data, csr_q))
        return m
