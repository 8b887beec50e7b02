"""cocotb on the decoder's emitted Verilog, under every simulator in ``DS_SIMS`` (comma
separated; default ``verilator,icarus``), for two configs (default J=16 R=4 2:4 and a small
J=8 R=2 1:2):

* every format x density x odd shape in one stream with random stalls, checked against
  :func:`to_chunks` of the tensors (independent of the reference parser);
* fuzzed malformed images (1,000+ for the default config, 300+ for the small one), each
  followed by a valid image, in one stream with stalls: no hang, error codes and chunks
  equal to the reference parser's, the valid images decode correctly;
* the same run gives the same cycle count under both simulators and, for the small config,
  under Amaranth's own simulator;
* every single-bit flip of every word and every swap of two different words of a small
  sample image of each format, and a format version 1 image, in one stream with a clean
  image after each run of corrupted ones: every corrupted image refused with the reference
  parser's error code and stop word, every clean one decoded (under Icarus, which runs
  this testbench some 20 times slower, every 8th corrupted image: ``CORRUPT_SHARE``).

Seeds are printed; set ``DS_SEED`` to change them (every seed derives from it).
"""

from __future__ import annotations

import os
import shutil
import time
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest

from doublesparse.sim.config import Config
from doublesparse.sim.formats import (
    HEADER_WORDS,
    Chunk,
    Err,
    parse_image,
    parse_stream,
    to_chunks,
)
from doublesparse.tb.cocotb_decoder import compare
from doublesparse.tb.runner import SIMS as ALL_SIMS
from doublesparse.tb.runner import SimFailure, run_cocotb, run_decoder_rtl
from doublesparse.tb.stimulus import (
    FORMATS,
    fuzz_image,
    random_image,
    stream_of,
    version1_image,
)

SIMS = [s.strip() for s in os.environ.get("DS_SIMS", ",".join(ALL_SIMS)).split(",")
        if s.strip()]
SEED = int(os.environ.get("DS_SEED", "2026"))
CFGS = {"default": Config(),
        "J8": Config(join_width=8, run_bits=2, nm_n=1, nm_m=2, multipliers=1)}
FUZZ_TARGET = {"default": 1000, "J8": 300}     # malformed images per run
CORRUPT_SHARE = {"verilator": 1, "icarus": 8}   # every n-th corrupted image is streamed
DENSITIES = (0.0, 0.05, 0.3, 0.7, 1.0)

# (test, config) -> (simulator, cycles, words accepted) of the first simulator that ran it
_FIRST: dict[tuple[str, str], tuple[str, int, int]] = {}


def _seed(name: str, cfg_id: str) -> int:
    s = SEED * 1000 + sum(map(ord, name + cfg_id))
    print(f"{name}[{cfg_id}]: seed {s} (derived from DS_SEED={SEED})")
    return s


def _shapes(J: int) -> list[tuple[int, ...]]:
    """C = 1 (1-D and 2-D), C not a multiple of J, C a multiple of J, 1-D to 4-D."""
    return [(1,), (1, 3), (J + 3, 2), (2 * J - 1, 2, 2), (3 * J, 3), (4 * J + 5,),
            (5, 2, 1, 2)]


def _split(chunks: list[Chunk], counts: list[int]) -> list[list[Chunk]]:
    out, pos = [], 0
    for n in counts:
        out.append(chunks[pos:pos + n])
        pos += n
    return out


def _diff(got: list[Chunk], want: list[Chunk]) -> str:
    for j in range(max(len(got), len(want))):
        a = got[j] if j < len(got) else None
        b = want[j] if j < len(want) else None
        if a != b:
            return (f"first differing chunk {j} (rtl {len(got)}, ref {len(want)} chunks):\n"
                    f"    rtl: {a}\n    ref: {b}")
    return "equal"


def _same_across_sims(test: str, cfg_id: str, sim: str, run) -> None:
    first = _FIRST.setdefault((test, cfg_id), (sim, run.cycles, run.in_words))
    assert first[1:] == (run.cycles, run.in_words), (
        f"{sim}: {run.cycles} cycles / {run.in_words} words, but {first[0]} took "
        f"{first[1]} cycles / {first[2]} words on the same stream and seed")


