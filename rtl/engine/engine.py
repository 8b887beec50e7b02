"""The channel-sparse convolution engine: P scan PEs behind on-chip memories.

Mapping: activations broadcast, one filter per PE at a time. The sequencer walks every
output pixel, every filter slot j, every tap (r, s) inside the image and every chunk c of
the C channels; the address pipeline reads one activation chunk a step and the broadcast
hands it, with the address of the matching weight chunk, to every PE's feeder at once
(when every PE has credit). Each feeder reads its PE's weight memory at that address and
joins the masks; pairs with a match go to the PE, so PE p accumulates filter
``slots[p][j]`` over the window. Each output lane's collector takes one result a cycle,
its requantizer writes it to the lane's bank of the output memory, and the re-encoder
turns int8 outputs back into activation chunks for the next layer. ``docs/engine.md``
has the dataflow diagram and the register map (``regmap.py``).
"""

from __future__ import annotations

from amaranth import Module, signed
from amaranth.hdl import ResetInserter
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from ...sim.config import Config
from ..chunk import chunk_bits
from ..mem import RAM, BankedMemory, LaneMemory
from ..spe import SPE
from .address import AddressPipeline
from .broadcast import Broadcast
from .check import DescriptorCheck
from .collector import ResultCollector
from .control import Control
from .encoder import ReEncoder
from .feeder import Feeder
from .host import HostPort
from .layouts import fmax_slots, kmap_bits, lane_pes, wgt_entry_layout
from .regmap import HostSignature
from .requant import Requantizer
from .sequencer import Sequencer

__all__ = ["Engine"]


