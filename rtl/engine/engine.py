"""The channel-sparse convolution engine: P double-sparse PEs behind on-chip memories.

Mapping: activations broadcast, one filter per PE at a time. The sequencer walks every
output pixel, every filter slot j, every tap (r, s) inside the image and every chunk c of
the C channels; the address pipeline reads one activation chunk a step and the broadcast
pushes it, with the address of the matching weight chunk, into every PE's queue. Each
PE's feeder reads the PE's weight memory at that address, so PE p accumulates filter
``slots[p][j]`` over the window. The collector takes one result a cycle, the requantizer
writes it to the output memory at ``k * Ho * Wo + pixel``, and the re-encoder turns int8
outputs back into activation chunks for the next layer. ``docs/engine.md`` has the
dataflow diagram and the register map (``regmap.py``).
"""

from __future__ import annotations

from amaranth import Module, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from ...sim.config import Config
from ..chunk import chunk_bits
from ..mem import RAM, BankedMemory
from ..spe import SPE
from .address import AddressPipeline
from .broadcast import Broadcast
from .check import DescriptorCheck
from .collector import ResultCollector
from .control import Control
from .encoder import ReEncoder
from .feeder import Feeder
from .host import HostPort
from .layouts import fmax_slots, kmap_bits, wgt_entry_layout
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
        m.submodules.out_mem = out_mem = BankedMemory(32, cfg.out_mem_words, stages=2)
        wgt_mem = [RAM(wgt_entry_layout(cfg), cfg.wgt_mem_chunks) for _ in range(P)]
        wval_mem = [RAM(signed(8), cfg.wval_mem_words) for _ in range(P)]
        for p in range(P):
            m.submodules[f"wgt_mem{p}"] = wgt_mem[p]
            m.submodules[f"wval_mem{p}"] = wval_mem[p]
        m.submodules.kmap_mem = kmap_mem = RAM(kmap_bits(cfg), P * fmax_slots(cfg))
        m.submodules.mult_mem = mult_mem = RAM(signed(16), cfg.max_filters)
        m.submodules.shift_mem = shift_mem = RAM(6, cfg.max_filters)

        # components
        m.submodules.host = host = HostPort(cfg)
        m.submodules.check = check = DescriptorCheck(cfg)
        m.submodules.control = ctl = Control()
        m.submodules.sequencer = seq = Sequencer()
        m.submodules.address = addr = AddressPipeline(cfg)
        m.submodules.broadcast = bcast = Broadcast(cfg)
        feeders = [Feeder(cfg) for _ in range(P)]
        pes = [SPE(cfg) for _ in range(P)]
        for p in range(P):
            m.submodules[f"feeder{p}"] = feeders[p]
            m.submodules[f"pe{p}"] = pes[p]
        m.submodules.collector = coll = ResultCollector(cfg)
        m.submodules.requant = rq = Requantizer(cfg)
        m.submodules.encoder = enc = ReEncoder(cfg)

        # host side
        wiring.connect(m, wiring.flipped(self.host), host.host)
        wiring.connect(m, host.act_wr, act_mem.w)
        wiring.connect(m, host.kmap_wr, kmap_mem.w)
        wiring.connect(m, host.mult_wr, mult_mem.w)
        wiring.connect(m, host.shift_wr, shift_mem.w)
        wiring.connect(m, host.out_rd, out_mem.r)
        wiring.connect(m, enc.act_wr, host.enc_wr)
        wiring.connect(m, enc.out_rd, host.enc_rd)
        desc = host.desc
        m.d.comb += [check.desc.eq(desc), seq.desc.eq(desc), addr.desc.eq(desc),
                     coll.desc.eq(desc), rq.desc.eq(desc), enc.desc.eq(desc)]

        # control
        m.d.comb += [
            ctl.start.eq(host.start), ctl.encode.eq(host.encode), ctl.raw.eq(desc.mode[0]),
            ctl.bad_shape.eq(check.bad_shape), ctl.bad_desc.eq(check.bad_desc),
            ctl.too_big.eq(check.too_big), ctl.total.eq(check.total),
            ctl.seq_running.eq(seq.running), ctl.retired.eq(rq.retired),
            ctl.pe_fault.eq(0),
            ctl.enc_overflow.eq(enc.overflow), ctl.enc_finished.eq(enc.finished),
            host.busy.eq(ctl.busy), host.done.eq(ctl.done), host.error.eq(ctl.error),
            host.cycles.eq(ctl.cycles),
            seq.load.eq(ctl.load), seq.prime.eq(ctl.prime), seq.start.eq(ctl.go),
            addr.start.eq(ctl.go), addr.rs.eq(check.rs),
            coll.start.eq(ctl.go), rq.start.eq(ctl.go), rq.npix.eq(check.npix),
            enc.go.eq(ctl.enc_go),
            self.busy.eq(ctl.busy | host.start | host.encode), self.done.eq(ctl.done),
        ]

        # dataflow: steps -> addresses and activation chunks -> queues -> feeders -> PEs
        # -> collector -> requantizer -> output memory
        wiring.connect(m, seq.o, addr.i)
        wiring.connect(m, addr.act_rd, act_mem.r)
        wiring.connect(m, addr.o, bcast.i)
        for p in range(P):
            wiring.connect(m, bcast.o[p], feeders[p].i)
            wiring.connect(m, feeders[p].wgt_rd, wgt_mem[p].r)
            wiring.connect(m, feeders[p].o, pes[p].i)
            wiring.connect(m, pes[p].wval_rd, wval_mem[p].r)
            wiring.connect(m, pes[p].o, coll.i[p])
            wiring.connect(m, host.wgt_wr[p], wgt_mem[p].w)
            wiring.connect(m, host.wval_wr[p], wval_mem[p].w)
            m.d.comb += [pes[p].clear.eq(ctl.pe_clear), host.pe_busy[p].eq(pes[p].busy_cycles),
                         host.pe_macs[p].eq(pes[p].macs)]
        wiring.connect(m, coll.o, rq.i)
        wiring.connect(m, rq.kmap_rd, kmap_mem.r)
        wiring.connect(m, rq.mult_rd, mult_mem.r)
        wiring.connect(m, rq.shift_rd, shift_mem.r)
        wiring.connect(m, rq.out_wr, out_mem.w)
        return m
