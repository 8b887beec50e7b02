"""Host side of the convolution engine: golden conv2d, requantization, the scheduler that
assigns filters to PEs, and the memory images plus job descriptor for ``rtl/engine/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..rtl.chunk import pack_chunk, pack_lanes
from ..rtl.engine.layouts import pack_wgt_entry
from .config import Config

__all__ = ["Layer", "conv2d_golden", "im2col", "fold_kernel", "requantize", "schedule", "Job",
           "make_job", "out_shape", "LayerError", "layer_needs", "check_layer", "check_requant",
           "check_bias", "add_bias", "REQUANT_MULT", "REQUANT_SHIFT", "REQUANT_BIAS",
           "requant_params"]


class LayerError(ValueError):
    """A layer the engine cannot run; the message names the bad value."""


@dataclass(frozen=True)
class Layer:
    K: int
    C: int
    R: int
    S: int
    H: int
    W: int
    stride: int = 1
    pad: int = 0

    @property
    def Ho(self) -> int:
        return (self.H + 2 * self.pad - self.R) // self.stride + 1

    @property
    def Wo(self) -> int:
        return (self.W + 2 * self.pad - self.S) // self.stride + 1

    def check(self) -> None:
        for name in ("K", "C", "R", "S", "H", "W"):
            if getattr(self, name) < 1:
                raise LayerError(f"{name} = {getattr(self, name)} must be at least 1")
        if self.R > 7 or self.S > 7:
            raise LayerError(f"kernel {self.R}x{self.S}: R and S must be at most 7")
        if self.stride not in (1, 2):
            raise LayerError(f"stride = {self.stride}: must be 1 or 2")
        if not 0 <= self.pad < min(self.R, self.S):
            raise LayerError(f"pad = {self.pad}: must be 0..{min(self.R, self.S) - 1}")
        if self.Ho < 1 or self.Wo < 1:
            raise LayerError(f"input {self.H}x{self.W} is smaller than the kernel "
                             f"{self.R}x{self.S} with pad {self.pad}")


def out_shape(layer: Layer) -> tuple[int, int, int]:
    return layer.K, layer.Ho, layer.Wo


def im2col(x: np.ndarray, R: int, S: int, stride: int = 1, pad: int = 0
           ) -> tuple[np.ndarray, int, int]:
    """Batched im2col: x (N, C, H, W) -> (cols (N, C*R*S, Ho*Wo), Ho, Wo), zero padding
    explicit; row ``c*R*S + r*S + s`` holds input channel c at kernel tap (r, s)."""
    N, C, H, W = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    Ho = (H + 2 * pad - R) // stride + 1
    Wo = (W + 2 * pad - S) // stride + 1
    cols = np.empty((N, C, R, S, Ho, Wo), x.dtype)
    for r in range(R):
        for s in range(S):
            cols[:, :, r, s] = xp[:, :, r:r + stride * Ho:stride, s:s + stride * Wo:stride]
    return cols.reshape(N, C * R * S, Ho * Wo), Ho, Wo


def conv2d_golden(w: np.ndarray, a: np.ndarray, stride: int = 1, pad: int = 0) -> np.ndarray:
    """int8 (K, C, R, S) x int8 (C, H, W) -> int64 (K, Ho, Wo), exact (im2col + matmul)."""
    K, C, R, S = w.shape
    if a.shape[0] != C:
        raise LayerError(f"weights have C = {C} channels, activations {a.shape[0]}")
    cols, Ho, Wo = im2col(a.astype(np.int64)[None], R, S, stride, pad)
    return (w.reshape(K, -1).astype(np.int64) @ cols[0]).reshape(K, Ho, Wo)


def fold_kernel(w: np.ndarray, a: np.ndarray, stride: int = 1, pad: int = 0
                ) -> tuple[np.ndarray, np.ndarray]:
    """The same convolution as a 1x1 convolution on the im2col view of the input.

    Returns ``w2`` (K, C*R*S, 1, 1) and ``a2`` (C*R*S, Ho, Wo) (padding made explicit as
    zeros) with ``conv2d(w2, a2) == conv2d(w, a, stride, pad)``. The engine compresses along
    channels, so a layer with few input channels (the first layer of a network: C = 1) fills
    a J-channel chunk with C values and is bound by one chunk a cycle; folded, each chunk
    carries up to J of the C*R*S products of an output pixel."""
    K, C, R, S = w.shape
    if a.shape[0] != C:
        raise LayerError(f"weights have C = {C} channels, activations {a.shape[0]}")
    cols, Ho, Wo = im2col(a[None], R, S, stride, pad)
    return w.reshape(K, C * R * S, 1, 1), cols[0].reshape(C * R * S, Ho, Wo)


def add_bias(acc: np.ndarray, bias: np.ndarray | None, acc_width: int = 32) -> np.ndarray:
    """Per output channel k (axis 0): ``acc + bias[k]``, wrapped to ``acc_width`` bits two's
    complement as the engine's accumulator is (``rtl/engine/requant.py``); ``bias`` None
    adds nothing. Returns int64."""
    acc = np.asarray(acc, np.int64)
    if bias is None:
        return acc
    b = np.asarray(bias, np.int64).reshape(-1, *([1] * (acc.ndim - 1)))
    half = 1 << (acc_width - 1)
    return (acc + b + half) % (1 << acc_width) - half


def requantize(acc: np.ndarray, mult: np.ndarray, shift: np.ndarray, relu: bool = True
               ) -> np.ndarray:
    """Per output channel k: ``(acc * mult[k] + 2**(shift[k]-1)) >> shift[k]`` (round half
    up; no rounding term when shift is 0), then ReLU if asked, then clamp to int8."""
    acc = np.asarray(acc, np.int64)
    m = np.asarray(mult, np.int64).reshape(-1, *([1] * (acc.ndim - 1)))
    sh = np.asarray(shift, np.int64).reshape(-1, *([1] * (acc.ndim - 1)))
    rnd = np.where(sh > 0, np.left_shift(1, np.maximum(sh - 1, 0)), 0)
    y = (acc * m + rnd) >> sh
    if relu:
        y = np.maximum(y, 0)
    return np.clip(y, -128, 127).astype(np.int8)


def schedule(w: np.ndarray, pes: int, balance: bool = True, lanes: int = 1
             ) -> list[list[int]]:
    """Assign filters to PEs: ``slots[p]`` lists PE p's filters in the order it runs them.

    Every PE gets ``ceil(K / P)`` slots (a missing filter is padded by the engine with an
    empty one). With ``lanes`` output lanes, PE p delivers to lane ``p // (P / lanes)``,
    which stores the filters with ``k mod lanes`` equal to its index, so each lane's
    filters go to its own PEs (``ceil(ceil(K / L) / (P / L)) = ceil(K / P)`` slots still
    suffice). With ``balance``, a lane's filters are taken by falling nonzero count and
    each goes to the lane's PE with the least work so far that still has a free slot
    (greedy LPT); otherwise they are dealt round-robin.
    """
    K = w.shape[0]
    F = -(-K // pes)
    if pes % lanes:
        raise LayerError(f"{lanes} output lanes do not divide {pes} PEs")
    per = pes // lanes
    nnz = np.count_nonzero(w.reshape(K, -1), axis=1)
    slots: list[list[int]] = [[] for _ in range(pes)]
    for ln in range(lanes):
        mine = list(range(ln, K, lanes))
        group = list(range(ln * per, (ln + 1) * per))
        if not balance:
            for i, k in enumerate(mine):
                slots[group[i % per]].append(k)
            continue
        load = {q: 0 for q in group}
        for k in sorted(mine, key=lambda k: (-int(nnz[k]), k)):
            p = min((q for q in group if len(slots[q]) < F), key=lambda q: (load[q], q))
            slots[p].append(k)
            load[p] += int(nnz[k])
    return slots


def _act_words(a: np.ndarray, S: int, dense: bool) -> list[int]:
    """Activation lane chunks of ``a`` (C, H, W): pixel-major, ``ceil(C / S)`` chunks a
    pixel (``rtl/chunk.py:pack_lanes``). ``dense`` sets the mask bit of every one of the C
    channels, zeros included: the engine then multiplies every activation (the dense and
    weight-only baselines run on the same hardware)."""
    C = a.shape[0]
    x = a.astype(np.int8).reshape(C, -1)
    words = []
    for pos in range(x.shape[1]):
        for base in range(0, C, S):
            seg = [int(v) for v in x[base:base + S, pos]]
            words.append(pack_chunk((1 << len(seg)) - 1, seg, S) if dense
                         else pack_lanes(seg, S))
    return words


def _weight_chunks(wk: np.ndarray, S: int, dense: bool) -> list[tuple[int, list[int]]]:
    """(mask, nonzero values in channel order) of every weight chunk of one filter
    ``wk`` (C, R, S): tap-major, ``ceil(C / S)`` chunks a tap. ``dense`` keeps every one
    of the C channels, zeros included."""
    C = wk.shape[0]
    taps = wk.reshape(C, -1).astype(np.int64)
    out = []
    for t in range(taps.shape[1]):
        for base in range(0, C, S):
            seg = taps[base:base + S, t]
            keep = np.ones(len(seg), bool) if dense else seg != 0
            mask = sum(1 << i for i in np.nonzero(keep)[0].tolist())
            out.append((mask, [int(v) for v in seg[keep]]))
    return out


@dataclass
class Job:
    """Everything the host loads before ``start``: memory contents and the descriptor."""

    layer: Layer
    slots: list[list[int]]
    F: int
    nch: int
    act: list[int] = field(default_factory=list)          # one int per activation chunk
    wgt: list[list[int]] = field(default_factory=list)    # per PE, one int per weight chunk
    wval: list[list[int]] = field(default_factory=list)   # per PE, its weight values
    kmap: list[list[int]] = field(default_factory=list)   # per PE, per slot: k or -1
    mult: list[int] = field(default_factory=list)
    shift: list[int] = field(default_factory=list)
    bias: list[int] = field(default_factory=list)          # per output channel, int32
    raw: bool = True
    relu: bool = True

    def descriptor(self) -> dict[str, int]:
        L = self.layer
        return {"C": L.C, "H": L.H, "W": L.W, "K": L.K, "R": L.R, "S": L.S,
                "stride": L.stride, "pad": L.pad, "F": self.F, "nch": self.nch,
                "Ho": L.Ho, "Wo": L.Wo, "raw": int(self.raw), "relu": int(self.relu)}


#: The requantizer's per-channel multiplier (int16) and shift ranges, inclusive
#: (rtl/engine/requant.py: a signed 16-bit MULT and a 6-bit SHIFT memory, 0..47 used).
REQUANT_MULT = (int(np.iinfo(np.int16).min), int(np.iinfo(np.int16).max))
REQUANT_SHIFT = (0, 47)
#: The per-channel bias range (an int32 BIAS memory), inclusive.
REQUANT_BIAS = (int(np.iinfo(np.int32).min), int(np.iinfo(np.int32).max))


def requant_params(M) -> tuple[np.ndarray, np.ndarray]:
    """The engine's ``(mult, shift)`` for real requantization factors ``M`` (one per output
    channel, ``M[k] = s_in * s_w[k] / s_out``): ``mult = floor(M * 2**shift + 1/2)`` with
    the largest ``shift`` in :data:`REQUANT_SHIFT` such that ``mult`` fits
    :data:`REQUANT_MULT`.

    Error bound: for ``2**-33 <= |M| < 32767.5`` the shift leaves ``|mult| >= 2**14``, so
    ``|mult / 2**shift - M| <= 2**-(shift+1) <= |M| * 2**-15``; an accumulator ``acc`` then
    lands within ``|acc * M| * 2**-15`` of its exact scaled value before the engine's
    round-half-up (for an int8 result, ``|acc * M| < 128``: under 0.004 LSB). Smaller
    ``|M|`` gives shift 47 and an absolute error under ``|acc| * 2**-48``. Raises
    ``ValueError`` naming the channel and value for a factor that is not finite or is too
    large for shift 0."""
    M = np.atleast_1d(np.asarray(M, np.float64))
    mult = np.zeros(len(M), np.int64)
    shift = np.zeros(len(M), np.int64)
    for k, m in enumerate(M):
        if not np.isfinite(m):
            raise ValueError(f"requant factor {m} of channel {k} is not finite")
        for sh in range(REQUANT_SHIFT[1], REQUANT_SHIFT[0] - 1, -1):
            q = int(np.floor(m * 2.0 ** sh + 0.5))
            if REQUANT_MULT[0] <= q <= REQUANT_MULT[1]:
                break
        else:
            raise ValueError(f"requant factor {m} of channel {k} does not fit int16 even "
                             f"with shift 0")
        mult[k], shift[k] = q, sh
    return mult, shift


def layer_needs(layer: Layer, cfg: Config, w: np.ndarray, balance: bool = True,
                dense_weights: bool = False) -> dict[str, int]:
    """What a layer needs of each config limit (the keys are :class:`Config` fields, the
    limits themselves), from its shape and its filters' nonzero counts only (the limits
    :func:`make_job` checks before it builds anything, and those of the engine's
    descriptor check, ``rtl/engine/check.py``), cheap for any layer size.
    ``wval_mem_words``: the most weight values one PE holds under the schedule
    (``dense_weights``: every value of a filter)."""
    nch = -(-layer.C // cfg.scan_width)
    F = -(-layer.K // cfg.pes)
    L = cfg.out_lanes
    per_filter = (np.full(layer.K, layer.C * layer.R * layer.S) if dense_weights
                  else np.count_nonzero(np.asarray(w).reshape(layer.K, -1), axis=1))
    need = {"max_channels": layer.C, "max_filters": layer.K,
            "max_reduction": layer.C * layer.R * layer.S,
            "act_mem_chunks": layer.H * layer.W * nch,
            "wgt_mem_chunks": F * layer.R * layer.S * nch,
            "out_mem_words": -(-layer.K // L) * L * layer.Ho * layer.Wo}
    if layer.K <= cfg.max_filters:  # the schedule is only defined (and cheap) then
        slots = schedule(np.asarray(w), cfg.pes, balance, L)
        need["wval_mem_words"] = max(int(sum(per_filter[k] for k in sl)) for sl in slots)
    return need


def check_layer(w: np.ndarray, a: np.ndarray, cfg: Config, stride: int = 1, pad: int = 0,
                requant: tuple[np.ndarray, np.ndarray] | None = None, balance: bool = True,
                dense_weights: bool = False, bias: np.ndarray | None = None) -> Layer:
    """Refuse, before any encoding or simulation, a layer the engine cannot run: shapes,
    int8 values, every limit of :func:`layer_needs`, the requantizer's values and the
    bias; raises
    :class:`LayerError` naming the limit, what the layer needs and what the config has.
    Returns the layer."""
    w = np.asarray(w)
    a = np.asarray(a)
    for name, t, nd in (("weights", w, 4), ("activations", a, 3)):
        if t.ndim != nd:
            raise LayerError(f"{name} have shape {t.shape}; expected {nd} dimensions")
        if not np.issubdtype(t.dtype, np.integer) or (t.size and (t.min() < -128
                                                               or t.max() > 127)):
            raise LayerError(f"{name} must be int8 (dtype {t.dtype})")
    K, C, R, S = w.shape
    if a.shape[0] != C:
        raise LayerError(f"weights have C = {C} channels, activations {a.shape[0]}")
    layer = Layer(K, C, R, S, a.shape[1], a.shape[2], stride, pad)
    layer.check()
    for name, v in layer_needs(layer, cfg, w, balance, dense_weights).items():
        if v > getattr(cfg, name):
            raise LayerError(f"layer needs {name} >= {v}; config has {getattr(cfg, name)}")
    if requant is not None:
        check_requant(*requant, K)
    if bias is not None:
        check_bias(bias, K)
    return layer


def check_requant(mult: np.ndarray, shift: np.ndarray, K: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The requantizer's multipliers and shifts as int64 (K,) arrays; refuses (with
    :class:`LayerError` naming the field and the value) a wrong length, a value that is
    not a whole number (fractions, NaN) and one out of :data:`REQUANT_MULT` /
    :data:`REQUANT_SHIFT`."""
    mult, shift = _check_per_filter((("mult", mult, REQUANT_MULT),
                                     ("shift", shift, REQUANT_SHIFT)), K)
    return mult, shift


