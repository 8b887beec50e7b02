"""Design study: which engine architecture breaks the J / M ceiling at the lowest cost.

Every candidate is modelled on the same random masks (only the masks decide the work), at
the same number of multipliers, with the same mapping of output channels to PEs (greedy LPT
by nonzero count, ``sim/conv.py:schedule``). The models are fluid: a PE finishes a work
item no earlier than it arrives and no earlier than it finished the one before, so for PE
p with arrival times ``a`` and per-item costs ``c``::

    finish_p = max_k (a[k] + c[k] + c[k+1] + ... + c[n-1])

(queues deep enough to decouple the PEs; ``sim/engine_model.py`` models the queue coupling
of the built engine exactly). The layer takes ``max(max_p finish_p, results / out_lanes)``:
the output stage takes ``out_lanes`` results a cycle.

Candidates (``ARCHES``):

- ``scan``: a PE joins one J-channel chunk pair of its own filter with the broadcast
  activation chunk per cycle (``per_cycle`` pairs a cycle), takes up to M matches a cycle
  and at least ``min_cost`` cycles a pair. ``prejoin`` drops pairs whose mask AND is empty
  before they cost a cycle (they still use a broadcast slot).
- ``eie``: the nonzero activations of an output pixel's window are broadcast, ``intake`` a
  cycle, to the PEs of one of ``groups`` pixel groups; a PE walks the compressed column of
  its filters for that (channel, tap) and accumulates into per-filter accumulators, one
  product a cycle per multiplier; a column costs at least ``1 / intake`` cycles.

Area is an estimate per PE and per engine (``Arch.area``), anchored on the synthesized
J = 16, M = 2 PE (5,489 LUT4) and the engine around it; ``docs/architecture.md`` states
every term.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .conv import Layer, schedule

__all__ = ["Arch", "ARCHES", "TARGET_LAYER", "VGG16", "VGG_PIXELS", "GRID", "DSP_BLOCKS", "masks",
           "run_arch", "study", "summary", "CHOSEN"]

#: The layer of the issue's targets: C = K = 64, 3 x 3, 16 x 16, pad 1.
TARGET_LAYER = Layer(K=64, C=64, R=3, S=3, H=16, W=16, stride=1, pad=1)

#: VGG-16 on 224 x 224 with the per-layer densities of Han, Mao and Dally, "Deep
#: Compression" (ICLR 2016), Table 4: weights kept after pruning and input activation
#: density (name, C, K, R, H = W of the input, pool after, d_w, d_a). FC layers are 1 x 1
#: convolutions on a 1 x 1 input.
VGG16 = [
    ("conv1_1", 3, 64, 3, 224, 0.58, 1.00), ("conv1_2", 64, 64, 3, 224, 0.22, 0.53),
    ("conv2_1", 64, 128, 3, 112, 0.34, 0.89), ("conv2_2", 128, 128, 3, 112, 0.36, 0.58),
    ("conv3_1", 128, 256, 3, 56, 0.53, 0.72), ("conv3_2", 256, 256, 3, 56, 0.24, 0.29),
    ("conv3_3", 256, 256, 3, 56, 0.42, 0.43), ("conv4_1", 256, 512, 3, 28, 0.32, 0.32),
    ("conv4_2", 512, 512, 3, 28, 0.27, 0.29), ("conv4_3", 512, 512, 3, 28, 0.34, 0.19),
    ("conv5_1", 512, 512, 3, 14, 0.35, 0.26), ("conv5_2", 512, 512, 3, 14, 0.29, 0.22),
    ("conv5_3", 512, 512, 3, 14, 0.36, 0.38), ("fc6", 25088, 4096, 1, 1, 0.04, 0.42),
    ("fc7", 4096, 4096, 1, 1, 0.04, 0.32), ("fc8", 4096, 1000, 1, 1, 0.23, 0.32),
]

#: (d_w, d_a) points: the product runs from 1 down to 1/64, both ways round.
GRID = [(1.0, 1.0), (0.5, 0.5), (0.25, 0.5), (0.5, 0.25), (0.25, 0.25), (0.25, 0.125),
        (0.125, 0.25), (0.05, 0.5), (0.5, 0.05), (0.25, 0.1), (0.1, 0.25), (0.125, 0.125),
        (1 / 64, 1.0), (1.0, 1 / 64)]

#: Output pixels sampled per VGG-16 layer (conv1_1 over all its 50,176 pixels gives the
#: chosen engine the same utilization, 0.937, as over 64).
VGG_PIXELS = 64

#: ECP5-85F (the ULX3S-85F): LUT4, 18x18 multiplier blocks, DP16KD block RAMs.
DSP_BLOCKS = {"lut4": 83_640, "mult18": 156, "dp16kd": 208}


@dataclass(frozen=True)
class Arch:
    name: str
    kind: str                 # "scan" or "eie"
    J: int = 16               # scan: channels per chunk
    M: int = 1                # multipliers per PE
    per_cycle: int = 1        # scan: chunk pairs broadcast (and examined by a PE) a cycle
    prejoin: bool = False     # scan: empty pairs cost nothing (but the last of an
                              # accumulation, which closes it, costs min_cost)
    min_cost: float = 1.0     # scan: least cycles a non-dropped pair costs
    filters: int = 1          # scan: filters sharing one queued activation chunk (an
                              # entry), one multiplier each (M = filters)
    pool: int = 1             # scan: multipliers that pool their filters' matches: an
                              # entry costs the largest ceil(sum / pool) over the pools
    groups: int = 1           # eie: pixel groups (activation streams)
    intake: int = 1           # eie: activations a PE takes a cycle
    out_lanes: int = 4        # results the output stage takes a cycle
    pe_lut: int = 0           # estimated LUT4 of one PE
    pe_bram: float = 0.0      # DP16KD of one PE (its weight storage)
    shared_lut: int = 0       # estimated LUT4 outside the PEs
    shared_bram: float = 0.0  # DP16KD outside the PEs (activations, outputs)
    lane_lut: int = 1_000     # LUT4 of each output lane beyond the first (requantizer)
    note: str = ""

    def pes(self, mults: int) -> int:
        return mults // self.M

    def area(self, mults: int) -> dict[str, float]:
        p = self.pes(mults)
        lut = p * self.pe_lut + self.shared_lut + (self.out_lanes - 1) * self.lane_lut
        return {"lut4": lut, "bram": p * self.pe_bram + self.shared_bram * self.groups,
                "lut4_per_mult": lut / mults}


# Measured on the built J = 64 M1 + pre-join engine (``--config ulx3s``, 32 PEs, 4 output
# lanes, Yosys and nextpnr's packing on the LFE5U-85F): 93,728 LUT sites, of which each
# PE with its feeder 2.3k (its pair queue 1,187: 165 distributed-RAM cells at 6 LUT sites
# for a 659-bit entry) and about 20k outside the PEs. The scan candidates' LUT4 are
# computed from those parts (``scan_pe_lut``); the J = 16 chunk join is its own synthesis
# (5,489 LUT4 a PE, 8.5k around four of them), EIE an estimate.
QUEUE_LUT_PER_BIT = 1_187 / 659   # the pair queue, per bit of an entry
MULT_LUT = 725                    # per multiplier: activation byte select, rank, address,
                                  # multiply-accumulate
FILTER_LUT = 390                  # per filter of an entry: the feeder's AND, group counts
                                  # and credit, the lowest-match extractor, result slots
POOL_LUT = 120                    # per filter when multipliers pool: the highest-match
                                  # extractor and the product routing
SCAN_SHARED_LUT = 17_000          # outside the PEs, first output lane included (and
                                  # 60 DP16KD: activations, outputs, requantizers)


def scan_pe_lut(J: int, M: int = 1, filters: int = 1, pool: int = 1) -> int:
    """LUT4 of a scan PE with its feeder: the pair queue (an entry holds the J activation
    lanes, the AND mask and weight mask of each filter, or the activation mask once and a
    weight mask a filter, the weight base and match count of each filter, ``last``),
    ``MULT_LUT`` a multiplier, ``FILTER_LUT`` a filter, ``POOL_LUT`` a pooled filter."""
    cnt = math.ceil(math.log2(J + 1))
    masks = 2 * J if filters == 1 else J + filters * J
    entry = 8 * J + masks + filters * (11 + cnt) + 1
    scale = J / 64                       # the select and rank logic grow with J
    return round(entry * QUEUE_LUT_PER_BIT + M * MULT_LUT * scale
                 + filters * (FILTER_LUT * scale + (POOL_LUT if pool > 1 else 0))
                 + (M - filters) * 150)   # M > filters: a second extractor per filter


ARCHES = [
    Arch("chunk join J16 M2 (rtl/pe)", "scan", J=16, M=2, min_cost=0.5, pe_lut=5_489,
         pe_bram=8, shared_lut=8_500, shared_bram=12,
         note="one 16-channel chunk pair a cycle per PE; window tops up across pairs"),
    Arch("pre-join 8 x J16 M2", "scan", J=16, M=2, per_cycle=8, prejoin=True, min_cost=0.5,
         pe_lut=8_500, pe_bram=64, shared_lut=12_000, shared_bram=96,
         note="eight chunk pairs a cycle (128 channels), empty pairs dropped before the join"),
    Arch("M-of-J J32 M1", "scan", J=32, M=1, pe_lut=scan_pe_lut(32), pe_bram=3,
         shared_lut=SCAN_SHARED_LUT, shared_bram=60,
         note="priority-encoded matches, compressed weight values"),
    Arch("M-of-J J64 M2", "scan", J=64, M=2, pe_lut=scan_pe_lut(64, M=2), pe_bram=4,
         shared_lut=SCAN_SHARED_LUT, shared_bram=60,
         note="two matches a cycle from one 64-channel pair"),
    Arch("M-of-J J64 M1", "scan", J=64, M=1, pe_lut=scan_pe_lut(64), pe_bram=4,
         shared_lut=SCAN_SHARED_LUT, shared_bram=60,
         note="one match a cycle from one 64-channel pair; an empty pair costs a cycle"),
    Arch("M-of-J J64 M1 + pre-join", "scan", J=64, M=1, prejoin=True,
         pe_lut=scan_pe_lut(64), pe_bram=4, shared_lut=SCAN_SHARED_LUT, shared_bram=60,
         note="as above, empty pairs dropped before the PE's queue (chosen)"),
    Arch("J64 two filters an entry, pooled", "scan", J=64, M=2, filters=2, pool=2,
         prejoin=True, pe_lut=scan_pe_lut(64, M=2, filters=2, pool=2), pe_bram=8,
         shared_lut=SCAN_SHARED_LUT, shared_bram=60,
         note="one queued activation chunk for two filters; two multipliers take their "
              "matches from both ends, ceil((m1 + m2) / 2) cycles an entry"),
    Arch("J64 four filters an entry, pooled", "scan", J=64, M=4, filters=4, pool=4,
         prejoin=True, pe_lut=scan_pe_lut(64, M=4, filters=4, pool=4), pe_bram=16,
         shared_lut=SCAN_SHARED_LUT, shared_bram=60,
         note="as above with four filters and four multipliers, ceil(sum / 4) cycles"),
    Arch("EIE, 1 act/cycle", "eie", M=1, groups=2, intake=1, pe_lut=450, pe_bram=2,
         shared_lut=7_000, shared_bram=6,
         note="nonzero activations broadcast, compressed weight columns"),
    Arch("EIE, 2 act/cycle", "eie", M=1, groups=2, intake=2, pe_lut=600, pe_bram=2,
         shared_lut=8_000, shared_bram=6,
         note="two column pointers a cycle (dual-port pointer RAM)"),
]

#: The candidate the engine is built on.
CHOSEN = "M-of-J J64 M1 + pre-join"


def masks(layer: Layer, d_w: float, d_a: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random nonzero masks: weights (K, C, R, S), activations (C, H, W)."""
    rng = np.random.default_rng(seed)
    wm = rng.random((layer.K, layer.C, layer.R, layer.S)) < d_w
    am = rng.random((layer.C, layer.H, layer.W)) < d_a
    return wm, am


