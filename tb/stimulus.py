"""Stimulus shared by the decoder tests, the cocotb testbench and the benchmark: random
tensors at a given density, their images, and malformed images made by fuzzing valid ones.
"""

from __future__ import annotations

import numpy as np

from ..sim.config import Config
from ..sim.formats import HEADER_WORDS, MAGIC_V1, MASK32, encode, header_crc, prune_nm

__all__ = ["FORMATS", "random_tensor", "random_image", "fuzz_image", "fix_checksum", "stream_of"]

FORMATS = ("bitmap", "rle", "nm")


def random_tensor(rng: np.random.Generator, shape: tuple[int, ...], density: float,
                  extreme: bool = False) -> np.ndarray:
    """int8 tensor whose entries are nonzero with probability ``density``; ``extreme`` draws
    nonzeros from {-128, 127, -1, 1} only."""
    if extreme:
        vals = rng.choice(np.array([-128, 127, -1, 1], dtype=np.int64), size=shape)
    else:
        vals = rng.integers(-128, 128, size=shape)
        vals[vals == 0] = 1
    keep = rng.random(shape) < density
    return (vals * keep).astype(np.int8)


def random_image(rng: np.random.Generator, cfg: Config, fmt: str, shape: tuple[int, ...],
                 density: float) -> tuple[np.ndarray, np.ndarray]:
    """(tensor, image). For ``nm`` the tensor is pruned to N:M first."""
    x = random_tensor(rng, shape, density)
    if fmt == "nm":
        x = prune_nm(x, cfg.nm_n, cfg.nm_m)
    return x, encode(x, fmt, cfg)


def fix_checksum(img: list[int]) -> list[int]:
    """Repair the header's CRC (word 10) after header words were changed, so that the
    change itself is what the decoder must catch."""
    if len(img) >= HEADER_WORDS:
        img[HEADER_WORDS - 1] = header_crc(img)
    return img


def rotate_xor(words) -> int:
    """Format version 1's body checksum: ``c = rotl32(c, 1) ^ word`` from 0 (its blind
    spots are why version 2 uses CRC-32)."""
    c = 0
    for w in words:
        c = ((c << 1 | c >> 31) & MASK32) ^ int(w)
    return c


def version1_image(img: list[int]) -> list[int]:
    """The same image in format version 1: magic DSP1, word 9 the rotate-XOR body
    checksum, word 10 making words 0..10 sum to 0 mod 2**32."""
    v1 = [int(w) for w in img]
    v1[0], v1[9] = MAGIC_V1, rotate_xor(v1[HEADER_WORDS:])
    v1[10] = -sum(v1[:10]) & MASK32
    return v1


def fuzz_image(rng: np.random.Generator, img: np.ndarray, cfg: Config) -> list[int]:
    """One random corruption of a valid image: bit flips in the body (masks, runs, counts,
    positions, values), truncation, extension, dropped or duplicated words, header fields
    changed with and without a repaired checksum."""
    w = [int(v) for v in img]
    body = len(w) - HEADER_WORDS
    kind = rng.integers(0, 9)
    if kind == 0 and body:                       # flip 1-3 bits of one body word
        i = HEADER_WORDS + int(rng.integers(0, body))
        for _ in range(int(rng.integers(1, 4))):
            w[i] ^= 1 << int(rng.integers(0, 32))
    elif kind == 1 and body:                     # flip bits in the low (metadata) byte(s)
        i = HEADER_WORDS + int(rng.integers(0, body))
        w[i] ^= 1 << int(rng.integers(0, 16))
    elif kind == 2:                              # truncate anywhere
        w = w[:int(rng.integers(1, len(w)))]
    elif kind == 3:                              # extend with random words
        w += [int(v) for v in rng.integers(0, 1 << 32, size=int(rng.integers(1, 4)))]
    elif kind == 4 and body:                     # drop a body word
        del w[HEADER_WORDS + int(rng.integers(0, body))]
    elif kind == 5 and body:                     # duplicate a body word
        i = HEADER_WORDS + int(rng.integers(0, body))
        w.insert(i, w[i])
    elif kind == 6:                              # header field, checksum repaired
        i = int(rng.choice([1, 2, 3, 7, 8]))
        w[i] = int(rng.choice([0, w[i] + 1, w[i] - 1, w[i] ^ (1 << int(rng.integers(0, 32))),
                               1 << 24, 0xFFFFFFFF])) & MASK32
        fix_checksum(w)
    elif kind == 7:                              # any header word, no repair
        i = int(rng.integers(0, HEADER_WORDS))
        w[i] ^= 1 << int(rng.integers(0, 32))
    else:                                        # body word replaced at random
        if body:
            w[HEADER_WORDS + int(rng.integers(0, body))] = int(rng.integers(0, 1 << 32))
        else:
            w[0] ^= 1
    return w


def stream_of(images: list[list[int]]) -> tuple[list[int], list[bool]]:
    """Concatenate images into one word stream with ``last`` on each image's final word."""
    words: list[int] = []
    lasts: list[bool] = []
    for img in images:
        words += [int(v) & MASK32 for v in img]
        lasts += [False] * (len(img) - 1) + [True]
    return words, lasts