class Engine(wiring.Component):
    """Convolution engine.

    Parameters
    ----------
    cfg : Config

    Members
    -------
    host : Out(HostSignature())
        Word bus (``host.py``): a write takes effect one cycle after its cycle; a read
        returns ``rdata`` with ``rvalid`` ``READ_LATENCY`` cycles after ``re``. Writes and
        reads keep their order.
    busy, done : Out(1)
        STATUS bits 0 and 1; ``busy`` rises in the cycle a start command is taken, so a
        host polling it right after writing CTRL never sees a stale idle.
    """

    def __init__(self, cfg: Config | None = None):
        self.cfg = cfg or Config()
        super().__init__({"host": Out(HostSignature()), "busy": Out(1), "done": Out(1)})

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        P, CW = cfg.pes, chunk_bits(cfg.scan_width)

        # memories
        m.submodules.act_mem = act_mem = BankedMemory(CW, cfg.act_mem_chunks, stages=2)
        L, LP = cfg.out_lanes, lane_pes(cfg)
        m.submodules.out_mem = out_mem = LaneMemory(32, cfg.out_mem_words, L, stages=2)
        wgt_mem = [RAM(wgt_entry_layout(cfg), cfg.wgt_mem_chunks) for _ in range(P)]
        wval_mem = [RAM(signed(8), cfg.wval_mem_words) for _ in range(P)]
        for p in range(P):
            m.submodules[f"wgt_mem{p}"] = wgt_mem[p]
            m.submodules[f"wval_mem{p}"] = wval_mem[p]
        # the requantizers' tables, one copy a lane (the host writes every copy)
        kmap_mem = [RAM(kmap_bits(cfg), P * fmax_slots(cfg)) for _ in range(L)]
        mult_mem = [RAM(signed(16), cfg.max_filters) for _ in range(L)]
        shift_mem = [RAM(6, cfg.max_filters) for _ in range(L)]
        bias_mem = [RAM(signed(32), cfg.max_filters) for _ in range(L)]
        for ln in range(L):
            m.submodules[f"kmap_mem{ln}"] = kmap_mem[ln]
            m.submodules[f"mult_mem{ln}"] = mult_mem[ln]
            m.submodules[f"shift_mem{ln}"] = shift_mem[ln]
            m.submodules[f"bias_mem{ln}"] = bias_mem[ln]

        # components
        m.submodules.host = host = HostPort(cfg)
        m.submodules.check = check = DescriptorCheck(cfg)
        m.submodules.control = ctl = Control()
        # the datapath: reset by an abort (``ctl.flush``) as by the engine's reset
        flushed = ResetInserter(ctl.flush)
        seq = Sequencer()
        addr = AddressPipeline(cfg)
        bcast = Broadcast(cfg)
        feeders = [Feeder(cfg) for _ in range(P)]
        pes = [SPE(cfg) for _ in range(P)]
        colls = [ResultCollector(cfg, first=ln * LP) for ln in range(L)]
        rqs = [Requantizer(cfg) for _ in range(L)]
        enc = ReEncoder(cfg)
        m.submodules.sequencer = flushed(seq)
        m.submodules.address = flushed(addr)
        m.submodules.broadcast = flushed(bcast)
        for p in range(P):
            m.submodules[f"feeder{p}"] = flushed(feeders[p])
            m.submodules[f"pe{p}"] = flushed(pes[p])
        for ln in range(L):
            m.submodules[f"collector{ln}"] = flushed(colls[ln])
            m.submodules[f"requant{ln}"] = flushed(rqs[ln])
        m.submodules.encoder = flushed(enc)

        # host side
        wiring.connect(m, wiring.flipped(self.host), host.host)
        wiring.connect(m, host.act_wr, act_mem.w)
        for ln in range(L):
            for port, mem in ((host.kmap_wr, kmap_mem[ln]), (host.mult_wr, mult_mem[ln]),
                              (host.shift_wr, shift_mem[ln]), (host.bias_wr, bias_mem[ln])):
                m.d.comb += [mem.w.addr.eq(port.addr), mem.w.data.eq(port.data),
                             mem.w.en.eq(port.en)]
        wiring.connect(m, host.out_rd, out_mem.r)
        wiring.connect(m, enc.act_wr, host.enc_wr)
        wiring.connect(m, enc.out_rd, host.enc_rd)
        desc = host.desc
        m.d.comb += [check.desc.eq(desc), seq.desc.eq(desc), addr.desc.eq(desc),
                     enc.desc.eq(desc)]
        for ln in range(L):
            m.d.comb += [colls[ln].desc.eq(desc), rqs[ln].desc.eq(desc),
                         colls[ln].start.eq(ctl.go), rqs[ln].start.eq(ctl.go),
                         rqs[ln].npix.eq(check.npix)]

        # control
        m.d.comb += [
            ctl.start.eq(host.start), ctl.encode.eq(host.encode), ctl.raw.eq(desc.mode[0]),
            ctl.bad_shape.eq(check.bad_shape), ctl.bad_desc.eq(check.bad_desc),
            ctl.too_big.eq(check.too_big), ctl.total.eq(check.total),
            ctl.seq_running.eq(seq.running), ctl.retired.eq(sum(r.retired for r in rqs)),
            ctl.pe_fault.eq(0),
            ctl.enc_overflow.eq(enc.overflow), ctl.enc_finished.eq(enc.finished),
            ctl.abort.eq(host.abort),
            host.busy.eq(ctl.busy), host.done.eq(ctl.done), host.error.eq(ctl.error),
            host.cycles.eq(ctl.cycles),
            seq.load.eq(ctl.load), seq.prime.eq(ctl.prime), seq.start.eq(ctl.go),
            addr.start.eq(ctl.go), addr.rs.eq(check.rs),
            enc.go.eq(ctl.enc_go),
            self.busy.eq(ctl.busy | host.start | host.encode), self.done.eq(ctl.done),
        ]

        # dataflow: steps -> addresses and activation chunks -> broadcast -> feeders -> PEs
        # -> collectors -> requantizers -> output memory lanes
        wiring.connect(m, seq.o, addr.i)
        wiring.connect(m, addr.act_rd, act_mem.r)
        wiring.connect(m, addr.o, bcast.i)
        for p in range(P):
            m.d.comb += [feeders[p].i.eq(bcast.o[p]), bcast.room[p].eq(feeders[p].room),
                         feeders[p].pe_pop.eq(pes[p].pop)]
            wiring.connect(m, feeders[p].wgt_rd, wgt_mem[p].r)
            wiring.connect(m, feeders[p].o, pes[p].i)
            wiring.connect(m, pes[p].wval_rd, wval_mem[p].r)
            wiring.connect(m, pes[p].o, colls[p // LP].i[p % LP])
            wiring.connect(m, host.wgt_wr[p], wgt_mem[p].w)
            wiring.connect(m, host.wval_wr[p], wval_mem[p].w)
            m.d.comb += [pes[p].clear.eq(ctl.pe_clear), host.pe_busy[p].eq(pes[p].busy_cycles),
                         host.pe_macs[p].eq(pes[p].macs)]
        for ln in range(L):
            wiring.connect(m, colls[ln].o, rqs[ln].i)
            wiring.connect(m, rqs[ln].kmap_rd, kmap_mem[ln].r)
            wiring.connect(m, rqs[ln].mult_rd, mult_mem[ln].r)
            wiring.connect(m, rqs[ln].shift_rd, shift_mem[ln].r)
            wiring.connect(m, rqs[ln].bias_rd, bias_mem[ln].r)
            wiring.connect(m, rqs[ln].out_wr, out_mem.w[ln])
        return m
