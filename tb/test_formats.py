"""The NumPy formats and the config: round trips, encoder errors, header checks, the
CRC-32 words of the header and every single-bit flip and word swap of sample images."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from doublesparse.sim.config import Config, ConfigError
from doublesparse.sim.formats import (
    HEADER_WORDS,
    MAGIC,
    MASK32,
    Err,
    FormatError,
    decode,
    encode,
    encode_nm,
    encode_rle,
    header_crc,
    is_nm,
    parse_image,
    prune_nm,
    read_header,
    to_chunks,
)
from doublesparse.tb.stimulus import (
    FORMATS,
    random_image,
    random_tensor,
    rotate_xor,
    version1_image,
)

SEED = 20261125
DENSITIES = (0.0, 0.05, 0.3, 0.7, 1.0)
SHAPES = [(1,), (5,), (16,), (17, 3), (16, 2, 2), (33, 1, 3, 2), (64,), (40, 5)]
CONFIGS = [Config(), Config(join_width=8, run_bits=2, nm_n=1, nm_m=2, multipliers=1),
           Config(join_width=24, run_bits=6, nm_n=3, nm_m=8),
           Config(join_width=32, run_bits=1, nm_n=1, nm_m=4)]


def _dense_chunks(x: np.ndarray, jw: int) -> list[tuple[int, list[int]]]:
    """Second, independent chunking: mask and packed values by plain loops."""
    vecs = x.reshape(x.shape[0], -1)
    out = []
    for p in range(vecs.shape[1]):
        col = [int(v) for v in vecs[:, p]]
        for b in range(0, len(col), jw):
            seg = col[b:b + jw]
            out.append((sum(1 << i for i, v in enumerate(seg) if v), [v for v in seg if v]))
    return out


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"J{c.join_width}")
@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip(cfg: Config, fmt: str) -> None:
    rng = np.random.default_rng(SEED)
    print(f"seed {SEED}")
    for shape in SHAPES:
        for d in DENSITIES:
            x = random_tensor(rng, shape, d, extreme=d == 0.7)
            if fmt == "nm":
                x = prune_nm(x, cfg.nm_n, cfg.nm_m)
            img = encode(x, fmt, cfg)
            assert img.dtype == np.uint32 and img[0] == MAGIC
            y = decode(img)
            assert y.dtype == np.int8 and y.shape == x.shape
            if not np.array_equal(x, y):
                bad = np.argwhere(x != y)[0]
                pytest.fail(f"{fmt} {shape} d={d}: x{tuple(bad)}={x[tuple(bad)]} "
                            f"decoded {y[tuple(bad)]}")
            r = parse_image(img, cfg)
            assert r.error == Err.OK, r.detail
            ref = _dense_chunks(x, cfg.join_width)
            got = [(c.mask, list(c.values)) for c in r.chunks]
            assert got == ref, f"{fmt} {shape} d={d}"
            assert [c.last for c in r.chunks] == [c.last for c in to_chunks(x, cfg.join_width)]
            assert [c.end for c in r.chunks].count(True) == 1 and r.chunks[-1].end


def test_all_nonzero_and_all_zero_sizes() -> None:
    x = np.full((64, 4), -128, dtype=np.int8)
    z = np.zeros((64, 4), dtype=np.int8)
    cfg = Config()
    # bitmap: mask 2 bytes + 16 values = 18 bytes = 5 words per chunk; empty chunk 1 word
    assert len(encode(x, "bitmap", cfg)) == HEADER_WORDS + 4 * 4 * 5
    assert len(encode(z, "bitmap", cfg)) == HEADER_WORDS + 4 * 4 * 1
    # rle: two entries a word; an all-zero vector is one word
    assert len(encode(x, "rle", cfg)) == HEADER_WORDS + 4 * 32
    assert len(encode(z, "rle", cfg)) == HEADER_WORDS + 4
    # nm 2:4 (J=16): 2 metadata bytes + 8 values = 3 words per chunk
    assert len(encode(prune_nm(x), "nm", cfg)) == HEADER_WORDS + 4 * 4 * 3


def test_rle_padding_entries() -> None:
    x = np.zeros(40, dtype=np.int8)
    x[39] = 5
    img = encode_rle(x, 4)
    body = [int(w) for w in img[HEADER_WORDS:]]
    # run 39 with a 4-bit field: two padding entries (16 positions each), then run 7
    assert len(body) == 2
    e = [(body[0] & 0xFFF), (body[0] >> 12) & 0xFFF, body[1] & 0xFFF]
    assert e == [0 | 15 << 8, 0 | 15 << 8, 5 | 7 << 8]
    assert (body[0] >> 29) & 3 == 2 and not body[0] >> 31
    assert (body[1] >> 29) & 3 == 1 and body[1] >> 31
    assert np.array_equal(decode(img), x)


def test_nm_rejects_dense_and_prune_keeps_largest() -> None:
    rng = np.random.default_rng(SEED)
    x = random_tensor(rng, (18, 3), 1.0)
    with pytest.raises(FormatError, match="not 2:4 sparse"):
        encode_nm(x, 2, 4, 16)
    p = prune_nm(x, 2, 4)
    assert is_nm(p, 2, 4) and not is_nm(x, 2, 4)
    # independent check: per group of 4 (zero padded), the kept set is the 2 largest |x|,
    # lower channel first on ties
    xp = np.concatenate([x, np.zeros((2, 3), np.int8)])
    pp = np.concatenate([p, np.zeros((2, 3), np.int8)])
    for col in range(3):
        for g in range(0, 20, 4):
            grp = [int(v) for v in xp[g:g + 4, col]]
            keep = sorted(range(4), key=lambda i: (-abs(grp[i]), i))[:2]
            want = [grp[i] if i in keep else 0 for i in range(4)]
            assert [int(v) for v in pp[g:g + 4, col]] == want
    assert np.array_equal(prune_nm(p, 2, 4), p)


@pytest.mark.parametrize("bad, match", [
    (np.zeros((0, 3), np.int8), "zero-sized"),
    (np.zeros((2, 2, 2, 2, 2), np.int8), "5 dimensions"),
    (np.array([1.5, 2.0]), "not an integer"),
    (np.array([300, 1]), "exceed int8"),
])
def test_encoder_rejects(bad: np.ndarray, match: str) -> None:
    for fmt in FORMATS:
        with pytest.raises(FormatError, match=match):
            encode(bad, fmt)


@pytest.mark.parametrize("word, value, code", [
    (0, 0x12345678, Err.BAD_MAGIC),
    (1, 7, Err.BAD_FORMAT),
    (2, 5, Err.BAD_HEADER),
    (3, 0, Err.BAD_HEADER),
    (8, 0, Err.BAD_HEADER),
])
def test_header_checks(word: int, value: int, code: Err) -> None:
    img = [int(w) for w in encode(np.arange(20, dtype=np.int8), "bitmap")]
    img[word] = value
    img[10] = header_crc(img)
    with pytest.raises(FormatError) as e:
        decode(img)
    assert e.value.code == code
    assert parse_image(img, Config()).error == code


def test_header_crc_and_shape() -> None:
    img = [int(w) for w in encode(np.ones((4, 3, 2), np.int8), "rle")]
    h = read_header(img)
    assert h.shape == (4, 3, 2) and h.npos == 6
    img[4] = 2  # shape word changed without repairing the header CRC
    with pytest.raises(FormatError, match="header CRC word 10") as e:
        read_header(img)
    assert e.value.code == Err.BAD_HEADER
    r = parse_image(img, Config())
    assert (r.error, r.error_word) == (Err.BAD_HEADER, 10), r
    img[10] = header_crc(img)
    with pytest.raises(FormatError, match="npos"):
        read_header(img)


def _le_bytes(words) -> bytes:
    return np.asarray([int(w) for w in words], dtype="<u4").tobytes()


@pytest.mark.parametrize("fmt", FORMATS)
def test_header_words_are_zlib_crcs(fmt: str) -> None:
    """Word 0 is b"DSP2"; word 9 is zlib.crc32 of the body's bytes, word 10 of words 0..9."""
    cfg = Config()
    _, img = random_image(np.random.default_rng(SEED), cfg, fmt, (37, 3), 0.4)
    img = [int(w) for w in img]
    assert _le_bytes(img[:1]) == b"DSP2" and img[0] == MAGIC
    body = img[HEADER_WORDS:]
    assert len(body) == img[8]
    for word, data in ((9, _le_bytes(body)), (10, _le_bytes(img[:10]))):
        assert img[word] == zlib.crc32(data), (
            f"word {word}: {img[word]:#010x}, zlib.crc32 {zlib.crc32(data):#010x}")


