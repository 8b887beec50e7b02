"""Property-based tests (hypothesis) of the formats: every int8 tensor survives
encode -> decode in every format and parameter set, and the decoder's header and image
checks raise nothing but :class:`FormatError` on any input (random words, or a valid image
with a word changed, dropped or added). Hypothesis prints the failing example and the seed
to reproduce it (``--hypothesis-seed``). ``DS_HYPOTHESIS_EXAMPLES`` sets the examples a
test (default 150, a few seconds); no example database is written."""

from __future__ import annotations

import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from doublesparse.sim.config import Config
from doublesparse.sim.formats import (
    HEADER_WORDS,
    MAGIC,
    FormatError,
    decode,
    encode,
    prune_nm,
    read_header,
)

FAST = settings(max_examples=int(os.environ.get("DS_HYPOTHESIS_EXAMPLES", "150")),
                deadline=None, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow])
U32 = st.integers(0, 0xFFFF_FFFF)

# format parameters the config accepts: J, R, and N:M with M dividing J
JW = st.sampled_from([8, 16, 24, 32])


@st.composite
def format_configs(draw) -> Config:
    jw = draw(JW)
    m = draw(st.sampled_from([mm for mm in (2, 4, 8) if jw % mm == 0]))
    n = draw(st.integers(1, m - 1))
    cfg = dict(join_width=jw, run_bits=draw(st.integers(1, 6)), nm_n=n, nm_m=m,
               multipliers=1)
    try:
        return Config(**cfg)
    except Exception:  # e.g. N:M metadata wider than a record's first word
        return Config(join_width=jw, run_bits=cfg["run_bits"], multipliers=1,
                      nm_n=1, nm_m=2)


@st.composite
def int8_tensors(draw) -> np.ndarray:
    ndim = draw(st.integers(1, 4))
    shape = [draw(st.integers(1, 70))] + [draw(st.integers(1, 4)) for _ in range(ndim - 1)]
    size = int(np.prod(shape))
    density = draw(st.sampled_from([0.0, 0.05, 0.3, 0.7, 1.0]))  # 1.0: a dense tensor
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    vals = rng.integers(-128, 128, size)
    if draw(st.booleans()):
        vals = rng.choice(np.array([-128, 127, -1, 1]), size)
    keep = rng.random(size) < density
    return np.where(keep, vals, 0).astype(np.int8).reshape(shape)


@FAST
@given(x=int8_tensors(), cfg=format_configs(), fmt=st.sampled_from(["bitmap", "rle", "nm"]))
def test_round_trip(x: np.ndarray, cfg: Config, fmt: str) -> None:
    if fmt == "nm":
        x = prune_nm(x, cfg.nm_n, cfg.nm_m)
    img = encode(x, fmt, cfg)
    assert img.dtype == np.uint32 and read_header(img).shape == x.shape
    y = decode(img)
    assert y.dtype == np.int8 and y.shape == x.shape and np.array_equal(x, y)


@FAST
@given(words=st.lists(U32, max_size=40), magic=st.booleans())
def test_random_words_raise_only_format_error(words: list[int], magic: bool) -> None:
    if magic and words:
        words[0] = MAGIC
    for f in (read_header, decode):
        try:
            f(np.array(words, dtype=np.uint32))
        except FormatError:
            pass


@st.composite
def mutated_images(draw) -> tuple[np.ndarray, list[int]]:
    x = draw(int8_tensors())
    cfg = draw(format_configs())
    fmt = draw(st.sampled_from(["bitmap", "rle", "nm"]))
    if fmt == "nm":
        x = prune_nm(x, cfg.nm_n, cfg.nm_m)
    words = [int(w) for w in encode(x, fmt, cfg)]
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["set", "flip", "drop", "insert", "cut"]))
        i = draw(st.integers(0, len(words) - 1)) if words else 0
        if how == "set" and words:
            words[i] = draw(U32)
        elif how == "flip" and words:
            words[i] ^= 1 << draw(st.integers(0, 31))
        elif how == "drop" and words:
            del words[i]
        elif how == "insert":
            words.insert(i, draw(U32))
        elif how == "cut":
            words = words[:i]
    # sometimes repair the header checksum so the checks past it are reached too
    if draw(st.booleans()) and len(words) >= HEADER_WORDS:
        words[HEADER_WORDS - 1] = 0
        words[HEADER_WORDS - 1] = (-sum(words[:HEADER_WORDS])) & 0xFFFF_FFFF
    return x, words


@FAST
@given(case=mutated_images())
def test_mutated_images_raise_only_format_error(case) -> None:
    _, words = case
    img = np.array(words, dtype=np.uint32)
    try:
        read_header(img)
    except FormatError:
        pass
    try:
        y = decode(img)
    except FormatError:
        return
    assert y.dtype == np.int8 and y.shape == read_header(img).shape
