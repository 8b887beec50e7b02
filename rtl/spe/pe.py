"""The scan PE: one joined pair in, one match a cycle multiplied, one result per
accumulation out (``docs/architecture.md``, "The chosen engine").

Dataflow::

    i ─► PairQueue ──head──► Extractor ──op──► Address ──ref──► MAC ──res──► ResultBuffer ─► o
         16 pairs,   ◄─pop─  lowest match,     act byte,        weight read,  16 slots
         LUT RAM             max(n, 1)         rank, base +     multiply,     (credit: room)
                             cycles a pair     rank (3 regs)    accumulate        │
                                   ▲                                 │            │
                                   └─────────── room ◄──────────────────────────────┘
                                                         wval_rd (the engine's RAM)

* :class:`~.queue.PairQueue`: pairs in distributed RAM, the head read asynchronously;
  ``i.ready`` is a register (fewer than ``PAIR_QUEUE`` pairs held).
* :class:`~.extract.Extractor`: the lowest remaining match of the head pair each cycle;
  the pair leaves with its last match (a pair without matches costs one cycle). An op that
  ends an accumulation waits for the result buffer's credit (``room``).
* :class:`~.address.Address`: the match's activation byte and its weight's address
  ``base + popcount(wmask & below)``.
* :class:`~.mac.MAC`: weight read (its register right beside the memory), operand
  registers, the product, the accumulator (wraps to ``acc_width``).
* :class:`~.outbuf.ResultBuffer`: ``OUT_SLOTS`` results; ``room`` counts results promised.
* :class:`~.counters.Counters`: ``busy_cycles``, ``macs``.

Nothing after the extractor stalls: the pipeline has no ready chain, and every enable
starts at a flip-flop (``i.ready``, ``head_valid``, ``room``, the stage ``valid`` bits).
With ``i`` always valid and ``o`` always ready, a stream of pairs costs exactly
``sum(max(cnt, 1))`` cycles plus the latency: the last result is valid
``SPE_LATENCY - 1 + sum(max(cnt, 1))`` cycles after the first pair is taken.
"""

from __future__ import annotations

from amaranth import Module, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ...sim.config import Config
from ..mem import ReadPortSignature
from .address import ADDRESS_STAGES, Address
from .counters import Counters
from .extract import EXTRACT_STAGES, Extractor
from .layouts import pair_layout, result_layout, wval_addr_bits
from .mac import MAC, MAC_STAGES
from .outbuf import OUT_DELAY, OUT_SLOTS, ResultBuffer
from .queue import PAIR_QUEUE, QUEUE_DELAY, PairQueue

__all__ = ["SPE", "SPE_LATENCY", "ISSUE_TO_OUT", "PAIR_QUEUE", "OUT_SLOTS"]

# cycles from an op issued by the extractor to its result valid on ``o`` (buffer empty)
ISSUE_TO_OUT = EXTRACT_STAGES + ADDRESS_STAGES + MAC_STAGES + OUT_DELAY
# cycles from a pair taken on ``i`` by an idle PE to its result valid on ``o``, for a pair
# with at most one match that closes an accumulation
SPE_LATENCY = QUEUE_DELAY + ISSUE_TO_OUT

# the credit never throttles the extractor while ``o`` is always ready
assert OUT_SLOTS >= ISSUE_TO_OUT + 1


class SPE(wiring.Component):
    """Scan PE.

    For every match (a set bit ``pos`` of ``andm``) of a pair the product
    ``lanes[pos] * wval[base + popcount(wmask & ((1 << pos) - 1))]`` is added to the
    accumulation; a pair with ``last`` closes it, and its sum (wrapped to ``acc_width``
    bits) leaves on ``o``. Throughput: one match a cycle, ``max(cnt, 1)`` cycles a pair.

    Parameters
    ----------
    cfg : Config
        ``scan_width`` (S), ``acc_width``, ``wval_mem_words``.
    checks : bool
        Add simulation assertions that each register kept for timing (``i.ready``,
        ``head_valid``, ``room``, ``o.valid``) equals the expression it stands for, and
        that the result buffer never overflows (not in Verilog).

    Members
    -------
    i : In(stream.Signature(pair_layout(cfg)))
        Joined pairs; ``ready`` is a flip-flop (room in the pair queue).
    wval_rd : Out(ReadPortSignature(wval_addr_bits(cfg), signed(8)))
        The PE's weight-value memory (an ``rtl.mem.RAM`` outside the PE).
    o : Out(stream.Signature(result_layout(acc_width)))
        One result per accumulation, in order.
    pop : Out(1)
        A pair leaves the pair queue this cycle (for a sender's credit).
    busy : Out(1)
        A pair queued or anything in flight.
    busy_cycles, macs : Out(32)
        Cycles with ``busy``; products performed (one or two cycles behind).
    clear : In(1)
        Zero the counters; wins over the same cycle's events.
    """

    def __init__(self, cfg: Config | None = None, *, checks: bool = False):
        self.cfg = cfg = cfg or Config()
        self.checks = checks
        super().__init__({
            "i": In(stream.Signature(pair_layout(cfg))),
            "wval_rd": Out(ReadPortSignature(wval_addr_bits(cfg), signed(8))),
            "o": Out(stream.Signature(result_layout(cfg.acc_width))),
            "pop": Out(1),
            "busy": Out(1),
            "busy_cycles": Out(32),
            "macs": Out(32),
            "clear": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        m.submodules.queue = queue = PairQueue(cfg, checks=self.checks)
        m.submodules.extract = ext = Extractor(cfg)
        m.submodules.address = addr = Address(cfg)
        m.submodules.mac = mac = MAC(cfg)
        m.submodules.outbuf = out = ResultBuffer(cfg, checks=self.checks)
        m.submodules.counters = counters = Counters()

        wiring.connect(m, wiring.flipped(self.i), queue.i)
        wiring.connect(m, ext.op, addr.op)
        wiring.connect(m, addr.ref, mac.ref)
        wiring.connect(m, mac.wval_rd, wiring.flipped(self.wval_rd))
        wiring.connect(m, mac.res, out.res)
        wiring.connect(m, out.o, wiring.flipped(self.o))
        m.d.comb += [
            ext.head.eq(queue.head), ext.head_valid.eq(queue.head_valid),
            ext.room.eq(out.room), queue.pop.eq(ext.pop), out.issued.eq(ext.close),
            self.pop.eq(ext.pop),
            self.busy.eq(queue.busy | ext.busy | addr.busy | mac.busy | out.busy),
            counters.busy.eq(self.busy), counters.hit.eq(ext.hit),
            counters.clear.eq(self.clear),
            self.busy_cycles.eq(counters.busy_cycles), self.macs.eq(counters.macs),
        ]
        return m