def test_version1_image_is_refused() -> None:
    x = np.arange(-20, 20, dtype=np.int8).reshape(20, 2)
    v1 = version1_image([int(w) for w in encode(x, "bitmap")])
    assert _le_bytes(v1[:1]) == b"DSP1"
    for f in (decode, read_header):
        with pytest.raises(FormatError, match=r"format version 1 image \(magic DSP1\): this "
                                              r"decoder reads version 2 \(CRC-32\); "
                                              r"re-encode it") as e:
            f(v1)
        assert e.value.code == Err.BAD_MAGIC
    r = parse_image(v1, Config())
    assert (r.error, r.error_word, r.chunks) == (Err.BAD_MAGIC, 0, []), r
    assert "format version 1" in r.detail
    # any other word 0 names the magic it expected
    with pytest.raises(FormatError, match="expected 0x32505344"):
        read_header([0x12345678] + v1[1:])


@pytest.mark.parametrize("dims, product", [
    ((0xFFFFFFFF,) * 4, 0xFFFFFFFF ** 3),
    ((5, 1 << 31, 1 << 31, 4), 1 << 64),           # np.prod(..., int64) wraps to 0
    ((5, 1 << 16, 1 << 16, 1), 1 << 32),           # just over the npos word
])
def test_dimension_product_overflow(dims: tuple[int, ...], product: int) -> None:
    """A header whose dimensions multiply past 32 (or 64) bits is BAD_HEADER naming the
    product, whatever npos word it carries (also the 64-bit wrap-around's value)."""
    img = [int(w) for w in encode(np.ones((5, 2), np.int8), "bitmap")]
    for npos in (0, 1, int(np.prod(np.array(dims[1:], dtype=np.int64))) & MASK32,
                 product & MASK32):
        h = list(img)
        h[2], h[3:7], h[7] = 4, list(dims), npos
        h[10] = header_crc(h)
        with pytest.raises(FormatError, match=f"multiply to {product}") as e:
            read_header(h)
        assert e.value.code == Err.BAD_HEADER
        with pytest.raises(FormatError):
            decode(h)


