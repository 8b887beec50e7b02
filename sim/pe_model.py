"""Golden and cycle models of the double-sparse PE (``rtl/pe/``).

* :func:`pe_golden`: the value of every accumulation (int8 x int8 summed exactly, then
  wrapped to ``acc_width`` two's complement, flagged when longer than ``max_reduction``).
* :func:`pe_cycles`: a cycle-by-cycle model of the PE's pair queue and window select that
  predicts the RTL's cycle count and counters when neither stream stalls.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..rtl.pe import OUT_SLOTS, PE_LATENCY, PE_STAGES, SELECT_TO_OUT
from .config import Config
from .formats import Chunk, to_chunks

__all__ = ["pe_golden", "pe_chunks", "pe_cycles", "PECycles", "PE_LATENCY", "pe_bound",
           "PE_STAGES", "SELECT_TO_OUT", "OUT_SLOTS"]

# The PE's timing constants are defined by the RTL components that determine them
# (rtl/pe/): PE_STAGES registers before the pair queue (the join), PE_LATENCY cycles from a
# chunk pair offered to an idle PE to its result leaving, SELECT_TO_OUT of them from the
# select step to the result in the output register (pick and MAC), OUT_SLOTS results held
# for the consumer before the PE stalls (not modelled here: pe_cycles has no stalls).


def _wrap(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def pe_golden(w_vecs: Sequence[np.ndarray], a_vecs: Sequence[np.ndarray],
              cfg: Config) -> list[tuple[int, bool]]:
    """(value, err) per accumulation: the exact dot product (int64) wrapped to
    ``acc_width`` bits; ``err`` when the vector is longer than ``max_reduction``."""
    out = []
    for w, a in zip(w_vecs, a_vecs, strict=True):
        if len(w) != len(a):
            raise ValueError(f"weight length {len(w)} != activation length {len(a)}")
        s = int(np.dot(np.asarray(w, np.int64), np.asarray(a, np.int64)))
        nch = -(-len(w) // cfg.join_width)
        out.append((_wrap(s, cfg.acc_width), nch > cfg.max_chunks))
    return out


def pe_chunks(vecs: Sequence[np.ndarray], cfg: Config) -> list[Chunk]:
    """The chunk stream of a list of vectors, ``last`` on each vector's final chunk."""
    out: list[Chunk] = []
    for v in vecs:
        out += to_chunks(np.asarray(v, np.int8).reshape(-1), cfg.join_width)
    return out


@dataclass
class PECycles:
    cycles: int          # first pair offered .. last result accepted, inclusive
    macs: int
    idle_slots: int
    empty_pairs: int
    busy_cycles: int
    results: int


def pe_cycles(w_chunks: Sequence[Chunk], a_chunks: Sequence[Chunk], cfg: Config,
              depth: int | None = None) -> PECycles:
    """Cycle model of the PE with no stalls on either input or the output."""
    J, M = cfg.join_width, cfg.multipliers
    D = depth or max(2, cfg.queue_depth)
    pairs = [(w.mask & a.mask, w.last or a.last) for w, a in zip(w_chunks, a_chunks,
                                                                   strict=True)]
    q: list[tuple[int, bool]] = []     # the queue; q[0], q[1] form the window
    # the input, unpack and compress registers (None: empty)
    stage: list[tuple[int, bool] | None] = [None] * PE_STAGES
    done0 = 0
    i = 0
    macs = idle = empty = 0
    busy_in: list[bool] = []  # per cycle: a pair in the input stages or the queue
    acts: list[bool] = []     # per cycle: select stage sent products or a close
    closes: list[int] = []
    while i < len(pairs) or q or any(x is not None for x in stage):
        t = len(busy_in)
        v0 = len(q) >= 1
        nsel = pops = 0
        close = False
        if v0:
            m0, last0 = q[0]
            rem0 = m0 & ~done0
            use1 = len(q) >= 2 and not last0
            m1 = q[1][0] if use1 else 0
            bits = [b for b in range(2 * J) if (rem0 | m1 << J) >> b & 1][:M]
            nsel = len(bits)
            sel = sum(1 << b for b in bits)
            c0 = (rem0 & ~sel) == 0
            c1 = use1 and c0 and (m1 & ~(sel >> J)) == 0
            pops = 2 if c1 else (1 if c0 else 0)
            close = (c0 and last0) or (c1 and q[1][1])
            empty += (c0 and m0 == 0) + (c1 and m1 == 0)
            if c0:
                done0 = 0 if (c1 or not use1) else (sel >> J)
            else:
                done0 |= sel & ((1 << J) - 1)
            idle += M - nsel
        macs += nsel
        busy_in.append(v0 or any(x is not None for x in stage))
        acts.append(nsel > 0 or close)
        if close:
            closes.append(t)
        # a stage moves on when the one after it is empty or moves on (the queue: room)
        free = [len(q) < D]
        for x in reversed(stage):
            free.insert(0, x is None or free[0])
        q = q[pops:]
        if stage[-1] is not None and free[-1]:
            q.append(stage[-1])
        for k in reversed(range(1, PE_STAGES)):
            if free[k]:
                stage[k] = stage[k - 1]
        if free[0]:
            stage[0] = None
            if i < len(pairs):
                stage[0] = pairs[i]
                i += 1
    n = len(busy_in) + SELECT_TO_OUT + 1
    busy_in += [False] * (SELECT_TO_OUT + 1)
    acts += [False] * (SELECT_TO_OUT + 1)
    cl = set(closes)
    busy = sum(busy_in[t] or any(t >= d and acts[t - d] for d in range(1, SELECT_TO_OUT))
               or (t - SELECT_TO_OUT) in cl for t in range(n))
    last = (closes[-1] + SELECT_TO_OUT) if closes else 0
    return PECycles(last + 1, macs, idle, empty, busy, len(closes))


def pe_bound(pairs: int, chunks: int, cfg: Config) -> int:
    """Cycles the design cannot avoid: one chunk pair enters per cycle, ``M`` products
    per cycle, plus the pipeline latency."""
    return max(-(-pairs // cfg.multipliers), chunks) + PE_LATENCY