def _pixels(layer: Layer, limit: int | None, seed: int) -> list[tuple[int, int]]:
    px = [(y, x) for y in range(layer.Ho) for x in range(layer.Wo)]
    if limit is not None and len(px) > limit:
        rng = np.random.default_rng(seed)
        px = [px[i] for i in sorted(rng.choice(len(px), limit, replace=False))]
    return px


def _window(layer: Layer, oy: int, ox: int):
    taps = []
    for r in range(layer.R):
        iy = oy * layer.stride - layer.pad + r
        for s in range(layer.S):
            ix = ox * layer.stride - layer.pad + s
            if 0 <= iy < layer.H and 0 <= ix < layer.W:
                taps.append((r, s, iy, ix))
    return taps


def _finish(arrive: np.ndarray, cost: np.ndarray) -> float:
    """max_k (arrive[k] + sum(cost[k:])) for one PE."""
    if cost.size == 0:
        return 0.0
    tail = np.cumsum(cost[::-1])[::-1]
    return float(np.max(arrive + tail))


def run_arch(arch: Arch, layer: Layer, wm: np.ndarray, am: np.ndarray, mults: int,
             pixels: list[tuple[int, int]]) -> dict[str, float]:
    """Cycles, effectual MACs and in-image dense MACs of ``pixels`` of the layer."""
    P = arch.pes(mults)
    K, C = layer.K, layer.C
    eff = 0
    dense = 0
    if arch.kind == "scan":
        slots = schedule(wm, P)              # the schedule counts the nonzeros only
        J = arch.J
        nch = -(-C // J)
        pad_c = nch * J - C
        per_pe = [[] for _ in range(P)]
        last = []
        for oy, ox in pixels:
            taps = _window(layer, oy, ox)
            A = np.stack([am[:, iy, ix] for (_, _, iy, ix) in taps], 1)      # (C, T)
            Wt = np.stack([wm[:, :, r, s] for (r, s, _, _) in taps], 2)      # (K, C, T)
            match = Wt & A[None]
            eff += int(match.sum())
            dense += K * C * len(taps)
            m = np.pad(match, ((0, 0), (0, pad_c), (0, 0))).reshape(K, nch, J, -1)
            cnt = m.sum(2).transpose(0, 2, 1).reshape(K, -1)                  # (K, T*nch)
            empty = np.zeros(cnt.shape[1])
            closes = np.zeros(cnt.shape[1], bool)
            closes[-1] = True
            F = arch.filters
            slots_per_pe = -(-K // P)
            passes = -(-slots_per_pe // F)
            for p in range(P):
                for q in range(passes):
                    ks = slots[p][q * F:(q + 1) * F]
                    if not ks:
                        per_pe[p].append(empty)
                    elif F == 1:
                        per_pe[p].append(cnt[ks[0]])
                    else:
                        g = arch.pool
                        c = np.zeros((F, cnt.shape[1]))
                        c[:len(ks)] = cnt[ks]
                        pools = np.ceil(c.reshape(F // g, g, -1).sum(1) / g)
                        # in matches (the cost divides by M); zero when every filter is
                        per_pe[p].append(pools.max(0) * arch.M * (c.sum(0) > 0))
            last += [closes] * passes
        fins = []
        for p in range(P):
            c = np.concatenate(per_pe[p]).astype(float)
            cost = np.maximum(c / arch.M, arch.min_cost)
            if arch.prejoin:
                cost[(c == 0) & ~np.concatenate(last)] = 0.0
            arrive = np.arange(c.size) / arch.per_cycle
            fins.append(_finish(arrive, cost))
        cycles = max(max(fins), c.size / arch.per_cycle)
    else:
        G = arch.groups
        per_group = P // G
        gslots = schedule(wm, per_group)
        fins = []
        for g in range(G):
            mine = pixels[g::G]
            cols = [[] for _ in range(per_group)]
            for oy, ox in mine:
                taps = _window(layer, oy, ox)
                dense += K * C * len(taps)
                for (r, s, iy, ix) in taps:
                    nz = np.nonzero(am[:, iy, ix])[0]
                    for p in range(per_group):
                        ks = gslots[p]
                        col = wm[ks][:, nz, r, s].sum(0) if ks else np.zeros(nz.size)
                        cols[p].append(col)
                        eff += int(col.sum())
            for p in range(per_group):
                c = np.concatenate(cols[p]).astype(float) if cols[p] else np.zeros(0)
                cost = np.maximum(c / arch.M, 1.0 / arch.intake)
                fins.append(_finish(np.arange(c.size) / arch.intake, cost))
        cycles = max(fins)
    results = K * len(pixels)
    cycles = max(cycles, results / arch.out_lanes)
    return {"cycles": cycles, "effectual": eff, "dense": dense}


def study(mults: int = 32, seed: int = 1, vgg_pixels: int = VGG_PIXELS,
          vgg_k: int | None = None, arches: list[Arch] | None = None, grid=None,
          progress=None) -> dict:
    """The grid on the target layer and VGG-16 per layer, for every candidate.

    VGG-16 layers keep their full shapes (K, C, R, S; with ``vgg_k``, at most that many
    filters, and as many input channels for the FC layers) and are sampled in output
    pixels: ``vgg_pixels`` of them at random (an FC layer has one). The figures are
    ratios, so sampling leaves them unbiased up to noise, and the network totals are
    weighted by each layer's full dense MACs."""
    arches = ARCHES if arches is None else arches
    grid = GRID if grid is None else grid
    out: dict = {"mults": mults, "seed": seed, "vgg_pixels": vgg_pixels, "vgg_k": vgg_k,
                 "arches": [], "grid": [], "vgg": []}
    for a in arches:
        out["arches"].append({"name": a.name, "J": a.J, "M": a.M, "pes": a.pes(mults),
                              "note": a.note, **a.area(mults)})
    px = _pixels(TARGET_LAYER, None, seed)
    for i, (dw, da) in enumerate(grid):
        wm, am = masks(TARGET_LAYER, dw, da, seed * 1009 + i)
        row = {"d_w": dw, "d_a": da, "util": {}}
        for a in arches:
            r = run_arch(a, TARGET_LAYER, wm, am, mults, px)
            row["util"][a.name] = r["effectual"] / (mults * r["cycles"])
            row["ideal"] = r["dense"] / max(r["effectual"], 1)
        out["grid"].append(row)
        if progress:
            progress(f"grid {i + 1}/{len(grid)}: d_w {dw:g} d_a {da:g}")
    totals = {a.name: [0.0, 0.0] for a in arches}     # dense MACs, weighted cycles x mults
    ideal = [0.0, 0.0]
    for i, (name, C, K, R, HW, dw, da) in enumerate(VGG16):
        pad = R // 2
        full = Layer(K=K, C=C, R=R, S=R, H=HW, W=HW, stride=1, pad=pad)
        Cs = C if vgg_k is None or R > 1 else min(C, vgg_k)
        Ks = K if vgg_k is None else min(K, vgg_k)
        lay = Layer(K=Ks, C=Cs, R=R, S=R, H=HW, W=HW, stride=1, pad=pad)
        wm, am = masks(lay, dw, da, seed * 7919 + i)
        px = _pixels(lay, vgg_pixels, seed + i)
        dense_full = float(K * C * R * R * full.Ho * full.Wo)
        row = {"name": name, "d_w": dw, "d_a": da, "util": {}, "dense_macs": dense_full}
        for a in arches:
            r = run_arch(a, lay, wm, am, mults, px)
            u = r["effectual"] / (mults * r["cycles"])
            row["util"][a.name] = u
            # cycles of the full layer at this utilization
            eff_full = dense_full * r["effectual"] / max(r["dense"], 1)
            totals[a.name][0] += dense_full
            totals[a.name][1] += eff_full / (mults * u)
            row["eff_frac"] = r["effectual"] / max(r["dense"], 1)
        ideal[0] += dense_full
        ideal[1] += dense_full * row["eff_frac"]
        out["vgg"].append(row)
        if progress:
            progress(f"VGG-16 {name}")
    ideal_speedup = ideal[0] / ideal[1]
    out["vgg_total"] = {"ideal_speedup": ideal_speedup, "speedup": {}, "of_ideal": {}}
    for a in arches:
        dense_cycles = totals[a.name][0] / mults
        sp = dense_cycles / totals[a.name][1]
        out["vgg_total"]["speedup"][a.name] = sp
        out["vgg_total"]["of_ideal"][a.name] = sp / ideal_speedup
    return out


def summary(res: dict) -> list[dict]:
    """Per candidate: worst utilization down to 1/40 and at 1/64, VGG-16 share of ideal,
    area, and speedup per 1k LUT4 at d_w d_a = 1/40 (the issue's 0.25 x 0.1 point)."""
    rows = []
    for a in res["arches"]:
        n = a["name"]
        u40 = [g["util"][n] for g in res["grid"] if g["d_w"] * g["d_a"] >= 1 / 40 - 1e-9]
        u64 = [g["util"][n] for g in res["grid"] if g["d_w"] * g["d_a"] < 1 / 40 - 1e-9]
        pt = next(g for g in res["grid"] if (g["d_w"], g["d_a"]) == (0.25, 0.1))
        speed = pt["util"][n] * pt["ideal"]
        rows.append({"name": n, "pes": a["pes"], "M": a["M"], "worst_util_to_1_40": min(u40),
                     "worst_util_1_64": min(u64) if u64 else math.nan,
                     "vgg_of_ideal": res["vgg_total"]["of_ideal"][n],
                     "lut4": a["lut4"], "lut4_per_mult": a["lut4_per_mult"], "bram": a["bram"],
                     "lut4_of_85f": a["lut4"] / DSP_BLOCKS["lut4"],
                     "speedup_1_40": speed, "speedup_per_klut": 1000 * speed / a["lut4"]})
    return rows