def test_wrong_config_is_bad_format() -> None:
    img = encode(np.ones(20, np.int8), "bitmap", Config(join_width=8, multipliers=1))
    r = parse_image(img, Config(join_width=16))
    assert r.error == Err.BAD_FORMAT and r.error_word == 1 and not r.chunks


@pytest.mark.parametrize("field, value", [
    ("join_width", 12), ("run_bits", 0), ("run_bits", 7), ("nm_m", 3), ("nm_n", 4),
    ("multipliers", 3), ("multipliers", 4), ("pes", 0), ("data_width", 16),
    ("max_channels", 0), ("acc_width", 24), ("max_reduction", 0),
])
def test_config_errors_name_field(field: str, value: int) -> None:
    with pytest.raises(ConfigError, match=f"'{field}' = {value}"):
        Config(**{field: value})


def test_config_parse() -> None:
    assert Config.parse("join_width=8,nm_m=2,nm_n=1,multipliers=1").join_width == 8
    assert Config.parse('{"multipliers": 4, "join_width": 32}').multipliers == 4
    with pytest.raises(ConfigError, match="unknown field"):
        Config.parse("bogus=1")
    with pytest.raises(ConfigError, match="must be an int"):
        Config.parse("pes=four")


# ------------------------------------------------------------------------------ corruptions
def _sample(fmt: str) -> tuple[np.ndarray, list[int]]:
    """A sample image of ``fmt`` (default config) with 40 to 80 body words."""
    rng = np.random.default_rng(SEED + 1)
    x, img = random_image(rng, Config(), fmt, (45, 3, 2), 0.35)
    img = [int(w) for w in img]
    assert 40 <= len(img) - HEADER_WORDS <= 80, len(img) - HEADER_WORDS
    return x, img