def check_bias(bias: np.ndarray, K: int) -> np.ndarray:
    """The per-output-channel bias as an int64 (K,) array; refuses (with
    :class:`LayerError` naming the value) what :func:`check_requant` refuses, against
    :data:`REQUANT_BIAS`."""
    return _check_per_filter((("bias", bias, REQUANT_BIAS),), K)[0]


def _check_per_filter(fields, K: int) -> list[np.ndarray]:
    out = []
    for name, v, (lo, hi) in fields:
        v = np.asarray(v)
        if v.ndim > 1 or v.size != K:
            raise LayerError(f"{name} has shape {v.shape}; expected ({K},), one value for "
                             f"each of the K = {K} filters")
        v = v.reshape(-1)
        if v.dtype.kind not in "iuf":
            raise LayerError(f"{name} has dtype {v.dtype}; expected integers")
        if v.dtype.kind == "f":
            with np.errstate(invalid="ignore"):
                bad = np.flatnonzero(~np.isfinite(v) | (v != np.round(v)))
            if len(bad):
                i = int(bad[0])
                raise LayerError(f"{name}[{i}] = {v[i].item()!r}: not a whole number")
        bad = np.flatnonzero((v < lo) | (v > hi))
        if len(bad):
            i = int(bad[0])
            raise LayerError(f"{name}[{i}] = {v[i].item()!r}: out of range {lo}..{hi}")
        out.append(v.astype(np.int64))
    return out


