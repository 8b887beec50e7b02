"""The channel-sparse convolution engine: P double-sparse PEs behind on-chip memories.

Mapping: activations broadcast, one filter per PE at a time. A sequencer walks every
output pixel, every filter slot j, every tap (r, s) of the R x S window that falls inside
the image (taps in the zero padding are skipped, not multiplied) and every chunk c of the
C channels. For each step it reads one activation chunk (channels-last, compressed per
pixel) and pushes it, with the address of the matching weight chunk, into every PE's
queue. Each PE reads its own weight memory (weights compressed per (k, r, s) along C) at
that address, so PE p accumulates filter ``slots[p][j]`` over the window; the queues
(``queue_depth`` deep) let a PE with a dense filter fall behind without stalling the others
until its queue fills. Results are collected one per cycle, requantized per output channel
(multiplier, shift with round-half-up, optional ReLU, clamp to int8) or kept raw (int32),
and written to the output memory at ``k * Ho * Wo + pixel``.

Host port: a word-addressed bus (``docs/engine.md`` has the register and memory map).
"""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ...sim.config import Config
from ..fifo import FeedQueue
from ..mem import BankedMemory, read_port_no_rw, write_port_reg
from ..pe import PE

__all__ = ["Engine", "EngineError", "HostSignature", "READ_LATENCY", "REG", "REGION"]


class EngineError:
    OK = 0
    BAD_SHAPE = 1    # a zero size, R or S > 7, stride not 1 or 2, pad >= R or S
    BAD_DESC = 2     # NCH, F, HO or WO disagree with the other fields
    TOO_BIG = 3      # the layer does not fit the memories or the config limits
    PE_FAULT = 4     # a PE flagged a result (cannot happen with a valid descriptor)
    NOT_INT8 = 5     # ENCODE asked while the outputs are raw int32

    MEANING = {
        0: "no error",
        1: "bad shape: a zero size, R or S above 7, stride not 1 or 2, or pad >= R or S",
        2: "bad descriptor: NCH, F, HO or WO disagree with C, K, H, W, R, S, stride, pad",
        3: "the layer does not fit the engine's memories or limits",
        4: "a PE flagged a result (weight and activation streams out of step)",
        5: "encode needs requantized int8 outputs (MODE bit 0 clear)",
    }


# CSR word addresses (region 0)
REG = {"CTRL": 0x00, "STATUS": 0x01, "C": 0x02, "H": 0x03, "W": 0x04, "K": 0x05, "R": 0x06,
       "S": 0x07, "STRIDE": 0x08, "PAD": 0x09, "F": 0x0A, "NCH": 0x0B, "HO": 0x0C,
       "WO": 0x0D, "MODE": 0x0E, "CYCLES": 0x10, "MACS": 0x11, "PE_BUSY": 0x20,
       "PE_MACS": 0x60}
# regions: address bits 31..24
REGION = {"CSR": 0, "ACT": 1, "KMAP": 2, "MULT": 3, "SHIFT": 4, "OUT": 5, "WGT": 16}
# a host read's rdata and rvalid come this many cycles after its re (the bus register,
# then the output memory's block RAM, near register and bank register)
READ_LATENCY = 3
DESC = ("C", "H", "W", "K", "R", "S", "STRIDE", "PAD", "F", "NCH", "HO", "WO", "MODE")


def HostSignature() -> wiring.Signature:
    return wiring.Signature({
        "addr": In(32), "wdata": In(32), "we": In(1), "re": In(1),
        "rdata": Out(32), "rvalid": Out(1),
    })