@pytest.mark.parametrize("sim", SIMS)
@pytest.mark.parametrize("cfg_id", list(CFGS))
def test_formats_densities_shapes(sim: str, cfg_id: str) -> None:
    cfg = CFGS[cfg_id]
    J = cfg.join_width
    seed = _seed("formats", cfg_id)
    rng = np.random.default_rng(seed)
    images, refs, labels = [], [], []
    for fmt in FORMATS:
        for d in DENSITIES:
            for shape in _shapes(J):
                x, img = random_image(rng, cfg, fmt, shape, d)
                images.append(img)
                refs.append(to_chunks(x, J))
                labels.append(f"{fmt} density {d} shape {shape}")
    words, lasts = stream_of(images)
    print(f"{len(images)} images, {len(words)} words, {sum(map(len, refs))} chunks")
    # check=False: compared here with chunks made from the tensors, not with the parser
    run = run_decoder_rtl(cfg, words, lasts, sim=sim, p_valid=0.7, p_ready=0.6, seed=seed,
                          check=False)
    print(f"{sim}: {run.cycles} cycles")
    assert not run.hung, f"hung after {run.cycles} cycles, {run.in_words} words accepted"
    bad = [(k, e) for k, e in enumerate(run.errors) if e != Err.OK]
    assert not bad and len(run.errors) == len(images), (
        f"{len(run.errors)} images finished of {len(images)}; errors: "
        + "; ".join(f"image {k} ({labels[k]}): {e.name}" for k, e in bad[:5]))
    assert len(run.chunks) == sum(map(len, refs)), (
        f"{len(run.chunks)} chunks, expected {sum(map(len, refs))}")
    for k, (got, want) in enumerate(zip(_split(run.chunks, list(map(len, refs))), refs,
                                        strict=True)):
        assert got == want, f"image {k} ({labels[k]}, seed {seed}): {_diff(got, want)}"
    _same_across_sims("formats", cfg_id, sim, run)


def _fuzz_stream(cfg: Config, rng: np.random.Generator, target: int):
    """Fuzzed images, each followed by a valid one, until ``target`` are malformed.
    Returns (images, tensors of the valid images by image index, fuzzed indices)."""
    J = cfg.join_width
    images: list[list[int]] = []
    valid: dict[int, np.ndarray] = {}
    fuzzed: list[int] = []
    n_bad = 0
    while n_bad < target:
        fmt = FORMATS[len(fuzzed) % 3]
        C = int(rng.integers(1, 3 * J + 1))
        shape = (C,) + tuple(int(v) for v in rng.integers(1, 3, size=int(rng.integers(0, 3))))
        _, img = random_image(rng, cfg, fmt, shape, float(rng.choice(DENSITIES)))
        fuzzed.append(len(images))
        images.append(fuzz_image(rng, img, cfg))
        n_bad += parse_image(images[-1], cfg).error != Err.OK   # a few stay valid
        # a valid image right after it, of any format
        fmt2 = FORMATS[int(rng.integers(0, 3))]
        shape2 = (int(rng.integers(1, 2 * J + 1)), int(rng.integers(1, 3)))
        x, img2 = random_image(rng, cfg, fmt2, shape2, float(rng.choice(DENSITIES)))
        valid[len(images)] = x
        images.append([int(w) for w in img2])
    return images, valid, fuzzed


_AMARANTH: dict[str, object] = {}


@pytest.mark.parametrize("sim", SIMS)
@pytest.mark.parametrize("cfg_id", list(CFGS))
def test_fuzzed_images(sim: str, cfg_id: str) -> None:
    cfg = CFGS[cfg_id]
    seed = _seed("fuzz", cfg_id)
    rng = np.random.default_rng(seed)
    images, valid, fuzzed = _fuzz_stream(cfg, rng, FUZZ_TARGET[cfg_id])
    words, lasts = stream_of(images)
    ref = parse_stream(words, lasts, cfg)
    n_bad = sum(ref[k].error != Err.OK for k in fuzzed)
    hist = Counter(r.error.name for r in ref)
    print(f"{len(images)} images ({len(fuzzed)} fuzzed, {n_bad} malformed), {len(words)} "
          f"words; reference codes: {dict(sorted(hist.items()))}")
    assert n_bad >= FUZZ_TARGET[cfg_id]
    # check=True: the testbench compares every chunk and code with the reference parser
    # and raises (printing the first differing image, both sides) on a difference
    run = run_decoder_rtl(cfg, words, lasts, sim=sim, p_valid=0.8, p_ready=0.7, seed=seed,
                          check=True)
    print(f"{sim}: {run.cycles} cycles")
    assert not run.hung
    assert run.errors == [r.error for r in ref]
    assert run.chunks == [c for r in ref for c in r.chunks]
    # every code the fuzzer can provoke is seen (N:M order needs N >= 2)
    want_codes = set(Err) - {Err.OK} - ({Err.NM_ORDER} if cfg.nm_n < 2 else set())
    assert want_codes <= set(run.errors), f"codes never seen: {want_codes - set(run.errors)}"
    # every valid image placed after a fuzzed one decodes correctly, independent of the parser
    per_image = _split(run.chunks, [len(r.chunks) for r in ref])
    for k, x in valid.items():
        assert run.errors[k] == Err.OK, f"valid image {k} after a fuzzed one: {run.errors[k]}"
        want = to_chunks(x, cfg.join_width)
        assert per_image[k] == want, f"valid image {k}: {_diff(per_image[k], want)}"
    _same_across_sims("fuzz", cfg_id, sim, run)
    if cfg_id == "J8":
        # cycle-exact agreement with Amaranth's simulator (same driver, same random draws)
        from doublesparse.tb.amaranth_harness import run_decoder

        if cfg_id not in _AMARANTH:
            _AMARANTH[cfg_id] = run_decoder(cfg, words, lasts, p_valid=0.8, p_ready=0.7,
                                            seed=seed)
        am = _AMARANTH[cfg_id]
        assert (am.cycles, am.in_words, am.errors) == (run.cycles, run.in_words, run.errors)
        assert am.chunks == run.chunks, _diff(run.chunks, am.chunks)


