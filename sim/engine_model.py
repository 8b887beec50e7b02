"""Performance model of the convolution engine (``rtl/engine/``).

The engine's sequencer broadcasts one activation chunk per cycle into every PE's queue;
a PE's feeder joins it with the PE's weight chunk and drops the pair if it has no match
and does not end an accumulation; the PE takes one match a cycle, so a kept pair with n
matches costs ``max(n, 1)`` cycles, and cannot finish a step before it has arrived; the
broadcast stalls while any PE's queue is full. With ``b[n]`` the cycle chunk step n is
broadcast and ``d[p][n]`` the cycle PE p has finished it::

    b[n]    = max(b[n-1] + 1, max_p d[p][n - Q])      Q: steps a PE can hold
    d[p][n] = max(d[p][n-1] + cost[p][n], b[n] + ARRIVE)
    cost    = matches, or 1 for a kept pair without a match, or 0 for a dropped pair

and the layer takes ``max_p d[p][N-1]`` plus the fixed latencies of the sequencer, the
PE pipeline and the output stage. ``Q`` counts the engine queue, the feeder's stages and
the PE's pair queue. Each output lane collects one result a cycle from its PEs; a PE
stalls while its ``OUT_SLOTS`` result slots all wait.
"""

from __future__ import annotations

import numpy as np

from ..rtl.engine.latency import ARRIVE, ENGINE_LATENCY, OUT_SLOTS, queue_chunks
from .config import Config
from .conv import Job

__all__ = ["engine_steps", "engine_cycles", "ENGINE_LATENCY"]

# from a PE's last select of an accumulation to its result in the output register, as
# the model counts it (the select-to-output cycles are in ENGINE_LATENCY)
PE_TO_OUT = 0

def _popcount(x: np.ndarray) -> np.ndarray:
    return np.bitwise_count(x.astype(np.uint64)).astype(np.int32)


def engine_steps(job: Job, cfg: Config) -> tuple[np.ndarray, np.ndarray]:
    """Effectual pairs of every chunk step, per PE (int array (P, N) in sequencer order),
    and whether each step ends an accumulation (bool array (N,))."""
    L = job.layer
    J, nch, F = cfg.scan_width, job.nch, job.F
    mask = (1 << J) - 1
    am = np.array(job.act, dtype=object)
    am = np.array([int(v) & mask for v in am], np.uint64).reshape(L.H, L.W, nch)
    wm = np.array([[int(v) & mask for v in ws] for ws in job.wgt], np.uint64).reshape(
        cfg.pes, F, L.R, L.S, nch)
    blocks = []
    lasts = []
    for oy in range(L.Ho):
        iy0 = oy * L.stride - L.pad
        r0, r1 = max(0, -iy0), min(L.R - 1, L.H - 1 - iy0)
        for ox in range(L.Wo):
            ix0 = ox * L.stride - L.pad
            s0, s1 = max(0, -ix0), min(L.S - 1, L.W - 1 - ix0)
            A = am[iy0 + r0:iy0 + r1 + 1, ix0 + s0:ix0 + s1 + 1]        # (nr, ns, nch)
            W = wm[:, :, r0:r1 + 1, s0:s1 + 1]                          # (P, F, nr, ns, nch)
            blocks.append(_popcount(W & A[None, None]).reshape(cfg.pes, -1))
            per = A.size
            lasts.append(np.tile(np.arange(per) == per - 1, F))
    return np.concatenate(blocks, axis=1), np.concatenate(lasts)


def engine_cycles(job: Job, cfg: Config,
                  steps: tuple[np.ndarray, np.ndarray] | None = None) -> int:
    """Predicted cycles from ``start`` to ``done`` (the CYCLES register)."""
    pairs, lasts = engine_steps(job, cfg) if steps is None else steps
    P, N = pairs.shape
    Q = queue_chunks(cfg)
    cost = np.where(pairs > 0, pairs, lasts[None, :].astype(pairs.dtype))
    work = cost.astype(float).tolist()
    last = lasts.tolist()
    b_prev = -1.0
    d_prev = [0.0] * P
    hist: list[float] = []            # max_p d[p][n] for the queue constraint
    # cycles the latest OUT_SLOTS results of each PE were collected, oldest first
    collected = [[-1e9] * OUT_SLOTS for _ in range(P)]
    LP = P // cfg.out_lanes
    c_last = [-1e9] * cfg.out_lanes   # each lane's collector takes one result a cycle
    for n in range(N):
        b = b_prev + 1
        if n >= Q:
            b = max(b, hist[n - Q])
        dn = [max(d_prev[p] + work[p][n], b + ARRIVE) for p in range(P)]
        if last[n]:
            dn = [float(np.ceil(x)) for x in dn]
            # results reach the PEs' output slots PE_TO_OUT cycles after the last
            # select; a PE stalls while all its slots still hold uncollected results
            ready = []
            for p in range(P):
                due = dn[p] + PE_TO_OUT
                wait = max(0.0, collected[p][0] + 1 - due)
                dn[p] += wait
                ready.append((due + wait, p))
            for t, p in sorted(ready):
                ln = p // LP
                c_last[ln] = max(c_last[ln] + 1, t)
                collected[p] = collected[p][1:] + [c_last[ln]]
        hist.append(max(dn))
        d_prev = dn
        b_prev = b
    return int(round(max(max(c_last), max(d_prev)))) + ENGINE_LATENCY
