"""The main job at this stage of the project: a sample activation tensor in every format
streamed through the RTL decoder, a malformed image rejected, and a sparse fully-connected
layer run through the RTL decoder and PE, all in simulation and checked."""

from __future__ import annotations

import time

import numpy as np

from ..sim.config import Config
from ..sim.formats import ERROR_MEANING, Err, encode, prune_nm, to_chunks
from ..tb.stimulus import FORMATS, random_tensor, stream_of


def demo(cfg: Config, sim: str = "verilator", seed: int = 2026) -> int:
    from ..tb.runner import run_decoder_rtl

    rng = np.random.default_rng(seed)
    shape = (64, 8, 8)
    x = random_tensor(rng, shape, 0.3)
    print(f"doublesparse demo: int8 tensor {shape} (C x H x W), density "
          f"{np.count_nonzero(x) / x.size:.3f}, seed {seed}; config J={cfg.join_width}, "
          f"R={cfg.run_bits}, {cfg.nm_n}:{cfg.nm_m}; RTL decoder under {sim}")
    print("(the first run builds the simulator model; later runs reuse it)\n")
    head = (f"{'format':7} {'image bytes':>11} {'dense bytes':>11} {'ratio':>6} "
            f"{'chunks':>6} {'cycles':>6} {'words/cyc':>9}  result")
    print(head)
    print("-" * len(head))
    failures = 0
    for fmt in FORMATS:
        t = prune_nm(x, cfg.nm_n, cfg.nm_m) if fmt == "nm" else x
        img = encode(t, fmt, cfg)
        words = [int(w) for w in img]
        t0 = time.time()
        res = run_decoder_rtl(cfg, words, [False] * (len(words) - 1) + [True], sim=sim,
                              check=False)
        ok = res.errors == [Err.OK] and res.chunks == to_chunks(t, cfg.join_width)
        failures += not ok
        print(f"{fmt:7} {4 * len(words):11d} {t.size:11d} {t.size / (4 * len(words)):5.2f}x "
              f"{len(res.chunks):6d} {res.cycles:6d} {len(words) / res.cycles:9.3f}  "
              f"{'MATCH' if ok else 'MISMATCH'} ({time.time() - t0:.1f} s)"
              + ("  [nm: tensor pruned to "
                 f"{cfg.nm_n}:{cfg.nm_m} first]" if fmt == "nm" else ""), flush=True)
    # a truncated image, then a good one: the error is reported and the next image decodes
    good = [int(w) for w in encode(x, "bitmap", cfg)]
    bad = good[:-3]
    words, lasts = stream_of([bad, good])
    res = run_decoder_rtl(cfg, words, lasts, sim=sim, check=True)
    e0 = res.errors[0] if res.errors else None
    print(f"\ntruncated bitmap image -> {e0.name if e0 is not None else 'no result'}"
          f" ({ERROR_MEANING.get(e0, '')}); next image -> "
          f"{res.errors[1].name if len(res.errors) > 1 else 'no result'}")
    failures += len(res.errors) != 2 or res.errors[1] != Err.OK
    failures += fc_layer(cfg, sim, rng)
    failures += conv_layer(cfg, sim, rng)
    print(f"\n{'all checks passed' if not failures else f'{failures} FAILURES'}")
    return 1 if failures else 0


