"""cocotb on the decoder's emitted Verilog, under every simulator in ``DS_SIMS``
(default: verilator and icarus): all formats and densities on odd shapes under random
stalls, and at least 1,000 fuzzed malformed images per run, interleaved with valid ones."""

from __future__ import annotations

import os

import numpy as np
import pytest

from doublesparse.sim.config import Config
from doublesparse.sim.formats import Err, parse_image, parse_stream, to_chunks
from doublesparse.tb.runner import run_decoder_rtl
from doublesparse.tb.stimulus import FORMATS, fuzz_image, random_image, stream_of

SIMS = [s for s in os.environ.get("DS_SIMS", "verilator,icarus").split(",") if s]
SEED = int(os.environ.get("DS_SEED", "2026"))
SMALL = Config(join_width=8, run_bits=2, nm_n=1, nm_m=2, multipliers=1)


def _diff(a: list, b: list) -> str:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return f"first difference at {i}:\n  rtl: {x}\n  ref: {y}"
    return f"lengths differ: rtl {len(a)}, ref {len(b)}"


@pytest.mark.parametrize("sim", SIMS)
@pytest.mark.parametrize("cfg", [Config(), SMALL], ids=["default", "J8"])
def test_formats_densities_shapes(sim: str, cfg: Config) -> None:
    seed = SEED + cfg.join_width
    print(f"seed {seed} (set DS_SEED to change)")
    rng = np.random.default_rng(seed)
    J = cfg.join_width
    images, ref = [], []
    for fmt in FORMATS:
        for d in (0.0, 0.05, 0.3, 0.7, 1.0):
            for shape in ((1,), (J + 3, 2), (2 * J - 1, 2, 2), (3 * J, 3)):
                x, img = random_image(rng, cfg, fmt, shape, d)
                images.append(img)
                ref += to_chunks(x, J)
    words, lasts = stream_of(images)
    # check=False: compare here against chunks made from the tensors, not the parser
    run = run_decoder_rtl(cfg, words, lasts, sim=sim, p_valid=0.7, p_ready=0.6, seed=seed,
                          check=False)
    assert not run.hung, f"hung; build {run.build_dir}"
    assert run.errors == [Err.OK] * len(images), run.errors
    assert run.chunks == ref, _diff(run.chunks, ref)


@pytest.mark.parametrize("sim", SIMS)
def test_fuzzed_images(sim: str) -> None:
    cfg = Config()
    seed = SEED * 7 + 1
    print(f"seed {seed} (set DS_SEED to change)")
    rng = np.random.default_rng(seed)
    images = []
    good_idx = []
    n_fuzz = n_bad = 0
    while n_bad < 1000:          # some corruptions (a flipped value bit) stay valid images
        k = n_fuzz
        n_fuzz += 1
        C = int(rng.integers(1, 3 * cfg.join_width))
        _, img = random_image(rng, cfg, FORMATS[k % 3], (C, int(rng.integers(1, 3))),
                              float(rng.choice([0.0, 0.05, 0.3, 0.7, 1.0])))
        images.append(fuzz_image(rng, img, cfg))
        n_bad += parse_image(images[-1], cfg).error != Err.OK
        if k % 5 == 0:
            good_idx.append(len(images))
            images.append([int(w) for w in img])   # a valid image right after a bad one
    words, lasts = stream_of(images)
    ref = parse_stream(words, lasts, cfg)
    n_bad = sum(r.error != Err.OK for r in ref)
    print(f"{len(images)} images ({n_fuzz} fuzzed, {n_bad} malformed by the reference)")
    assert n_bad >= 1000
    # the testbench checks chunks and codes against the reference and fails on a difference
    run = run_decoder_rtl(cfg, words, lasts, sim=sim, p_valid=0.8, p_ready=0.7, seed=seed,
                          check=True)
    assert not run.hung
    assert run.errors == [r.error for r in ref]
    assert run.chunks == [c for r in ref for c in r.chunks]
    codes = {e.name for e in run.errors}
    print(f"error codes seen: {sorted(codes)}")
    assert set(Err.__members__) - {"OK"} <= codes | {"NM_ORDER"}
    # every valid image placed after a malformed one decoded correctly
    assert all(run.errors[k] == Err.OK for k in good_idx)
