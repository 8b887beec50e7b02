"""The double-sparse processing element: inner join of weight and activation chunks.

Dataflow (one chunk pair enters per cycle, up to ``M`` effectual products leave per cycle)::

    w ─┐  Join               Window                   Pick          MAC
       ├─► handshake, ──────► pair queue, ───────────► two-stage ───► M x int8²,
    a ─┘   5 stages    pair   select of    step       operand   ops  Σ + acc, ──► o
           (IN..CP)  ◄──────  M matches               pick           2 slots
                       room   │ stats
                              ▼
                           Counters (busy_cycles, macs, idle_slots, empty_pairs, error)

* :class:`~.join.Join`: a weight chunk and an activation chunk covering the same J
  channels are taken together; the operands of their matching channels (both nonzero) are
  packed in channel order with their count: a pair.
* :class:`~.window.Window`: the pair queue; each cycle the first ``M`` matches of the head
  pair (pair 0) not yet selected, topped up from the next pair (look-ahead of one pair,
  never across the end of an accumulation), so multipliers stay busy across chunk
  boundaries. Up to two pairs leave the queue per cycle, which lets the PE catch up after
  a burst of dense chunks. It grants the join ``room`` for new pairs (flow control by
  credit: the join's stages never stall).
* :class:`~.pick.Pick`: the selected operands, picked out of the queue in two stages.
* :class:`~.mac.MAC`: ``M`` int8 x int8 products, summed into an ``acc_width``
  accumulator; two result slots. The config guarantees ``acc_width`` holds
  ``max_reduction`` products, so a supported accumulation cannot overflow; a longer one is
  flagged (``err``, ``TOO_LONG``) and its value is the two's-complement sum wrapped to
  ``acc_width`` bits, as in the model.
* :class:`~.counters.Counters`: activity counters and the sticky error code.

The scan costs one cycle per chunk pair at most (the queue is filled at one pair a cycle),
so a dot product of ``L`` channels takes at least ``ceil(L / J)`` cycles; with
``J >= 8 M`` (checked by :class:`~doublesparse.sim.config.Config`) that never exceeds
``pairs / M`` once matched pairs make up 1 in 8 channels.
"""

from __future__ import annotations

from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ...sim.config import Config
from ..chunk import chunk_layout
from .counters import Counters
from .join import PE_STAGES, Join, PEError
from .mac import MAC, MAC_STAGES, OUT_SLOTS, result_layout
from .pick import PICK_STAGES, Pick
from .window import QUEUE_DELAY, Window

__all__ = ["PE", "PEError", "result_layout", "PE_STAGES", "PE_LATENCY", "SELECT_TO_OUT",
           "OUT_SLOTS"]

# cycles from a select step to its result in the output register (when it closes an
# accumulation and the output is free)
SELECT_TO_OUT = PICK_STAGES + MAC_STAGES
# cycles from a chunk pair offered to an idle PE to its result leaving, when the pair
# closes an accumulation: the join's stages, the queue, the pick and the MAC
PE_LATENCY = PE_STAGES + QUEUE_DELAY + SELECT_TO_OUT


class PE(wiring.Component):
    """Zero-skipping PE.

    Parameters
    ----------
    cfg : Config
        ``join_width`` (J), ``multipliers`` (M), ``queue_depth`` (pair queue, at least 2),
        ``acc_width``, ``max_reduction``.
    checks : bool
        Add simulation assertions that each register kept for timing (``room``, ``stall``)
        equals the expression it stands for (used by the Amaranth-simulator tests; not in
        Verilog).

    Members
    -------
    w, a : In(stream.Signature(chunk_layout(J)))
        Weight and activation chunks (``end`` is ignored); ``last`` ends an accumulation.
    o : Out(stream.Signature(result_layout(acc_width)))
        One result per accumulation; ``err`` marks a flagged accumulation.
    error : Out(2)
        Sticky code of the last error (:class:`PEError`); cleared by ``clear``.
    busy_cycles, macs, idle_slots, empty_pairs : Out(32)
        Counters: cycles with work in the PE; effectual multiplies; multiplier slots left
        idle in cycles where the queue held a pair; chunk pairs with no matching channel.
    clear : In(1)
        Zero the counters and ``error``.
    """

    def __init__(self, cfg: Config | None = None, *, checks: bool = False):
        self.cfg = cfg = cfg or Config()
        self.checks = checks
        super().__init__({
            "w": In(stream.Signature(chunk_layout(cfg.join_width))),
            "a": In(stream.Signature(chunk_layout(cfg.join_width))),
            "o": Out(stream.Signature(result_layout(cfg.acc_width))),
            "error": Out(2),
            "busy_cycles": Out(32),
            "macs": Out(32),
            "idle_slots": Out(32),
            "empty_pairs": Out(32),
            "clear": In(1),
        })

    @property
    def depth(self) -> int:
        return max(2, self.cfg.queue_depth)

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        m.submodules.join = join = Join(cfg)
        m.submodules.window = window = Window(cfg, depth=self.depth, stages=PE_STAGES,
                                              checks=self.checks)
        m.submodules.pick = pick = Pick(cfg)
        m.submodules.mac = mac = MAC(cfg, checks=self.checks)
        m.submodules.counters = counters = Counters(cfg)

        wiring.connect(m, wiring.flipped(self.w), join.w)
        wiring.connect(m, wiring.flipped(self.a), join.a)
        wiring.connect(m, join.pair, window.pair)
        wiring.connect(m, window.step, pick.step)
        wiring.connect(m, pick.ops, mac.ops)
        wiring.connect(m, mac.o, wiring.flipped(self.o))
        wiring.connect(m, window.stats, counters.stats)
        m.d.comb += [
            join.room.eq(window.room),
            window.taken.eq(join.taken),
            counters.fault.eq(join.fault),
            counters.busy.eq(join.busy | window.busy | pick.busy | mac.busy),
            counters.clear.eq(self.clear),
            self.error.eq(counters.error),
            self.busy_cycles.eq(counters.busy_cycles),
            self.macs.eq(counters.macs),
            self.idle_slots.eq(counters.idle_slots),
            self.empty_pairs.eq(counters.empty_pairs),
        ]
        return m