def fc_layer(cfg: Config, sim: str, rng: np.random.Generator, k: int = 16,
             c: int = 512) -> int:
    """A sparse fully-connected layer y = W x: W (bitmap) and x (rle) go through the RTL
    decoder, the decoded chunks through the RTL PE; checked against numpy."""
    from ..sim.pe_model import pe_bound, pe_cycles
    from ..tb.runner import run_cocotb, run_decoder_rtl

    w = random_tensor(rng, (k, c), 0.25)                 # 75 % of the weights pruned
    x = np.maximum(random_tensor(rng, (c,), 1.0), 0)     # ReLU: about half zero
    x = x.astype(np.int8)
    print(f"\nsparse fully-connected layer: W {w.shape} (density "
          f"{np.count_nonzero(w) / w.size:.2f}, bitmap) x x ({c},) (density "
          f"{np.count_nonzero(x) / x.size:.2f}, rle), M={cfg.multipliers} multipliers")
    img_w = [int(v) for v in encode(np.ascontiguousarray(w.T), "bitmap", cfg)]
    img_x = [int(v) for v in encode(x, "rle", cfg)]
    words, lasts = stream_of([img_w, img_x])
    dec = run_decoder_rtl(cfg, words, lasts, sim=sim, check=False)
    n_w = len(to_chunks(np.ascontiguousarray(w.T), cfg.join_width))
    wc, xc = dec.chunks[:n_w], dec.chunks[n_w:]
    ok_dec = (dec.errors == [Err.OK, Err.OK]
              and wc == to_chunks(np.ascontiguousarray(w.T), cfg.join_width)
              and xc == to_chunks(x, cfg.join_width))
    print(f"  decoder: {len(words)} words -> {len(dec.chunks)} chunks in {dec.cycles} cycles, "
          f"{'MATCH' if ok_dec else 'MISMATCH'}")
    ac = xc * k
    ref = (w.astype(np.int64) @ x.astype(np.int64)).tolist()
    seg = {"w": [[ch.mask, list(ch.values), ch.last] for ch in wc],
           "a": [[ch.mask, list(ch.values), ch.last] for ch in ac],
           "n_results": k, "expected": [[v, 0] for v in ref]}
    r = run_cocotb("pe", cfg, sim, "doublesparse.tb.cocotb_pe",
                   {"segments": [seg], "p_w": 1.0, "p_a": 1.0, "p_ready": 1.0,
                    "seed": 0})["segments"][0]
    got = [v for v, _ in r["results"]]
    pairs = int(np.count_nonzero((w != 0) & (x != 0)[None, :]))
    dense = -(-w.size // cfg.multipliers)
    bound = pe_bound(pairs, len(wc), cfg)
    model = pe_cycles(wc, ac, cfg).cycles
    ok_pe = got == ref
    print(f"  PE: {k} outputs {'MATCH numpy' if ok_pe else 'MISMATCH'}; cycles {r['cycles']} "
          f"(bound {bound}, model {model}); effectual MACs {pairs} of {w.size} dense; "
          f"utilization {pairs / (cfg.multipliers * r['cycles']):.2f}; "
          f"speedup vs dense {dense / r['cycles']:.2f}x (ideal {w.size / max(pairs, 1):.2f}x)")
    print(f"  y[:8] = {got[:8]}")
    return int(not ok_dec) + int(not ok_pe)


def conv_layer(cfg: Config, sim: str, rng: np.random.Generator) -> int:
    """A pruned 3x3 convolution through the RTL engine (all PEs), checked bit-exact."""
    from .layer import run_layer

    K, C, H, W = 32, 32, 12, 12
    w = random_tensor(rng, (K, C, 3, 3), 0.25)
    a = np.maximum(random_tensor(rng, (C, H, W), 1.0), 0).astype(np.int8)
    mult = rng.integers(40, 120, K)
    shift = np.full(K, 13)
    print(f"\nconvolution layer through the engine: W {w.shape} (density "
          f"{np.count_nonzero(w) / w.size:.2f}) x A {a.shape} (density "
          f"{np.count_nonzero(a) / a.size:.2f}), 3x3 pad 1, requantized + ReLU, "
          f"{cfg.pes} PEs x {cfg.multipliers} multipliers", flush=True)
    run = run_layer(w, a, cfg, 1, 1, (mult, shift), True, sim=sim)
    s = run.stats
    ok = run.error == 0 and s["match"]
    if not ok:
        print(f"  FAILED: {s}")
        return 1
    print(f"  output {run.y.shape} int8 MATCHES the golden model; cycles {s['cycles']} "
          f"(model {s['predicted_cycles']}), utilization {s['utilization']:.2f}, "
          f"speedup vs dense {s['speedup_vs_dense']:.2f}x, per-PE MACs max/mean "
          f"{s['macs_max_over_mean']:.3f}")
    return 0