def test_compare_reports_differences() -> None:
    """The testbench's checker finds a changed value, a changed code and a missing chunk."""
    cfg = CFGS["default"]
    rng = np.random.default_rng(SEED)
    imgs = [random_image(rng, cfg, f, (20, 2), 0.5)[1] for f in FORMATS]
    words, lasts = stream_of(imgs)
    ref = parse_stream(words, lasts, cfg)
    chunks = [[c.mask, list(c.values), int(c.last), int(c.end)] for r in ref for c in r.chunks]
    errors = [int(r.error) for r in ref]
    assert compare(chunks, errors, words, lasts, cfg) is None
    bad = [list(c) for c in chunks]
    bad[5] = [bad[5][0], [v + 1 for v in bad[5][1]] or [1], *bad[5][2:]]
    msg = compare(bad, errors, words, lasts, cfg)
    assert msg and "image 1" in msg and "rtl:" in msg and "ref:" in msg, msg
    msg = compare(chunks, [0, 4, 0], words, lasts, cfg)
    assert msg and "image 1" in msg and "TRUNCATED" in msg, msg
    assert compare(chunks[:-1], errors, words, lasts, cfg)
    # stop words: -1 for an image without error; a differing one is reported
    assert compare(chunks, errors, words, lasts, cfg, [-1, -1, -1]) is None
    msg = compare(chunks, errors, words, lasts, cfg, [-1, 3, -1])
    assert msg and "image 1" in msg and "stop word: rtl 3, reference -1" in msg, msg


@pytest.mark.parametrize("sim", SIMS)
def test_hang_reported(sim: str) -> None:
    """A cycle budget too small to finish: check=False returns hung=True with the partial
    results; check=True raises."""
    cfg = CFGS["J8"]
    _, img = random_image(np.random.default_rng(SEED), cfg, "bitmap", (20, 3), 0.5)
    words, lasts = stream_of([img])
    run = run_decoder_rtl(cfg, words, lasts, sim=sim, check=False, timeout_cycles=10)
    shutil.rmtree(run.work_dir or "", ignore_errors=True)   # failed runs keep their folder
    assert run.hung and run.cycles == 10 and run.errors == [] and 0 < run.in_words < len(words)
    with pytest.raises(SimFailure, match="hung") as e:
        run_decoder_rtl(cfg, words, lasts, sim=sim, check=True, timeout_cycles=10)
    shutil.rmtree(e.value.work_dir, ignore_errors=True)


def _small_sample(cfg: Config, fmt: str, rng: np.random.Generator):
    """(tensor, image) of ``fmt`` with 12 or 13 body words and two chunks or more per
    vector (random shapes until one fits)."""
    J = cfg.join_width
    for _ in range(500):
        shape = (int(rng.integers(J + 1, 3 * J)), int(rng.integers(1, 3)))
        x, img = random_image(rng, cfg, fmt, shape, float(rng.choice([0.2, 0.3, 0.5])))
        if 12 <= len(img) - HEADER_WORDS <= 13:
            return x, [int(w) for w in img]
    raise AssertionError(f"no {fmt} sample with 12 or 13 body words")


