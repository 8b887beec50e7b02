"""The main job at this stage of the project: a sample activation tensor in every format,
streamed through the RTL decoder in simulation and checked against the tensor."""

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
    print(f"\n{'all formats matched' if not failures else f'{failures} FAILURES'}")
    return 1 if failures else 0