class Engine(wiring.Component):
    """Convolution engine.

    Members
    -------
    host : Out(HostSignature())
        Word bus, registered on entry: a write takes effect one cycle after its cycle; a
        read returns ``rdata`` with ``rvalid`` ``READ_LATENCY`` (3) cycles after ``re``.
        Writes and reads keep their order.
    busy, done : Out(1)
        Mirrors of STATUS bits 0 and 1.
    """

    def __init__(self, cfg: Config | None = None):
        self.cfg = cfg = cfg or Config()
        super().__init__({"host": Out(HostSignature()), "busy": Out(1), "done": Out(1)})

    @property
    def fmax_slots(self) -> int:
        return -(-self.cfg.max_filters // self.cfg.pes)

    def elaborate(self, platform):  # noqa: C901 - one sequencer, kept together
        m = Module()
        cfg = self.cfg
        J, P = cfg.join_width, cfg.pes
        CW = 9 * J                         # chunk word: mask + J value bytes
        NW = -(-CW // 32)                  # host words per chunk
        FM = self.fmax_slots
        wa_bits = (cfg.wgt_mem_chunks - 1).bit_length()
        oa_bits = (cfg.out_mem_words - 1).bit_length()
        kb = cfg.max_filters.bit_length() + 1
        host = self.host

        # ------------------------------------------------------------ memories
        # the activation and output memories are banked with a registered read
        # (rtl/mem.py): a word is selected after the bank registers, not straight out of
        # the block RAMs; every memory write port is registered on its way
        # (`write_port_reg`: a word lands a cycle after its write)
        m.submodules.act_mem = act_mem = BankedMemory(CW, cfg.act_mem_chunks, stages=2)
        wgt_w, wgt_r = [], []
        for p in range(P):
            mem = Memory(shape=CW, depth=cfg.wgt_mem_chunks, init=[])
            m.submodules[f"wgt_mem{p}"] = mem
            wgt_w.append(write_port_reg(m, mem, f"wgt{p}"))
            wgt_r.append(read_port_no_rw(m, mem, f"wgt{p}_rd"))
        m.submodules.kmap_mem = kmap_mem = Memory(shape=kb, depth=P * FM, init=[])
        kmap_w = write_port_reg(m, kmap_mem, "kmap")
        kmap_r = read_port_no_rw(m, kmap_mem, "kmap_rd")
        m.submodules.mult_mem = mult_mem = Memory(shape=signed(16), depth=cfg.max_filters,
                                                  init=[])
        mult_w = write_port_reg(m, mult_mem, "mult")
        mult_r = read_port_no_rw(m, mult_mem, "mult_rd")
        m.submodules.shift_mem = shift_mem = Memory(shape=6, depth=cfg.max_filters, init=[])
        shift_w = write_port_reg(m, shift_mem, "shift")
        shift_r = read_port_no_rw(m, shift_mem, "shift_rd")
        m.submodules.out_mem = out_mem = BankedMemory(32, cfg.out_mem_words, stages=2)

        # ------------------------------------------------------------ CSRs
        d = {n: Signal(32, name=f"d_{n.lower()}") for n in DESC}
        busy = Signal()
        done = Signal()
        error = Signal(4)
        cycles = Signal(32)

        # ------------------------------------------------------------ host writes
        # the host bus is registered on entry (Fmax: every decode path starts at the
        # engine's own flip-flops); writes and reads keep their order, one cycle later
        hb_addr, hb_wdata = Signal(32), Signal(32)
        hb_we, hb_re = Signal(), Signal()
        m.d.sync += [hb_addr.eq(host.addr), hb_wdata.eq(host.wdata), hb_we.eq(host.we),
                     hb_re.eq(host.re)]
        # ... with the address decoded on the way in: one flag per CSR and per region
        hb_reg = {n: Signal(name=f"hb_reg_{n.lower()}") for n in DESC + ("CTRL",)}
        regions = {n: REGION[n] for n in ("CSR", "ACT", "KMAP", "MULT", "SHIFT", "OUT")}
        regions.update({f"WGT{p}": REGION["WGT"] + p for p in range(P)})
        hb_rg = {n: Signal(name=f"hb_rg_{n.lower()}") for n in regions}
        hb_wsel = Signal(NW)              # one-hot word of a chunk
        m.d.sync += [hb_reg[n].eq(host.addr == REG[n]) for n in hb_reg]
        m.d.sync += [hb_rg[n].eq(host.addr[24:32] == v) for n, v in regions.items()]
        m.d.sync += [hb_wsel[w].eq(host.addr[0:3] == w) for w in range(NW)]
        offset = hb_addr[0:24]
        entry = hb_addr[3:24]
        staging = Signal(CW)
        commit = Signal()
        chunk_word = Signal(CW)
        m.d.comb += chunk_word.eq(staging)
        for w in range(NW):
            with m.If(hb_wsel[w]):
                lo, hi = 32 * w, min(32 * w + 32, CW)
                m.d.comb += chunk_word[lo:hi].eq(hb_wdata[0:hi - lo])
        start = Signal()
        enc_start = Signal()
        with m.If(hb_we):
            for name in DESC:
                with m.If(hb_reg[name]):
                    m.d.sync += d[name].eq(hb_wdata)
            with m.If(hb_reg["CTRL"] & hb_wdata[0] & ~busy):
                m.d.comb += start.eq(1)
            with m.Elif(hb_reg["CTRL"] & hb_wdata[1] & ~busy):
                m.d.comb += enc_start.eq(1)
            with m.If(~hb_rg["CSR"] & ~busy):
                m.d.sync += staging.eq(chunk_word)
                m.d.comb += commit.eq(hb_wsel[NW - 1])      # the chunk's last word
        # `busy` rises with a registered start (the cycle after the host's write), so a
        # host polling it right after writing CTRL never sees a stale idle
        m.d.comb += [self.busy.eq(busy | start | enc_start), self.done.eq(done)]
        # the encoder's chunk writes come from registers (enc_act_*)
        enc_act_addr = Signal(32)
        enc_act_data = Signal(CW)
        enc_act_en = Signal()
        host_wr = hb_we & ~busy
        m.d.comb += [
            act_mem.w_addr.eq(Mux(enc_act_en, enc_act_addr, entry)),
            act_mem.w_data.eq(Mux(enc_act_en, enc_act_data, chunk_word)),
            act_mem.w_en.eq(enc_act_en | (commit & hb_rg["ACT"])),
            kmap_w.addr.eq(offset), kmap_w.data.eq(hb_wdata),
            kmap_w.en.eq(host_wr & hb_rg["KMAP"]),
            mult_w.addr.eq(offset), mult_w.data.eq(hb_wdata[0:16]),
            mult_w.en.eq(host_wr & hb_rg["MULT"]),
            shift_w.addr.eq(offset), shift_w.data.eq(hb_wdata[0:6]),
            shift_w.en.eq(host_wr & hb_rg["SHIFT"]),
        ]
        for p in range(P):
            m.d.comb += [wgt_w[p].addr.eq(entry), wgt_w[p].data.eq(chunk_word),
                         wgt_w[p].en.eq(commit & hb_rg[f"WGT{p}"])]

        # ------------------------------------------------------------ PEs and feeders
        pes = []
        entry_layout = data.StructLayout({"a": CW, "waddr": max(1, wa_bits), "last": 1})
        queues = []
        pe_clear = Signal()
        for p in range(P):
            pe = PE(cfg)
            m.submodules[f"pe{p}"] = pe
            q = FeedQueue(entry_layout.size, cfg.queue_depth)
            m.submodules[f"queue{p}"] = q
            pes.append(pe)
            queues.append(q)
            head = data.View(entry_layout, q.r_data)
            # Between the queue and the PE: the weight block RAM's output (`bv`: read last
            # cycle; the activation chunk and `last` registered beside it) is written
            # straight into one of three registers of a circular buffer, which the PE
            # reads. So no logic sits between the block RAM's output and a flip-flop
            # (clock-to-out of a DP16KD is 5.8 ns), and the block RAM is read while the
            # buffer, counting the entry on the RAM's output, will hold at most two
            # (`room`, a flip-flop): its read enable is two flip-flops ANDed and does not
            # wait for the PE's `ready` (Fmax: that route crossed the chip). Three
            # registers let a PE that takes every cycle get a chunk every cycle.
            NB = 3
            bv = Signal(name=f"bv{p}")
            b_a = Signal(CW, name=f"b_a{p}")
            b_last = Signal(name=f"b_last{p}")
            e_w = [Signal(CW, name=f"e{p}_w{i}") for i in range(NB)]
            e_a = [Signal(CW, name=f"e{p}_a{i}") for i in range(NB)]
            e_last = [Signal(name=f"e{p}_last{i}") for i in range(NB)]
            wp = Signal(range(NB), name=f"wp{p}")
            rp = Signal(range(NB), name=f"rp{p}")
            held = Signal(range(NB + 1), name=f"held{p}")
            nonempty = Signal(name=f"nonempty{p}")       # held != 0
            room = Signal(init=1, name=f"room{p}")
            takes = nonempty & pe.w.ready & pe.a.ready
            load = q.r_rdy & room
            held_n = Signal(range(NB + 1), name=f"held_n{p}")
            m.d.comb += held_n.eq(held + bv - takes)
            m.d.sync += [bv.eq(load), held.eq(held_n), nonempty.eq(held_n != 0),
                         room.eq(held_n + load <= NB - 1)]
            m.d.comb += [q.r_en.eq(load), wgt_r[p].addr.eq(head.waddr), wgt_r[p].en.eq(load),
                         pe.clear.eq(pe_clear)]
            with m.If(load):
                m.d.sync += [b_a.eq(head.a), b_last.eq(head.last)]
            with m.If(bv):
                for i in range(NB):
                    with m.If(wp == i):
                        m.d.sync += [e_w[i].eq(wgt_r[p].data), e_a[i].eq(b_a),
                                     e_last[i].eq(b_last)]
                m.d.sync += wp.eq(Mux(wp == NB - 1, 0, wp + 1))
            with m.If(takes):
                m.d.sync += rp.eq(Mux(rp == NB - 1, 0, rp + 1))
            w_word = Array(e_w)[rp]
            a_word = Array(e_a)[rp]
            w_last = Array(e_last)[rp]
            m.d.comb += [
                pe.w.valid.eq(nonempty), pe.a.valid.eq(nonempty),
                pe.w.payload.mask.eq(w_word[0:J]), pe.w.payload.values.eq(w_word[J:CW]),
                pe.w.payload.last.eq(w_last),
                pe.a.payload.mask.eq(a_word[0:J]), pe.a.payload.values.eq(a_word[J:CW]),
                pe.a.payload.last.eq(w_last),
            ]

        # ------------------------------------------------------------ sequencer
        # Step counters of the current pixel, each with a registered "last" flag so that
        # the step logic starts at flip-flops: c (chunk), s and r (tap inside the image),
        # j (filter slot). The pixel walk runs two pixels ahead: G1 holds the coordinates
        # of the pixel after next, G2 the registered tap bounds of the next pixel, `cur`
        # those of the current one. Finishing a pixel moves G2 into `cur`, the bounds of
        # G1 into G2 and G1 on by one pixel (`take`).
        j = Signal(16)
        r, s = Signal(4), Signal(4)
        c = Signal(16)
        last_c, last_s, last_r, last_j = Signal(), Signal(), Signal(), Signal()
        seq_on = Signal()             # the sequencer has a step to issue
        S = d["S"][0:4]
        pad, stride = d["PAD"][0:4], d["STRIDE"][0:2]
        nch, F = d["NCH"][0:16], d["F"][0:16]
        Ww = d["W"][0:16]
        # job constants, free-running registers (the descriptor is settled in SETTLE)
        k_hm1, k_wm1 = Signal(signed(18)), Signal(signed(18))
        k_rm1, k_sm1 = Signal(4), Signal(4)
        k_nch1, k_f1, k_wo1, k_ho1 = Signal(), Signal(), Signal(), Signal()
        m.d.sync += [k_hm1.eq(d["H"][0:16] - 1), k_wm1.eq(Ww - 1),
                     k_rm1.eq(d["R"][0:4] - 1), k_sm1.eq(S - 1),
                     k_nch1.eq(nch == 1), k_f1.eq(F == 1),
                     k_wo1.eq(d["WO"][0:16] == 1), k_ho1.eq(d["HO"][0:16] == 1)]

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
        # G2: the next pixel's origin and tap bounds; cur: the current pixel's
        bnd = data.StructLayout({"ix0": signed(18), "iy0": signed(18), "s_lo": 4, "s_hi": 4,
                                 "r_lo": 4, "r_hi": 4, "s_one": 1, "r_one": 1, "last": 1})
        g2 = Signal(bnd)
        cur = Signal(bnd)
        g1_slo, g1_shi = lo(g1_ix0), hi(g1_limx, k_sm1)
        g1_rlo, g1_rhi = lo(g1_iy0), hi(g1_limy, k_rm1)
        prime = Signal()              # fills G1 / G2 / cur before the first step
        take = Signal()
        iy = (cur.iy0 + r)[0:16]
        ix = (cur.ix0 + s)[0:16]
        step_last = last_r & last_s & last_c
        rs = Signal(8)                    # R * S, set at start

        # address pipeline (Fmax): A = the step, B = products of the pixel and tap indices,
        # B2 = their sums, C = products with NCH, C2 = the chunk addresses, then the
        # activation memory read (s1). Every stage moves on `advance`. Addresses are
        # computed modulo the memory sizes (exact: the descriptor check refuses a layer
        # that does not fit), so the products stay within one DSP each.
        aa_bits = (cfg.act_mem_chunks - 1).bit_length()
        wb = max(1, wa_bits)
        a_v, b_v, b2_v, c_v, c2_v = Signal(), Signal(), Signal(), Signal(), Signal()
        a_iy, a_ix, a_c = Signal(16), Signal(16), Signal(16)
        a_j, a_r, a_s, a_last = Signal(16), Signal(4), Signal(4), Signal()
        b_py, b_px, b_tj, b_tr, b_ts = (Signal(aa_bits), Signal(aa_bits), Signal(wb),
                                        Signal(wb), Signal(4))
        b_c, b_last = Signal(16), Signal()
        b2_pix, b2_tap, b2_c, b2_last = Signal(aa_bits), Signal(wb), Signal(16), Signal()
        c_ap, c_wp, c_c, c_last = Signal(aa_bits), Signal(wb), Signal(16), Signal()
        c_aaddr, c_waddr, c2_last = Signal(aa_bits), Signal(wb), Signal()
        # stage s1: the chunk's address in the block RAM. Stages s2 and s3: the activation
        # chunk in the banks' near registers, then in the bank registers (rtl/mem.py,
        # stages=2). A block RAM's output (5.8 ns clock-to-out) reaches only a register
        # that drives nothing else, so no other load pulls that register away from it; the
        # route across the array to the bank select starts at that register with a whole
        # cycle for itself. With the bank register straight after the block RAM, the
        # placer put it ~40 columns away and the path failed 10 ns (docs/performance.md,
        # sessions 7-8). Stage s4: the chunk once more in a register after the bank
        # select, which drives the routes to the queues, so the bank registers feed only
        # the select. Each stage carries (valid, weight address, last).
        s_st = [(Signal(name=f"s{i}_valid"), Signal(wb, name=f"s{i}_waddr"),
                 Signal(name=f"s{i}_last")) for i in range(1, 5)]
        s4_valid, s4_waddr, s4_last = s_st[-1]
        # each stage takes the one before it (s1 takes stage C2's) on `advance`
        s_moves = [dst.eq(src) for dsts, srcs in zip(s_st, [(c2_v, c_waddr, c2_last)] +
                                                     s_st[:-1], strict=True)
                   for dst, src in zip(dsts, srcs, strict=True)]
        s4_data = Signal(CW, reset_less=True)
        # all queues ready: one flip-flop beside the sequencer, loaded from the queues'
        # w_rdy_next (equal to ANDing their w_rdy, which are flip-flops beside the PEs; the
        # route from the PEs to the sequencer then ends at this register instead of
        # running on through the step logic)
        push_ok = Signal(init=1)
        m.d.sync += push_ok.eq(Cat(*[q.w_rdy_next for q in queues]).all())
        advance = ~s4_valid | push_ok
        # the chunk's address is taken with s1, the near and bank registers load with s2
        # and s3, s4 takes the selected bank's word
        m.d.comb += [act_mem.r_addr.eq(c_aaddr), act_mem.r_en.eq(advance),
                     act_mem.r_en2.eq(advance)]
        for q in queues:
            m.d.comb += [q.w_en.eq(s4_valid & push_ok),
                         q.w_data.eq(Cat(s4_data, s4_waddr, s4_last))]
        # the address products' constant operands as copies of their own (free-running,
        # settled in SETTLE): each DSP block's operands then come from registers that
        # need not sit beside the descriptor registers' other users
        k_wa, k_s = Signal(aa_bits), Signal(4)
        nch_a, nch_w = Signal(aa_bits), Signal(wb)
        m.d.sync += [k_wa.eq(Ww[:aa_bits]), k_s.eq(S), nch_a.eq(nch[:aa_bits]),
                     nch_w.eq(nch[:wb])]
        # The sequencer issues a step into stage Z while `room` (a flip-flop) says Z and its
        # skid register K will not both be full; stage A takes the older of them on
        # `advance`. So the step logic (counters, pixel walk) is enabled by a register
        # beside it, not by push_ok, which is loaded beside the P queues (Fmax: push_ok ->
        # advance -> step flags -> pixel take -> G1 was a 10.7 ns path across the chip).
        step_l = data.StructLayout({"iy": 16, "ix": 16, "c": 16, "j": 16, "r": 4, "s": 4,
                                    "last": 1})
        z_v, k_v = Signal(), Signal()
        z_st, k_st = Signal(step_l), Signal(step_l)
        room = Signal(init=1)
        issue = seq_on & room
        head_st = data.View(step_l, Mux(k_v, k_st, z_st))
        z_taken = advance & ~k_v
        z_left = z_v & ~z_taken
        k_left = k_v & ~advance
        k_next = z_left | k_left
        z_next = issue | (z_left & k_left)
        m.d.sync += [z_v.eq(z_next), k_v.eq(k_next), room.eq(~(z_next & k_next))]
        with m.If(z_left & ~k_left):
            m.d.sync += k_st.eq(z_st)
        with m.If(issue):
            m.d.sync += [z_st.iy.eq(iy), z_st.ix.eq(ix), z_st.c.eq(c), z_st.j.eq(j),
                         z_st.r.eq(r), z_st.s.eq(s), z_st.last.eq(step_last)]
        with m.If(advance):
            m.d.sync += [
                a_v.eq(z_v | k_v), a_iy.eq(head_st.iy), a_ix.eq(head_st.ix),
                a_c.eq(head_st.c), a_j.eq(head_st.j), a_r.eq(head_st.r),
                a_s.eq(head_st.s), a_last.eq(head_st.last),
                b_v.eq(a_v), b_py.eq(a_iy[:aa_bits] * k_wa), b_px.eq(a_ix),
                b_tj.eq(a_j[:wb] * rs), b_tr.eq(a_r * k_s), b_ts.eq(a_s),
                b_c.eq(a_c), b_last.eq(a_last),
                b2_v.eq(b_v), b2_pix.eq(b_py + b_px), b2_tap.eq(b_tj + b_tr + b_ts),
                b2_c.eq(b_c), b2_last.eq(b_last),
                c_v.eq(b2_v), c_ap.eq(b2_pix * nch_a), c_wp.eq(b2_tap * nch_w),
                c_c.eq(b2_c), c_last.eq(b2_last),
                c2_v.eq(c_v), c_aaddr.eq(c_ap + c_c), c_waddr.eq(c_wp + c_c),
                c2_last.eq(c_last),
                *s_moves, s4_data.eq(act_mem.r_data),
            ]
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
        with m.If(take | prime):
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
                             g1_oxl.eq(g1_ox + 2 == d["WO"][0:16])]
            with m.Else():
                m.d.sync += [g1_ox.eq(0), g1_ix0.eq(-pad), g1_limx.eq(k_limx0),
                             g1_oxl.eq(k_wo1),
                             g1_oy.eq(g1_oy + 1), g1_iy0.eq(g1_iy0 + stride),
                             g1_limy.eq(g1_limy - stride),
                             g1_oyl.eq(g1_oy + 2 == d["HO"][0:16])]

        # ------------------------------------------------------------ results
        # Collector, one result a cycle, round-robin over the PEs (the PE after the last
        # one served first), then a pipeline in which every step is a few LUT levels:
        # X selected result, Y filter index (kmap read), Z multiplier and shift (reads),
        # then the split requant product, rounding, a two-step shift, ReLU and clamp.
        npix = Signal(32)
        res_j = [Signal(16, name=f"res_j{p}") for p in range(P)]
        res_pix = [Signal(32, name=f"res_pix{p}") for p in range(P)]
        results = Signal(32)
        total_results = Signal(32)
        # Written as continuous expressions, not comb processes: Icarus does not run an
        # `always @*` block at time 0, so one whose inputs stay constant until the first job
        # (the PEs' o.valid) would leave its outputs X.
        # one-hot grant: rr marks the PE served last, the PEs after it come first; each
        # grant bit is a function of the valid bits and rr only (two LUT levels), and the
        # selected values are an AND-OR of the grants
        # Each PE's results first enter a two-entry buffer beside the collector whose
        # `ready` to the PE is a register (fewer than two entries next cycle): no path
        # runs from one PE's output through the grant and back into a PE in one cycle.
        acc_w = cfg.acc_width
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
            push = pes[p].o.valid & ~cb_n[p][1]
            pop = grant[p]
            n_next = cb_n[p] + push - pop
            # ready: fewer than two entries, straight from the count register
            m.d.comb += pes[p].o.ready.eq(~cb_n[p][1])
            m.d.sync += [cb_n[p].eq(n_next), cb_ne[p].eq(n_next != 0)]
            val_in = pes[p].o.payload.value
            with m.If(pop):
                m.d.sync += cb_head[p].eq(Mux(cb_n[p] == 2, cb_next[p], val_in))
            with m.Elif(push & (cb_n[p] == 0)):
                m.d.sync += cb_head[p].eq(val_in)
            with m.If(push & (cb_n[p] - pop == 1)):
                m.d.sync += cb_next[p].eq(val_in)

        def by_sel(values, sel=grant):
            out = 0
            for p in range(P):
                out = out | Mux(sel[p], values[p], 0)
            return out

        # stage W: the granted result and the grant; stage X: its filter slot and pixel
        # from the per-PE counters, which move on the registered grant
        w_valid = Signal()
        w_acc = Signal(signed(acc_w))
        w_grant = Signal(P)
        m.d.sync += [w_valid.eq(got), w_acc.eq(by_sel(cb_head)), w_grant.eq(grant)]
        res_jl = [Signal(name=f"res_jl{p}") for p in range(P)]    # res_j == F - 1
        for p in range(P):
            with m.If(w_grant[p]):
                with m.If(res_jl[p]):
                    m.d.sync += [res_j[p].eq(0), res_jl[p].eq(k_f1),
                                 res_pix[p].eq(res_pix[p] + 1)]
                with m.Else():
                    m.d.sync += [res_j[p].eq(res_j[p] + 1), res_jl[p].eq(res_j[p] + 2 == F)]
        x_valid = Signal()
        x_acc = Signal(signed(acc_w))
        x_slot = Signal(range(P * FM))
        x_pix = Signal(oa_bits)
        m.d.sync += [x_valid.eq(w_valid), x_acc.eq(w_acc),
                     x_slot.eq(by_sel([p * FM + res_j[p] for p in range(P)], w_grant)),
                     x_pix.eq(by_sel(res_pix, w_grant))]
        m.d.comb += [kmap_r.addr.eq(x_slot), kmap_r.en.eq(1)]
        y_valid, y_acc, y_pix = Signal(), Signal(signed(acc_w)), Signal(oa_bits)
        m.d.sync += [y_valid.eq(x_valid), y_acc.eq(x_acc), y_pix.eq(x_pix)]
        # stage Y2: the filter index registered out of the kmap memory before it
        # addresses the multiplier and shift memories
        y2_valid, y2_acc, y2_pix = Signal(), Signal(signed(acc_w)), Signal(oa_bits)
        kval = Signal(kb)
        m.d.sync += [y2_valid.eq(y_valid), y2_acc.eq(y_acc), y2_pix.eq(y_pix),
                     kval.eq(kmap_r.data)]
        m.d.comb += [mult_r.addr.eq(kval), shift_r.addr.eq(kval), mult_r.en.eq(1),
                     shift_r.en.eq(1)]
        z_valid, z_acc, z_pix, z_k = Signal(), Signal(signed(acc_w)), Signal(oa_bits), Signal(kb)
        m.d.sync += [z_valid.eq(y2_valid), z_acc.eq(y2_acc), z_pix.eq(y2_pix), z_k.eq(kval)]
        # stage Z2: the multiplier and shift registered out of their memories (a block
        # RAM's output straight into a DSP input does not fit a 10 ns cycle)
        z2_valid, z2_acc, z2_pix, z2_k = (Signal(), Signal(signed(acc_w)), Signal(oa_bits),
                                          Signal(kb))
        z_mult, z_shift = Signal(signed(16)), Signal(6)
        m.d.sync += [z2_valid.eq(z_valid), z2_acc.eq(z_acc), z2_pix.eq(z_pix), z2_k.eq(z_k),
                     z_mult.eq(mult_r.data), z_shift.eq(shift_r.data)]
        # stage B: partial products (acc = hi * 2^16 + lo), the rounding term, the address
        # product; stage C: low part + rounding, address; stage D: the full sum
        b_valid, b_keep = Signal(), Signal()
        b_lo = Signal(signed(34))
        b_hi = Signal(signed(acc_w))
        b_rnd = Signal(48)
        b_shift = Signal(6)
        b_acc = Signal(signed(acc_w))
        b_kp = Signal(oa_bits)
        b_pix = Signal(oa_bits)
        m.d.sync += [b_valid.eq(z2_valid), b_keep.eq(z2_k < d["K"]), b_acc.eq(z2_acc),
                     b_lo.eq(z2_acc[0:16] * z_mult),
                     b_hi.eq(z2_acc[16:].as_signed() * z_mult),
                     b_rnd.eq((Const(1, 48) << z_shift) >> 1),    # 2**(shift-1), 0 if 0
                     b_shift.eq(z_shift), b_kp.eq(z2_k * npix[0:oa_bits]), b_pix.eq(z2_pix)]
        c_valid, c_keep = Signal(), Signal()
        c_lo = Signal(signed(49))
        c_hi = Signal(signed(acc_w))
        c_shift = Signal(6)
        c_acc = Signal(signed(acc_w))
        c_addr = Signal(oa_bits)
        m.d.sync += [c_valid.eq(b_valid), c_keep.eq(b_keep), c_acc.eq(b_acc),
                     c_lo.eq(b_lo + b_rnd), c_hi.eq(b_hi), c_shift.eq(b_shift),
                     c_addr.eq(b_kp + b_pix)]
        e_valid, e_keep = Signal(), Signal()
        e_sum = Signal(signed(acc_w + 18))
        e_shift = Signal(6)
        e_acc = Signal(signed(acc_w))
        e_addr = Signal(oa_bits)
        m.d.sync += [e_valid.eq(c_valid), e_keep.eq(c_keep), e_acc.eq(c_acc),
                     e_sum.eq((c_hi << 16) + c_lo), e_shift.eq(c_shift), e_addr.eq(c_addr)]
        # the arithmetic shift in two steps (multiples of 8, then 0..7)
        f_valid, f_keep = Signal(), Signal()
        f_sum = Signal(signed(acc_w + 18))
        f_shift = Signal(3)
        f_acc = Signal(signed(acc_w))
        f_addr = Signal(oa_bits)
        m.d.sync += [f_valid.eq(e_valid), f_keep.eq(e_keep), f_acc.eq(e_acc),
                     f_sum.eq(e_sum >> Cat(Const(0, 3), e_shift[3:6])), f_shift.eq(e_shift[0:3]),
                     f_addr.eq(e_addr)]
        g_valid, g_keep = Signal(), Signal()
        y = Signal(signed(acc_w + 18))
        g_acc = Signal(signed(acc_w))
        g_addr = Signal(oa_bits)
        m.d.sync += [g_valid.eq(f_valid), g_keep.eq(f_keep), g_acc.eq(f_acc),
                     y.eq(f_sum >> f_shift), g_addr.eq(f_addr)]
        # ReLU and the int8 clamp from y's bits, no comparators: y is negative when its
        # sign is set, above 127 when non-negative with any of bits 7.. set, below -128
        # when negative with any of them clear (OR / AND trees, where `y > 127` on the
        # ReLU's output was a 50-bit carry chain behind a LUT: a routed critical path).
        # MODE is copied into registers beside this stage; it is constant during a job.
        raw_r, relu_r = Signal(), Signal()
        m.d.sync += [raw_r.eq(d["MODE"][0]), relu_r.eq(d["MODE"][1])]
        h_valid, h_keep = Signal(), Signal()
        h_data = Signal(32)
        h_addr = Signal(oa_bits)
        y_neg = y[-1]
        y_top = y[7:]
        y8 = Signal(8)
        with m.If(y_neg & relu_r):
            m.d.comb += y8.eq(0)
        with m.Elif(~y_neg & y_top.any()):
            m.d.comb += y8.eq(127)
        with m.Elif(y_neg & ~y_top.all()):
            m.d.comb += y8.eq(0x80)
        with m.Else():
            m.d.comb += y8.eq(y[0:8])
        m.d.sync += [h_valid.eq(g_valid), h_keep.eq(g_keep), h_addr.eq(g_addr),
                     h_data.eq(Mux(raw_r, g_acc, y8.as_signed()))]
        m.d.comb += [out_mem.w_addr.eq(h_addr), out_mem.w_data.eq(h_data),
                     out_mem.w_en.eq(h_valid & h_keep)]
        with m.If(h_valid):
            m.d.sync += results.eq(results + 1)

        # ------------------------------------------------------------ descriptor check
        bad_shape = Signal()
        bad_desc = Signal()
        too_big = Signal()
        # output sizes in registered steps: padded size, minus the kernel, the stride,
        # then the compare (SETTLE covers the steps)
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
        # sizes the layer needs, as free-running product registers (16-bit operands:
        # anything wider is refused by big16), and the three checks registered; CHECK
        # waits SETTLE_CYCLES in SETTLE for them to settle
        v16 = {n: d[n][0:16] for n in DESC}

        def mul_reg(a, b, width, name):
            """a * b with both operands registered before the multiplier and the product
            after it (two cycles): the operand and product registers can sit beside the
            DSP block, so no path runs from the descriptor registers through a DSP block
            and on to its users in one cycle (a routed critical path at 84 MHz)."""
            ra = Signal(len(a), name=f"{name}_a")
            rb = Signal(len(b), name=f"{name}_b")
            out = Signal(width, name=name)
            m.d.sync += [ra.eq(a), rb.eq(b), out.eq(ra * rb)]
            return out

        def mul_wide(a, b, name):
            """a (up to 32 bits) x b (16 bits) in three registered steps: two 16 x 16
            partial products (mul_reg), then their sum (no 32 x 16 product in one cycle)."""
            lo = mul_reg(a[0:16], b, 48, f"{name}_lo")
            hi = mul_reg(a[16:32], b, 48, f"{name}_hi")
            out = Signal(48, name=name)
            m.d.sync += out.eq((hi << 16) + lo)
            return out

        rs_d = mul_reg(d["R"][0:4], d["S"][0:4], 8, "rs_d")
        p_hw = mul_reg(v16["H"], v16["W"], 32, "p_hw")
        p_frs = mul_reg(v16["F"], rs_d, 24, "p_frs")
        p_kho = mul_reg(v16["K"], v16["HO"], 32, "p_kho")
        npix_d = mul_reg(v16["HO"], v16["WO"], 32, "npix_d")
        red_need = mul_reg(v16["C"], rs_d, 24, "red_need")
        act_need = mul_wide(p_hw, v16["NCH"], "act_need")
        wgt_need = mul_wide(p_frs, v16["NCH"], "wgt_need")
        out_need = mul_wide(p_kho, v16["WO"], "out_need")
        total_d = mul_wide(npix_d, v16["F"] * P, "total_d")
        # every term registered on its own, then their OR
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
        for flag, terms in ((bad_shape, shape_terms), (bad_desc, desc_terms),
                            (too_big, big_terms)):
            regs = Signal(len(terms), name=f"{flag.name}_t")
            m.d.sync += [regs.eq(Cat(*terms)), flag.eq(regs.any())]
        any_pe_err = Cat(*[pe.error != 0 for pe in pes]).any()

        # ------------------------------------------------------------ control FSM
        # ------------------------------------------------------------ output re-encoder
        # ENCODE turns the int8 outputs (K, Ho, Wo) into bitmap chunks, channels-last per
        # pixel, written into the activation memory: the next layer (C = K, H = Ho,
        # W = Wo) runs without reloading activations. One output word is read a cycle.
        enc_go = Signal()
        enc_on = Signal()          # issuing reads
        e_pix = Signal(32)
        e_ch = Signal(16)          # channel, running past K to the end of the last chunk
        e_lane = Signal(range(J))
        e_rd = Signal(32)          # out_mem address ch * Npix + pix
        e_npix = Signal(32)
        q_v, q_valid, q_end = Signal(), Signal(), Signal()     # read issued last cycle
        q_lane = Signal(range(J))
        e_mask = Signal(J)
        e_vals = Signal(data.ArrayLayout(8, J))
        e_cnt = Signal(range(J + 1))
        e_addr = Signal(32)
        enc_overflow = Signal()
        enc_finished = Signal()
        chunk_end = e_lane == J - 1
        # e_pix + 1 == e_npix, registered: a pixel takes at least J cycles
        e_pix_last = Signal()
        m.d.sync += e_pix_last.eq(e_pix + 1 == e_npix)
        # e_ch + 1 >= K, registered beside e_ch (Fmax: computed from e_ch, two carry
        # chains fed e_pix's clock enable, 10.6 ns)
        e_ch_end = Signal()
        pixel_end = chunk_end & e_ch_end
        with m.If(enc_go):
            m.d.sync += e_ch_end.eq(d["K"] <= 1)
        with m.Elif(enc_on):
            m.d.sync += e_ch_end.eq(Mux(pixel_end, d["K"] <= 1, e_ch + 2 >= d["K"]))
        with m.If(enc_go):
            m.d.sync += [enc_on.eq(1), e_pix.eq(0), e_ch.eq(0), e_lane.eq(0), e_rd.eq(0),
                         e_npix.eq(d["HO"][0:16] * d["WO"][0:16]), e_addr.eq(0),
                         e_mask.eq(0), e_vals.eq(0), e_cnt.eq(0), q_v.eq(0)]
        with m.Elif(enc_on):
            m.d.sync += [q_v.eq(1), q_valid.eq(e_ch < d["K"]), q_lane.eq(e_lane),
                         q_end.eq(chunk_end), e_lane.eq(Mux(chunk_end, 0, e_lane + 1))]
            with m.If(pixel_end):
                m.d.sync += [e_ch.eq(0), e_pix.eq(e_pix + 1), e_rd.eq(e_pix + 1)]
                with m.If(e_pix_last):
                    m.d.sync += enc_on.eq(0)
            with m.Else():
                m.d.sync += [e_ch.eq(e_ch + 1), e_rd.eq(e_rd + e_npix)]
        with m.Else():
            m.d.sync += q_v.eq(0)
        # the read issued by stage Q passes the output memory's near registers (stage RN)
        # and bank registers (stage RB) and is registered once more after the bank
        # select (stage RQ)
        rn_v, rn_nz, rn_end = Signal(), Signal(), Signal()    # rn_nz: a channel below K
        rn_lane = Signal(range(J))
        rb_v, rb_nz, rb_end = Signal(), Signal(), Signal()
        rb_lane = Signal(range(J))
        rq_v, rq_nz, rq_end = Signal(), Signal(), Signal()
        rq_lane = Signal(range(J))
        val = Signal(8)
        m.d.sync += [rn_v.eq(q_v & ~enc_go), rn_nz.eq(q_valid), rn_end.eq(q_end),
                     rn_lane.eq(q_lane),
                     rb_v.eq(rn_v & ~enc_go), rb_nz.eq(rn_nz), rb_end.eq(rn_end),
                     rb_lane.eq(rn_lane),
                     rq_v.eq(rb_v & ~enc_go), rq_nz.eq(rb_nz), rq_end.eq(rb_end),
                     rq_lane.eq(rb_lane), val.eq(out_mem.r_data[0:8])]
        # data stage
        nz = rq_v & rq_nz & (val != 0)
        new_mask = Signal(J)
        new_vals = Signal(data.ArrayLayout(8, J))
        m.d.comb += [new_mask.eq(e_mask | Mux(nz, Const(1, J) << rq_lane, 0)),
                     new_vals.eq(e_vals)]
        for ln in range(J):
            with m.If(nz & (e_cnt == ln)):
                m.d.comb += new_vals[ln].eq(val)
        m.d.sync += enc_act_en.eq(0)
        with m.If(rq_v):
            with m.If(rq_end):
                m.d.sync += [enc_act_en.eq(e_addr < cfg.act_mem_chunks),
                             enc_act_addr.eq(e_addr), enc_act_data.eq(Cat(new_mask, new_vals))]
                m.d.sync += [e_addr.eq(e_addr + 1), e_mask.eq(0), e_vals.eq(0), e_cnt.eq(0)]
            with m.Else():
                m.d.sync += [e_mask.eq(new_mask), e_vals.eq(new_vals), e_cnt.eq(e_cnt + nz)]
        m.d.comb += [enc_overflow.eq(rq_v & rq_end & (e_addr >= cfg.act_mem_chunks)),
                     enc_finished.eq(~enc_on & ~q_v & ~rn_v & ~rb_v & ~rq_v &
                                         ~enc_act_en)]

        m.d.sync += pe_clear.eq(0)     # registered: a comb FSM output would start out X
        # SETTLE: the descriptor checks' longest chain is 9 registered steps (R*S, F*RS,
        # the wide product's partial products and sum, the terms, their OR); then G1, G2
        # and cur are primed in its last three cycles
        SETTLE_CYCLES = 16
        settle = Signal(range(SETTLE_CYCLES))
        with m.FSM():
            with m.State("IDLE"):
                with m.If(start):
                    m.d.sync += [done.eq(0), error.eq(0), busy.eq(1), settle.eq(0)]
                    m.next = "SETTLE"
                with m.Elif(enc_start):
                    with m.If(d["MODE"][0]):
                        m.d.sync += [done.eq(1), error.eq(EngineError.NOT_INT8)]
                    with m.Else():
                        m.d.sync += [done.eq(0), error.eq(0), busy.eq(1)]
                        m.d.comb += enc_go.eq(1)
                        m.next = "ENCODE"
            with m.State("SETTLE"):
                m.d.sync += settle.eq(settle + 1)
                # G1 <- pixel 0 (the job constants have settled by now), then two moves of
                # the pixel walk: G2 <- pixel 0, then cur <- pixel 0, G2 <- pixel 1
                with m.If(settle == SETTLE_CYCLES - 3):
                    m.d.sync += [g1_ox.eq(0), g1_oy.eq(0), g1_ix0.eq(-pad), g1_iy0.eq(-pad),
                                 g1_limx.eq(k_limx0), g1_limy.eq(k_limy0),
                                 g1_oxl.eq(k_wo1), g1_oyl.eq(k_ho1)]
                m.d.comb += prime.eq(settle >= SETTLE_CYCLES - 2)
                with m.If(settle == SETTLE_CYCLES - 1):
                    m.next = "CHECK"
            with m.State("CHECK"):
                with m.If(bad_shape):
                    m.d.sync += [error.eq(EngineError.BAD_SHAPE), busy.eq(0), done.eq(1)]
                    m.next = "IDLE"
                with m.Elif(bad_desc):
                    m.d.sync += [error.eq(EngineError.BAD_DESC), busy.eq(0), done.eq(1)]
                    m.next = "IDLE"
                with m.Elif(too_big):
                    m.d.sync += [error.eq(EngineError.TOO_BIG), busy.eq(0), done.eq(1)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [
                        pe_clear.eq(1),
                        j.eq(0), c.eq(0), last_j.eq(k_f1), last_c.eq(k_nch1),
                        seq_on.eq(1), cycles.eq(0), results.eq(0),
                        rs.eq(rs_d),
                        npix.eq(npix_d), total_results.eq(total_d),
                    ]
                    for p in range(P):
                        m.d.sync += [res_j[p].eq(0), res_jl[p].eq(k_f1), res_pix[p].eq(0)]
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.sync += cycles.eq(cycles + 1)
                with m.If((results == total_results) & ~seq_on):
                    m.d.sync += [busy.eq(0), done.eq(1),
                                 error.eq(Mux(any_pe_err, EngineError.PE_FAULT, 0))]
                    m.next = "IDLE"
            with m.State("ENCODE"):
                with m.If(enc_overflow):
                    m.d.sync += [busy.eq(0), done.eq(1), error.eq(EngineError.TOO_BIG)]
                    m.next = "IDLE"
                with m.Elif(enc_finished):
                    m.d.sync += [busy.eq(0), done.eq(1)]
                    m.next = "IDLE"

        # ------------------------------------------------------------ host reads
        macs_total = Signal(32)
        m.d.sync += macs_total.eq(sum(pe.macs for pe in pes))
        # AND-OR read select (a shallow tree, no priority chain): every CSR is below 0x80
        entries = [(REG["STATUS"], Cat(busy, done, Const(0, 2), error))]
        entries += [(REG[name], d[name]) for name in DESC]
        entries += [(REG["CYCLES"], cycles), (REG["MACS"], macs_total)]
        for p in range(P):
            entries += [(REG["PE_BUSY"] + p, pes[p].busy_cycles),
                        (REG["PE_MACS"] + p, pes[p].macs)]
        assert max(a for a, _ in entries) < 0x80
        low = offset[0:7]
        high_zero = offset[7:24] == 0
        csr = Signal(32)
        csr_or = 0
        for a, v in entries:
            csr_or = csr_or | Mux(low == a, v, 0)
        m.d.comb += csr.eq(Mux(high_zero, csr_or, 0))
        # a host read's address goes to the output memory in its own cycle (not through
        # the bus register): after its near and bank registers the word shows three
        # cycles after re, and a CSR read is delayed to match (rvalid three cycles after
        # re for every read, so reads keep their order)
        m.d.comb += [out_mem.r_addr.eq(Mux(enc_on, e_rd[0:oa_bits], host.addr[0:oa_bits])),
                     out_mem.r_en.eq(1), out_mem.r_en2.eq(1)]
        rv1, rd_out1, rd_out = Signal(), Signal(), Signal()   # rd_out: of the output memory
        m.d.sync += [rv1.eq(hb_re), rd_out1.eq(hb_rg["OUT"]),
                     host.rvalid.eq(rv1), rd_out.eq(rd_out1)]
        csr_q1, csr_q = Signal(32), Signal(32)
        m.d.sync += [csr_q1.eq(csr), csr_q.eq(csr_q1)]
        m.d.comb += host.rdata.eq(Mux(rd_out, out_mem.r_data, csr_q))
        return m