def _corruption_stream(cfg: Config, seed: int, share: int = 1):
    """Per format: the sample image with every bit of every word flipped (a clean copy
    after each word's 32 flips) and every pair of different words swapped (a clean copy
    after the swaps with each first word); then a version 1 image and a clean one. With
    ``share`` > 1 only every ``share``-th flip or swap (counted over the whole stream).
    Returns (images, labels, {clean image index: tensor}, corrupted images made)."""
    rng = np.random.default_rng(seed)
    images: list[list[int]] = []
    labels: list[str] = []
    clean: dict[int, np.ndarray] = {}
    made = 0

    def add(img, label, x=None, keep=False):
        nonlocal made
        if x is not None:
            clean[len(images)] = x
        elif not keep:
            made += 1
            if (made - 1) % share:
                return
        images.append(img)
        labels.append(label)

    for fmt in FORMATS:
        x, img = _small_sample(cfg, fmt, rng)
        n = len(img)
        for i in range(n):
            for b in range(32):
                bad = list(img)
                bad[i] ^= 1 << b
                add(bad, f"{fmt}: bit {b} of word {i} flipped")
            add(img, f"{fmt}: clean", x)
        for i in range(n):
            swapped = False
            for j in range(i + 1, n):
                if img[i] != img[j]:
                    bad = list(img)
                    bad[i], bad[j] = img[j], img[i]
                    add(bad, f"{fmt}: words {i} and {j} swapped")
                    swapped = True
            if swapped:
                add(img, f"{fmt}: clean", x)
        if fmt == "bitmap":
            add(version1_image(img), "bitmap: format version 1 (DSP1)", keep=True)
            add(img, f"{fmt}: clean", x)
    return images, labels, clean, made


@pytest.mark.parametrize("sim", SIMS)
def test_every_bit_flip_and_word_swap(sim: str) -> None:
    """All corruptions of three small sample images in one simulation (default config,
    sink stalls; a share of them under Icarus): each corrupted image gives the reference
    parser's error code (never OK) at the reference's stop word, each clean image after
    them decodes to its tensor."""
    cfg = CFGS["default"]
    seed = _seed("corrupt", "default")
    share = CORRUPT_SHARE.get(sim, 1)
    images, labels, clean, made = _corruption_stream(cfg, seed, share)
    words, lasts = stream_of(images)
    ref = parse_stream(words, lasts, cfg)
    for k, r in enumerate(ref):
        assert (r.error == Err.OK) == (k in clean), f"reference: image {k} ({labels[k]}): {r}"
    job = {"words": words, "lasts": lasts, "p_valid": 1.0, "p_ready": 0.8, "seed": seed,
           "check": True, "timeout_cycles": None}
    t0 = time.monotonic()
    # check=True: the testbench compares codes, stop words and chunks with the reference
    # and fails on the first difference, printing both sides
    out = run_cocotb("decoder", cfg, sim, "doublesparse.tb.cocotb_decoder", job)
    wall = time.monotonic() - t0
    errors, stops = [Err(e) for e in out["errors"]], out["stops"]
    n_bad = len(images) - len(clean)
    print(f"{sim}: {len(images)} images ({n_bad - 1} of {made} flips and swaps, a version 1 "
          f"image, {len(clean)} clean), "
          f"{len(words)} words, {out['cycles']} cycles, {wall:.1f} s; codes "
          f"{dict(sorted(Counter(e.name for e in errors).items()))}")
    assert len(errors) == len(stops) == len(images)
    for k, (e, stop, r) in enumerate(zip(errors, stops, ref, strict=True)):
        assert (e, stop) == (r.error, r.error_word), (
            f"image {k} ({labels[k]}): rtl {e.name} at word {stop}, reference "
            f"{r.error.name} at word {r.error_word} ({r.detail})")
    v1 = [k for k, lab in enumerate(labels) if "version 1" in lab]
    assert len(v1) == 1 and errors[v1[0]] == Err.BAD_MAGIC and stops[v1[0]] == 0
    per_image = _split([Chunk(m, tuple(v), bool(lst), bool(end))
                        for m, v, lst, end in out["chunks"]], [len(r.chunks) for r in ref])
    for k, x in clean.items():
        want = to_chunks(x, cfg.join_width)
        assert errors[k] == Err.OK and per_image[k] == want, (
            f"clean image {k} after corrupted ones ({labels[k]}): {errors[k].name}, "
            f"{_diff(per_image[k], want)}")
    _same_across_sims(f"corrupt/{share}", "default", sim,
                      SimpleNamespace(cycles=out["cycles"], in_words=out["in_words"]))