def _refused(bad: list[int], cfg: Config, what: str, img: list[int],
             header: bool = False) -> Err:
    """The error code of a corrupted image, failing the test if it decodes (printing the
    corruption, both images and what the decoder returned). ``header``: the header was
    altered, so ``decode`` (``read_header``, then a config from the header) must raise too."""
    r = parse_image(bad, cfg)
    if r.error == Err.OK:
        pytest.fail(f"{what}: decoded with status 0\n  original: {[hex(w) for w in img]}\n"
                    f"  altered:  {[hex(w) for w in bad]}\n"
                    f"  chunks of the altered image: {[str(c) for c in r.chunks]}\n"
                    f"  chunks of the original:      "
                    f"{[str(c) for c in parse_image(img, cfg).chunks]}")
    if header:
        try:
            y = decode(bad)
        except FormatError:
            pass
        else:
            pytest.fail(f"{what}: decode returned {y.shape} {y.ravel()[:16]} (reference "
                        f"decoder: {r.error.name})")
    return r.error


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_bit_flip_and_word_swap_is_refused(fmt: str) -> None:
    """Every single-bit flip of every word (header and body) and every swap of two
    different words of a sample image: the reference decoder reports an error, and
    ``decode`` raises when the header is altered (for a body alteration ``decode`` runs
    the same decoder)."""
    print(f"seed {SEED + 1}")
    cfg = Config()
    x, img = _sample(fmt)
    assert parse_image(img, cfg).error == Err.OK and np.array_equal(decode(img), x)
    codes: dict[str, int] = {}
    n_flip = n_swap = 0
    for i in range(len(img)):
        for b in range(32):
            bad = list(img)
            bad[i] ^= 1 << b
            e = _refused(bad, cfg, f"{fmt}: bit {b} of word {i} flipped", img,
                         i < HEADER_WORDS)
            codes[e.name] = codes.get(e.name, 0) + 1
            n_flip += 1
    for i in range(len(img)):
        for j in range(i + 1, len(img)):
            if img[i] == img[j]:
                continue
            bad = list(img)
            bad[i], bad[j] = bad[j], bad[i]
            e = _refused(bad, cfg, f"{fmt}: words {i} and {j} swapped", img,
                         i < HEADER_WORDS)
            codes[e.name] = codes.get(e.name, 0) + 1
            n_swap += 1
    print(f"{fmt}: {len(img)} words ({len(img) - HEADER_WORDS} body): {n_flip} bit flips and "
          f"{n_swap} word swaps refused; codes {dict(sorted(codes.items()))}")
    assert n_flip == 32 * len(img) and n_swap > len(img) * (len(img) - 1) // 4
    assert codes.get("BAD_CHECKSUM", 0) > 0 and codes.get("BAD_HEADER", 0) > 0


def test_rotate_xor_blind_spots_are_caught() -> None:
    """The alterations a rotate-XOR checksum misses (bit b of word i and bit b + 1 of word
    i + 1 flipped; two words 32 apart swapped) are refused; the old checksum is computed
    here to show that each case is one it would have missed."""
    cfg = Config()
    _, img = random_image(np.random.default_rng(SEED + 2), cfg, "bitmap", (40, 6), 0.5)
    img = [int(w) for w in img]
    body = len(img) - HEADER_WORDS
    assert body > 40, body  # swaps 32 apart exist

    n = 0
    for i in range(HEADER_WORDS, len(img) - 1):
        for b in range(32):
            bad = list(img)
            bad[i] ^= 1 << b
            bad[i + 1] ^= 1 << (b + 1) % 32
            assert rotate_xor(bad[HEADER_WORDS:]) == rotate_xor(img[HEADER_WORDS:])
            _refused(bad, cfg, f"bit {b} of word {i} and bit {(b + 1) % 32} of word {i + 1} "
                               f"flipped", img)
            n += 1
    for i in range(HEADER_WORDS, len(img) - 32):
        if img[i] != img[i + 32]:
            bad = list(img)
            bad[i], bad[i + 32] = bad[i + 32], bad[i]
            assert rotate_xor(bad[HEADER_WORDS:]) == rotate_xor(img[HEADER_WORDS:])
            _refused(bad, cfg, f"words {i} and {i + 32} swapped", img)
            n += 1
    print(f"{n} alterations that keep the rotate-XOR checksum refused")
    assert n > 32 * (body - 1)