def make_job(w: np.ndarray, a: np.ndarray, cfg: Config, stride: int = 1, pad: int = 0,
             requant: tuple[np.ndarray, np.ndarray] | None = None, relu: bool = True,
             balance: bool = True, dense_weights: bool = False,
             dense_acts: bool = False, bias: np.ndarray | None = None) -> Job:
    """Check a layer against the config and build its memory images.

    ``bias`` (K int32 values, or None for none) is added to every accumulator of its
    output channel before requantization, and in raw mode.

    ``dense_weights`` / ``dense_acts`` store that operand with every mask bit set (zeros
    kept as values), so the same engine runs as a weight-only sparse (``dense_acts``) or a
    dense (both) baseline; the results are the same, only the work changes."""
    w = np.asarray(w)
    a = np.asarray(a)
    layer = check_layer(w, a, cfg, stride, pad, requant, balance, dense_weights, bias)
    K, C, R, S = w.shape
    SW, P = cfg.scan_width, cfg.pes
    nch = -(-C // SW)
    F = -(-K // P)
    slots = schedule(w, P, balance, cfg.out_lanes)
    job = Job(layer, slots, F, nch, raw=requant is None, relu=relu)
    job.act = _act_words(a, SW, dense_acts)
    for p in range(P):
        entries: list[int] = []
        values: list[int] = []
        for j in range(F):
            if j < len(slots[p]):
                chunks = _weight_chunks(w[slots[p][j]], SW, dense_weights)
            else:
                chunks = [(0, [])] * (R * S * nch)
            for mask, vals in chunks:
                entries.append((mask, len(values)))
                values += vals
        assert len(values) <= cfg.wval_mem_words, "layer_needs undercounts weight values"
        job.wgt.append([pack_wgt_entry(mk, min(b, cfg.wval_mem_words - 1), cfg)
                        for mk, b in entries])
        job.wval.append(values)
        job.kmap.append([slots[p][j] if j < len(slots[p]) else -1 for j in range(F)])
    if requant is not None:
        mult, shift = check_requant(*requant, K)
        job.mult, job.shift = [int(v) for v in mult], [int(v) for v in shift]
    else:
        job.mult, job.shift = [1] * K, [0] * K
    job.bias = [0] * K if bias is None else [int(v) for v in check_bias(bias, K)]
    return job
