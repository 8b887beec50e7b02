"""The RTL decoder in Amaranth's simulator: every format, density and odd shape under random
stalls on both streams, and fuzzed malformed images checked against the reference decoder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from doublesparse.sim.config import Config
from doublesparse.sim.formats import (
    HEADER_WORDS,
    MAGIC_V1,
    Err,
    body_crc,
    encode,
    header_crc,
    parse_stream,
    to_chunks,
)
from doublesparse.tb.amaranth_harness import run_decoder
from doublesparse.tb.stimulus import FORMATS, fuzz_image, random_image, stream_of

SEED = int(os.environ.get("DS_SEED", "7"))
CONFIGS = [Config(), Config(join_width=8, run_bits=2, nm_n=1, nm_m=2, multipliers=1),
           Config(join_width=32, run_bits=6, nm_n=1, nm_m=4)]
WAVES = Path(__file__).resolve().parent.parent / "build" / "waves"


def _first_diff(a: list, b: list) -> str:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return f"first difference at {i}:\n  rtl: {x}\n  ref: {y}"
    return f"lengths differ: rtl {len(a)}, ref {len(b)}"


def _run_checked(cfg, words, lasts, ref_chunks, ref_errors, name, **kw):
    run = run_decoder(cfg, words, lasts, **kw)
    if run.hung or run.chunks != ref_chunks or run.errors != ref_errors:
        WAVES.mkdir(parents=True, exist_ok=True)
        vcd = WAVES / f"{name}.vcd"
        run_decoder(cfg, words, lasts, vcd=str(vcd), **kw)
        msg = _first_diff(run.chunks, ref_chunks) if run.chunks != ref_chunks else \
            _first_diff(run.errors, ref_errors)
        pytest.fail(f"{name}: hung={run.hung}; {msg}\n  waveform: {vcd}")
    return run


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"J{c.join_width}")
@pytest.mark.parametrize("stalls", [(1.0, 1.0), (0.6, 0.5)], ids=["nostall", "stall"])
def test_decoder_formats_densities(cfg: Config, stalls: tuple[float, float]) -> None:
    seed = SEED + cfg.join_width
    print(f"seed {seed} (set DS_SEED to change)")
    rng = np.random.default_rng(seed)
    images, ref = [], []
    for fmt in FORMATS:
        for d in (0.0, 0.05, 0.3, 0.7, 1.0):
            for shape in ((1,), (cfg.join_width + 3, 2), (2 * cfg.join_width, 1, 2)):
                x, img = random_image(rng, cfg, fmt, shape, d)
                images.append(img)
                ref += to_chunks(x, cfg.join_width)
    words, lasts = stream_of(images)
    run = _run_checked(cfg, words, lasts, ref, [Err.OK] * len(images),
                       f"formats_J{cfg.join_width}", p_valid=stalls[0], p_ready=stalls[1],
                       seed=seed)
    if stalls == (1.0, 1.0):
        # line rate: one word per cycle for images whose chunks never outnumber words
        assert run.cycles <= len(words) + 2 * len(images) + 40, run.cycles


@pytest.mark.parametrize("cfg", CONFIGS[:2], ids=lambda c: f"J{c.join_width}")
def test_decoder_fuzz(cfg: Config) -> None:
    seed = SEED * 31 + cfg.join_width
    print(f"seed {seed} (set DS_SEED to change)")
    rng = np.random.default_rng(seed)
    images = []
    for k in range(240):
        C = int(rng.integers(1, 3 * cfg.join_width))
        _, img = random_image(rng, cfg, FORMATS[k % 3], (C, int(rng.integers(1, 3))),
                              float(rng.choice([0.0, 0.05, 0.3, 0.7, 1.0])))
        images.append(fuzz_image(rng, img, cfg))
        if k % 4 == 0:
            images.append([int(w) for w in img])  # a good image right after a bad one
    words, lasts = stream_of(images)
    ref = parse_stream(words, lasts, cfg)
    run = _run_checked(cfg, words, lasts, [c for r in ref for c in r.chunks],
                       [r.error for r in ref], f"fuzz_J{cfg.join_width}", p_valid=0.8,
                       p_ready=0.7, seed=seed)
    n_err = sum(e != Err.OK for e in run.errors)
    codes = {e.name for e in run.errors}
    print(f"{len(images)} images, {n_err} malformed detected, codes {sorted(codes)}")
    assert n_err >= 150
    assert {"TRUNCATED", "LENGTH", "COUNT_MISMATCH", "PAST_END"} <= codes


def test_decoder_recovers_after_each_error_kind() -> None:
    cfg = Config()
    rng = np.random.default_rng(SEED)
    x, good = random_image(rng, cfg, "rle", (40, 2), 0.3)
    good = [int(w) for w in good]
    bad_magic = [0xDEADBEEF] + good[1:]
    version1 = [MAGIC_V1] + good[1:]
    truncated = good[:12]
    too_long = good + [0]
    images = [bad_magic, good, version1, good, truncated, good, too_long, good]
    words, lasts = stream_of(images)
    want = [Err.BAD_MAGIC, Err.OK, Err.BAD_MAGIC, Err.OK, Err.TRUNCATED, Err.OK, Err.LENGTH,
            Err.OK]
    ref = parse_stream(words, lasts, cfg)
    assert [r.error for r in ref] == want
    _run_checked(cfg, words, lasts, [c for r in ref for c in r.chunks], want, "recover",
                 p_valid=0.7, p_ready=0.7, seed=SEED)


def _with_body(header: list[int], body: list[int]) -> list[int]:
    """An image of ``header``'s format and shape with ``body`` as its body: word count,
    body CRC and header CRC set to match."""
    h = [int(w) for w in header[:HEADER_WORDS]]
    h[8], h[9] = len(body), body_crc(body)
    h[10] = header_crc(h)
    return h + body


@pytest.mark.parametrize("stalls", [(1.0, 1.0), (0.6, 0.5)], ids=["nostall", "stall"])
def test_decoder_rle_entry_on_vector_end_then_empty_last_word(stalls) -> None:
    """A vector (C = J) whose last entry is on its last channel, in a word without the
    last-of-vector flag, followed by an empty word that has it: the chunk completes only
    at that word, as a vector's last."""
    cfg = Config()
    J, R = cfg.join_width, cfg.run_bits
    x = np.zeros((J, 2), np.int8)
    x[J - 1, :] = (5, -7)
    body = []
    for p in range(2):
        body += [(int(x[J - 1, p]) & 0xFF | (J - 1) << 8) | 1 << 29, 1 << 31]
    assert J - 1 < 1 << R
    img = _with_body(encode(x, "rle", cfg), body)
    words, lasts = stream_of([img])
    ref = parse_stream(words, lasts, cfg)
    assert [r.error for r in ref] == [Err.OK] and ref[0].chunks == to_chunks(x, J)
    _run_checked(cfg, words, lasts, ref[0].chunks, [Err.OK], "rle_vector_end",
                 p_valid=stalls[0], p_ready=stalls[1], seed=SEED)
