"""The compressed tensor formats: NumPy encoders, the reference decoder and the chunk form.

A tensor is compressed along its first axis (channels, ``C``) at every position of the other
axes (taken in C order, i.e. row-major). Each channel vector is cut into *chunks* of
``J = config.join_width`` channels; a chunk in the engine's internal form is a J-bit mask plus
the nonzero values packed in channel order (:class:`Chunk`).

A memory image is a sequence of little-endian 32-bit words: an eleven-word self-describing header
(format version 2: magic ``"DSP2"``, a CRC-32 of the body and a CRC-32 of the header)
followed by the body in one of three formats (bit-level spec: ``docs/formats.md``):

* ``bitmap``: one word-aligned record per chunk: J/8 mask bytes, then the nonzero bytes.
* ``rle``: EIE-style (value, zero-run) entries, two per word, a padding entry when a run
  overflows the R-bit field; word flags mark the last word of each vector.
* ``nm``: N:M structured, one word-aligned record per chunk: the N positions of every group
  of M channels, then N values per group.

:class:`Parser` is the reference decoder. It consumes one word at a time exactly as the RTL
decoder does, emits the same chunks in the same order and stops at the same word with the
same error code, so it serves both as the software decoder and as the RTL's golden model.
"""

from __future__ import annotations

import enum
import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .config import Config, ConfigError

__all__ = [
    "MAGIC", "HEADER_WORDS", "Fmt", "Err", "ERROR_MEANING", "FormatError", "Chunk", "Header",
    "ImageResult", "Parser", "encode", "encode_bitmap", "encode_rle", "encode_nm", "decode",
    "parse_image", "parse_stream", "read_header", "to_chunks", "chunks_to_tensor", "prune_nm",
    "is_nm", "config_for_header", "FORMAT_VERSION", "MAGIC_V1", "CRC32_POLY", "CRC32_INIT",
    "crc32_matrix", "crc32_inverse_matrix", "crc32_word", "crc32_words", "crc32_key",
    "body_crc", "header_crc",
]

FORMAT_VERSION = 2
MAGIC = 0x32505344      # b"DSP2" little-endian: format version 2
MAGIC_V1 = 0x31505344   # b"DSP1": format version 1 (refused: its checksums are not CRCs)
HEADER_WORDS = 11
MAX_BODY_WORDS = 1 << 28
MASK32 = 0xFFFF_FFFF


class Fmt(enum.IntEnum):
    BITMAP = 1
    RLE = 2
    NM = 3

    @classmethod
    def from_name(cls, name: str) -> Fmt:
        names = {"bitmap": cls.BITMAP, "rle": cls.RLE, "nm": cls.NM}
        try:
            return names[name]
        except KeyError:
            raise ValueError(
                f"unknown format {name!r}: expected one of {', '.join(names)}") from None

    @property
    def label(self) -> str:
        return {Fmt.BITMAP: "bitmap", Fmt.RLE: "rle", Fmt.NM: "nm"}[self]


class Err(enum.IntEnum):
    """Error codes reported by the decoder (software and the RTL's ``status.error``)."""

    OK = 0
    BAD_MAGIC = 1
    BAD_FORMAT = 2
    BAD_HEADER = 3
    TRUNCATED = 4
    LENGTH = 5
    COUNT_MISMATCH = 6
    PAST_END = 7
    NM_ORDER = 8
    BAD_CHECKSUM = 9


ERROR_MEANING = {
    Err.OK: "image decoded correctly",
    Err.BAD_MAGIC: "word 0 is not the magic number 0x32505344 ('DSP2', format version 2); a "
                   "version 1 image (magic 'DSP1') must be re-encoded",
    Err.BAD_FORMAT: "unknown format code, or format parameters (J, R, N, M) that differ from "
                    "the decoder's configuration, or nonzero reserved fields in word 1",
    Err.BAD_HEADER: "bad header: ndim not 1..4, a zero or too large size, or header words 0..9 "
                    "that do not match their CRC-32 (word 10)",
    Err.TRUNCATED: "the image ended (last flag, or the header's word count) before its body "
                   "was complete",
    Err.LENGTH: "the body was complete but the image goes on, or the header's word count "
                "disagrees with the body",
    Err.COUNT_MISMATCH: "value count disagrees with the metadata: a zero value where the mask "
                        "marks a nonzero, a nonzero padding byte or field, or an RLE count of 3",
    Err.PAST_END: "a mask bit, run or N:M position reaches past the end of the channel vector",
    Err.NM_ORDER: "N:M positions in a group are duplicated or not in ascending order",
    Err.BAD_CHECKSUM: "the body does not match its CRC-32 (header word 9): the image was "
                      "altered, e.g. a value changed or two words swapped",
}


# ---------------------------------------------------------------------------------------
# CRC-32 (IEEE 802.3, reflected: what zlib.crc32 computes), one 32-bit word at a time
# ---------------------------------------------------------------------------------------

CRC32_POLY = 0xEDB8_8320    # x^32 + x^26 + ... + 1, bit-reversed (reflected) form
CRC32_INIT = 0xFFFF_FFFF    # initial register; the CRC is the final register XOR this


@functools.cache
def crc32_matrix() -> tuple[int, ...]:
    """The word update of the CRC register as a GF(2) matrix: ``rows[i]`` is the set (a bit
    mask) of the bits of ``x = state ^ word`` whose XOR is bit i of the next state.

    Made by running the 32 one-bit steps of the reflected shift register symbolically (each
    register bit a set of x bits): a word is 4 little-endian bytes, each taken from its
    least significant bit on, so bit j of the word is the j-th bit shifted in."""
    reg = [1 << i for i in range(32)]           # bit i of the register holds x_i
    for _ in range(32):
        out = reg[0]                            # the bit shifted out decides the XOR
        reg = reg[1:] + [0]
        reg = [r ^ out if CRC32_POLY >> i & 1 else r for i, r in enumerate(reg)]
    return tuple(reg)


def _gf2_apply(rows: Sequence[int], x: int) -> int:
    return sum(((r & x).bit_count() & 1) << i for i, r in enumerate(rows))


@functools.cache
def crc32_inverse_matrix() -> tuple[int, ...]:
    """Rows of the inverse of :func:`crc32_matrix` (it is invertible: the polynomial has a
    constant term). Gauss-Jordan elimination over GF(2)."""
    n = 32
    # augmented rows: matrix bits in [0, n), identity bits in [n, 2n)
    aug = [r | 1 << (n + i) for i, r in enumerate(crc32_matrix())]
    for col in range(n):
        piv = next(i for i in range(col, n) if aug[i] >> col & 1)
        aug[col], aug[piv] = aug[piv], aug[col]
        for i in range(n):
            if i != col and aug[i] >> col & 1:
                aug[i] ^= aug[col]
    return tuple(a >> n for a in aug)


@functools.cache
def _crc32_tables() -> tuple[tuple[int, ...], ...]:
    """The matrix as four byte tables: the next state is the XOR of one entry per byte of
    ``x`` (column sums of :func:`crc32_matrix`, for speed)."""
    rows = crc32_matrix()
    cols = [_gf2_apply(rows, 1 << j) for j in range(32)]
    tables = []
    for k in range(4):
        t = [0] * 256
        for b in range(1, 256):
            low = b & -b
            t[b] = t[b ^ low] ^ cols[8 * k + low.bit_length() - 1]
        tables.append(tuple(t))
    return tuple(tables)


def crc32_word(state: int, word: int) -> int:
    """The CRC register after one word: ``crc32_matrix()`` applied to ``state ^ word``."""
    t0, t1, t2, t3 = _crc32_tables()
    x = (int(state) ^ int(word)) & MASK32
    return t0[x & 0xFF] ^ t1[x >> 8 & 0xFF] ^ t2[x >> 16 & 0xFF] ^ t3[x >> 24]


def crc32_words(words: Iterable[int], crc: int = 0) -> int:
    """CRC-32 of 32-bit words taken as little-endian bytes; equals
    ``zlib.crc32(np.asarray(words, "<u4").tobytes(), crc)`` (``crc``: the CRC of what came
    before, to continue it)."""
    state = (int(crc) ^ CRC32_INIT) & MASK32
    for w in words:
        state = crc32_word(state, w)
    return state ^ CRC32_INIT


def crc32_key(crc: int) -> int:
    """The key that checks a CRC at its final word with one comparison: for any register
    ``state`` before the final word ``w``, ``crc32_word(state, w) ^ CRC32_INIT == crc``
    exactly when ``w == state ^ crc32_key(crc)`` (the inverse matrix applied to the final
    register)."""
    return _gf2_apply(crc32_inverse_matrix(), (int(crc) ^ CRC32_INIT) & MASK32)


def body_crc(words: Iterable[int]) -> int:
    """Header word 9: the CRC-32 of the body words."""
    return crc32_words(words)


def header_crc(words: Sequence[int]) -> int:
    """Header word 10: the CRC-32 of header words 0..9 (``words`` may be longer)."""
    return crc32_words(list(words)[:HEADER_WORDS - 1])


class FormatError(ValueError):
    """A tensor cannot be encoded, or an image is malformed. ``code`` is an :class:`Err`."""

    def __init__(self, code: Err, detail: str):
        self.code = Err(code)
        super().__init__(f"{self.code.name} (code {int(self.code)}): {detail}")


@dataclass(frozen=True)
class Chunk:
    """One chunk in the engine's internal form.

    ``mask`` bit i marks channel ``base + i`` nonzero; ``values`` are the nonzero int8 values
    in channel order (``len(values) == popcount(mask)``); ``last`` marks the final chunk of a
    channel vector, ``end`` the final chunk of a correctly decoded image.
    """

    mask: int
    values: tuple[int, ...]
    last: bool
    end: bool = False

    def __str__(self) -> str:
        return (f"Chunk(mask={self.mask:#x}, values={list(self.values)}, "
                f"last={int(self.last)}, end={int(self.end)})")


@dataclass(frozen=True)
class Header:
    fmt: Fmt
    join_width: int
    p0: int
    p1: int
    shape: tuple[int, ...]
    npos: int
    body_words: int

    @property
    def channels(self) -> int:
        return self.shape[0]

    @property
    def total_words(self) -> int:
        return HEADER_WORDS + self.body_words


# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------

def _as_int8(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.int8:
        if not np.issubdtype(x.dtype, np.integer):
            raise FormatError(Err.BAD_FORMAT, f"tensor dtype {x.dtype} is not an integer type")
        if x.size and (x.min() < -128 or x.max() > 127):
            raise FormatError(Err.BAD_FORMAT,
                              f"tensor values {int(x.min())}..{int(x.max())} exceed int8")
        x = x.astype(np.int8)
    if x.ndim < 1 or x.ndim > 4:
        raise FormatError(Err.BAD_HEADER, f"tensor has {x.ndim} dimensions; 1..4 are supported")
    if 0 in x.shape:
        raise FormatError(Err.BAD_HEADER, f"tensor shape {x.shape} has a zero-sized axis")
    return x


def _vectors(x: np.ndarray) -> np.ndarray:
    """(npos, C) view: one row per position, channels along the row."""
    return np.ascontiguousarray(x.reshape(x.shape[0], -1).T)


def _u8(v: int) -> int:
    return int(v) & 0xFF


def _s8(b: int) -> int:
    return b - 256 if b >= 128 else b


def _pack_bytes(data: Sequence[int]) -> list[int]:
    """Little-endian bytes into 32-bit words, zero-padded to a whole word."""
    words = []
    for i in range(0, len(data), 4):
        w = 0
        for j, b in enumerate(data[i:i + 4]):
            w |= (b & 0xFF) << (8 * j)
        words.append(w)
    return words


def _image(fmt: Fmt, jw: int, p0: int, p1: int, shape: tuple[int, ...],
           body: list[int]) -> np.ndarray:
    return np.array(_header(fmt, jw, p0, p1, shape, body) + body, dtype=np.uint32)


def _header(fmt: Fmt, jw: int, p0: int, p1: int, shape: tuple[int, ...],
            body: list[int]) -> list[int]:
    body_words = len(body)
    dims = list(shape) + [1] * (4 - len(shape))
    npos = math.prod(int(d) for d in shape[1:])
    for name, v, lim in (("channels", shape[0], 65535), ("positions", npos, 1 << 24),
                         ("body words", body_words, MAX_BODY_WORDS)):
        if v > lim:
            raise FormatError(Err.BAD_HEADER, f"{name} {v} exceeds the format limit {lim}")
    w = [MAGIC, int(fmt) | jw << 8 | p0 << 16 | p1 << 24, len(shape), *dims, npos, body_words,
         body_crc(body)]
    w.append(header_crc(w))
    return w


def _magic_error(w0: int) -> str:
    if w0 == MAGIC_V1:
        return (f"format version 1 image (magic DSP1): this decoder reads version "
                f"{FORMAT_VERSION} (CRC-32); re-encode it")
    return f"word 0 is {w0:#010x}, expected {MAGIC:#010x} ('DSP2')"


def read_header(words: Sequence[int]) -> Header:
    """Parse and fully check the eleven header words (including the host-side checks of the
    unused dimensions and of npos against the shape, which the RTL leaves to the host)."""
    if len(words) < HEADER_WORDS:
        raise FormatError(Err.TRUNCATED,
                          f"image has {len(words)} words; the header alone needs {HEADER_WORDS}")
    w = [int(v) & MASK32 for v in words[:HEADER_WORDS]]
    if w[0] != MAGIC:
        raise FormatError(Err.BAD_MAGIC, _magic_error(w[0]))
    if w[10] != header_crc(w):
        raise FormatError(Err.BAD_HEADER, f"header CRC word 10 is {w[10]:#010x}, the CRC-32 of "
                                          f"words 0..9 is {header_crc(w):#010x}")
    try:
        fmt = Fmt(w[1] & 0xFF)
    except ValueError:
        raise FormatError(Err.BAD_FORMAT, f"format code {w[1] & 0xFF} is not 1, 2 or 3") from None
    ndim = w[2]
    if not 1 <= ndim <= 4:
        raise FormatError(Err.BAD_HEADER, f"ndim word is {ndim:#x}, expected 1..4")
    dims = w[3:7]
    shape = tuple(dims[:ndim])
    if any(d == 0 for d in shape):
        raise FormatError(Err.BAD_HEADER, f"shape {shape} has a zero dimension")
    if any(d != 1 for d in dims[ndim:]):
        raise FormatError(Err.BAD_HEADER, f"unused dimensions {dims[ndim:]} must be 1")
    npos = math.prod(shape[1:])     # Python ints: no wrap-around
    if npos > MASK32:
        raise FormatError(Err.BAD_HEADER, f"shape {shape}: dims 1..{ndim - 1} multiply to "
                                          f"{npos}, more than the 32-bit npos word holds")
    if w[7] != npos:
        raise FormatError(Err.BAD_HEADER, f"npos word is {w[7]}, shape {shape} gives {npos}")
    return Header(fmt, (w[1] >> 8) & 0xFF, (w[1] >> 16) & 0xFF, (w[1] >> 24) & 0xFF,
                  shape, npos, w[8])


def _fmt_config(**fmt_params: int) -> Config:
    """A config that only validates format parameters (the PE fields set to fit any J)."""
    return Config(multipliers=1, **fmt_params)


def config_for_header(h: Header, base: Config | None = None) -> Config:
    """The decoder config that an image's header asks for (other fields from ``base``; the
    multiplier count is lowered if the image's J is too narrow for it)."""
    base = base or Config(max_channels=65535, max_positions=1 << 24)
    jw = h.join_width if h.fmt != Fmt.RLE else base.join_width
    mult = max(m for m in (1, 2, 4) if m <= max(1, jw // 8) and m <= base.multipliers)
    base = base.replace(multipliers=mult) if mult != base.multipliers else base
    if h.fmt == Fmt.BITMAP:
        return base.replace(join_width=h.join_width)
    if h.fmt == Fmt.RLE:
        return base.replace(run_bits=h.p0)
    return base.replace(join_width=h.join_width, nm_n=h.p0, nm_m=h.p1)


# ---------------------------------------------------------------------------------------
# Chunk form and encoders
# ---------------------------------------------------------------------------------------

def to_chunks(x: np.ndarray, join_width: int) -> list[Chunk]:
    """The engine's internal form of a tensor, straight from the tensor (no image)."""
    x = _as_int8(x)
    vecs = _vectors(x)
    c = x.shape[0]
    out: list[Chunk] = []
    for p, v in enumerate(vecs):
        for base in range(0, c, join_width):
            seg = v[base:base + join_width]
            nz = np.flatnonzero(seg)
            mask = int(sum(1 << int(i) for i in nz))
            last = base + join_width >= c
            out.append(Chunk(mask, tuple(int(seg[i]) for i in nz), last,
                             last and p == len(vecs) - 1))
    return out


def chunks_to_tensor(chunks: Sequence[Chunk], shape: Sequence[int],
                     join_width: int) -> np.ndarray:
    """Inverse of :func:`to_chunks`; checks the chunk count and last flags."""
    c = shape[0]
    npos = math.prod(int(d) for d in shape[1:])
    per = -(-c // join_width)
    if len(chunks) != per * npos:
        raise FormatError(Err.LENGTH, f"{len(chunks)} chunks for shape {tuple(shape)} "
                                      f"(expected {per * npos})")
    vecs = np.zeros((npos, c), dtype=np.int8)
    for i, ch in enumerate(chunks):
        p, j = divmod(i, per)
        if ch.last != (j == per - 1):
            raise FormatError(Err.LENGTH, f"chunk {i}: last={ch.last} at chunk {j} of {per}")
        lanes = [b for b in range(join_width) if ch.mask >> b & 1]
        if len(lanes) != len(ch.values) or (lanes and j * join_width + lanes[-1] >= c):
            raise FormatError(Err.COUNT_MISMATCH, f"chunk {i}: {ch}")
        for b, val in zip(lanes, ch.values, strict=True):
            vecs[p, j * join_width + b] = val
    return np.ascontiguousarray(vecs.T).reshape(tuple(shape))


def encode_bitmap(x: np.ndarray, join_width: int = 16) -> np.ndarray:
    cfg = _fmt_config(join_width=join_width)
    x = _as_int8(x)
    body: list[int] = []
    for ch in to_chunks(x, cfg.join_width):
        meta = [(ch.mask >> (8 * i)) & 0xFF for i in range(cfg.mask_bytes)]
        body += _pack_bytes(meta + [_u8(v) for v in ch.values])
    return _image(Fmt.BITMAP, cfg.join_width, 0, 0, x.shape, body)


def _rle_entries(v: np.ndarray, run_bits: int) -> list[tuple[int, int]]:
    maxrun = (1 << run_bits) - 1
    ents = []
    nxt = 0
    for p in np.flatnonzero(v):
        run = int(p) - nxt
        while run > maxrun:  # padding entry: maxrun zeros, then an explicit zero
            ents.append((0, maxrun))
            run -= maxrun + 1
        ents.append((_u8(v[p]), run))
        nxt = int(p) + 1
    return ents


def encode_rle(x: np.ndarray, run_bits: int = 4) -> np.ndarray:
    cfg = _fmt_config(run_bits=run_bits)
    x = _as_int8(x)
    ew = 8 + cfg.run_bits
    body: list[int] = []
    for v in _vectors(x):
        ents = _rle_entries(v, cfg.run_bits)
        if not ents:
            body.append(1 << 31)  # empty vector: one word, count 0, last-of-vector
            continue
        for i in range(0, len(ents), 2):
            pair = ents[i:i + 2]
            w = 0
            for k, (val, run) in enumerate(pair):
                w |= (val | run << 8) << (k * ew)
            w |= len(pair) << 29
            if i + 2 >= len(ents):
                w |= 1 << 31
            body.append(w)
    return _image(Fmt.RLE, 0, cfg.run_bits, 0, x.shape, body)


def _groups(x: np.ndarray, m: int) -> np.ndarray:
    """(npos, ceil(C / m), m) view of the channel vectors, zero-padded to whole groups."""
    vecs = _vectors(x)
    pad = (-x.shape[0]) % m
    v = np.concatenate([vecs, np.zeros((vecs.shape[0], pad), vecs.dtype)], axis=1)
    return v.reshape(v.shape[0], -1, m)


def is_nm(x: np.ndarray, n: int = 2, m: int = 4) -> bool:
    return bool((np.count_nonzero(_groups(np.asarray(x), m), axis=2) <= n).all())


def prune_nm(x: np.ndarray, n: int = 2, m: int = 4) -> np.ndarray:
    """Keep the ``n`` largest-magnitude values of every group of ``m`` channels (ties: the
    lower channel wins), zeroing the rest. Returns a new array of the same shape and dtype."""
    if m not in (2, 4, 8) or not 1 <= n < m:
        raise ConfigError("nm_n" if m in (2, 4, 8) else "nm_m", n if m in (2, 4, 8) else m,
                          f"N:M must have M in (2, 4, 8) and 1 <= N < M (got {n}:{m})")
    x = np.asarray(x)
    c = x.shape[0]
    g = _groups(x, m)
    # stable sort on -|x| keeps the lower index first among equal magnitudes
    order = np.argsort(-np.abs(g.astype(np.int64)), axis=2, kind="stable")
    keep = np.zeros(g.shape, dtype=bool)
    np.put_along_axis(keep, order[:, :, :n], True, axis=2)
    out = np.where(keep, g, 0).reshape(g.shape[0], -1)[:, :c]
    return np.ascontiguousarray(out.T).reshape(x.shape).astype(x.dtype)


def encode_nm(x: np.ndarray, n: int = 2, m: int = 4, join_width: int = 16) -> np.ndarray:
    cfg = _fmt_config(nm_n=n, nm_m=m, join_width=join_width)
    x = _as_int8(x)
    c = x.shape[0]
    pb = cfg.nm_pos_bits
    body: list[int] = []
    for p, v in enumerate(_vectors(x)):
        for base in range(0, c, cfg.join_width):
            valid = min(cfg.join_width, c - base)
            meta = 0
            vals: list[int] = []
            for g in range(-(-valid // m)):
                grp = [int(v[base + g * m + i]) if g * m + i < valid else 0 for i in range(m)]
                nz = [i for i in range(m) if grp[i]]
                if len(nz) > n:
                    raise FormatError(
                        Err.COUNT_MISMATCH,
                        f"tensor is not {n}:{m} sparse: position {p}, channels "
                        f"{base + g * m}..{base + g * m + m - 1} hold {len(nz)} nonzeros "
                        f"{[grp[i] for i in nz]} (use prune_nm / --prune)")
                fill = [i for i in range(m) if i not in nz][:n - len(nz)]
                pos = sorted(nz + fill)
                for k, i in enumerate(pos):
                    meta |= i << ((g * n + k) * pb)
                    vals.append(_u8(grp[i]))
            metab = [(meta >> (8 * i)) & 0xFF for i in range(cfg.nm_meta_bytes)]
            body += _pack_bytes(metab + vals)
    return _image(Fmt.NM, cfg.join_width, n, m, x.shape, body)


def encode(x: np.ndarray, fmt: str | Fmt, cfg: Config | None = None) -> np.ndarray:
    """Encode ``x`` in ``fmt`` with the format parameters of ``cfg``."""
    cfg = cfg or Config()
    f = fmt if isinstance(fmt, Fmt) else Fmt.from_name(fmt)
    if f == Fmt.BITMAP:
        return encode_bitmap(x, cfg.join_width)
    if f == Fmt.RLE:
        return encode_rle(x, cfg.run_bits)
    return encode_nm(x, cfg.nm_n, cfg.nm_m, cfg.join_width)


# ---------------------------------------------------------------------------------------
# The reference decoder (word by word, as the RTL)
# ---------------------------------------------------------------------------------------

@dataclass
class ImageResult:
    """What decoding one image produced: every emitted chunk, the error code (``Err.OK`` on
    success), the index of the word that raised it, and how many words were consumed."""

    chunks: list[Chunk] = field(default_factory=list)
    error: Err = Err.OK
    error_word: int = -1
    words: int = 0
    detail: str = ""


class _Abort(Exception):
    def __init__(self, code: Err, detail: str):
        self.code = code
        self.detail = detail


class Parser:
    """Word-at-a-time reference decoder; mirrors ``doublesparse.rtl.decoder.Decoder``.

    Feed words with :meth:`push` (``last`` marks the final word of the image on the
    stream). After an error the parser discards words up to the next ``last``.
    """

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.results: list[ImageResult] = []
        self._new()

    # state ---------------------------------------------------------------------------
    def _new(self) -> None:
        self.res = ImageResult()
        self.idx = 0
        self.draining = False
        self.hw: list[int] = []
        self.total = 0
        self.check_want = 0
        self.check = CRC32_INIT     # CRC register over the body words taken so far
        self.fmt = Fmt.BITMAP
        self.c = 0
        self.npos = 0
        self.vpos = 0
        self.base = 0
        self.acc_mask = 0
        self.acc_vals: list[int] = []
        # bitmap / nm record
        self.widx = 0
        self.meta = 0
        self.nvals = 0
        self.nwords = 0
        # rle
        self.pos = 0

    def _fail(self, code: Err, detail: str) -> None:
        raise _Abort(code, detail)

    def push(self, word: int, last: bool) -> ImageResult | None:
        """Consume one word; returns the image's result when this word ends the image."""
        word = int(word) & MASK32
        if not self.draining:
            try:
                self._word(word, last)
            except _Abort as a:
                self.res.error, self.res.detail = a.code, a.detail
                self.res.error_word = self.idx
                self.draining = True
        self.idx += 1
        self.res.words = self.idx
        if last:
            r = self.res
            self.results.append(r)
            self._new()
            return r
        return None

    # length rules, applied to every word after its content checks ------------------------
    def _length(self, structural_end: bool, last: bool, w: int = 0) -> None:
        at_total = self.total and self.idx == self.total - 1
        if structural_end:
            if not (last and at_total):
                self._fail(Err.LENGTH, f"body complete at word {self.idx} but last={int(last)}"
                                       f" and the header says {self.total} words")
            got = crc32_word(self.check, w) ^ CRC32_INIT
            if got != self.check_want:
                self._fail(Err.BAD_CHECKSUM, f"body CRC-32 is {got:#010x}, header word 9 says "
                                             f"{self.check_want:#010x}")
        elif last or at_total:
            self._fail(Err.TRUNCATED, f"image ends at word {self.idx} before its body is "
                                      f"complete (header: {self.total or '?'} words)")

    def _emit(self, last: bool) -> None:
        end = last and self.vpos == self.npos - 1
        self.res.chunks.append(Chunk(self.acc_mask, tuple(self.acc_vals), last, end))
        self.acc_mask, self.acc_vals = 0, []
        if last:
            self.vpos += 1
            self.base = 0
            self.pos = 0
        else:
            self.base += self.cfg.join_width

    def _valid(self) -> int:
        return min(self.cfg.join_width, self.c - self.base)

    def _word(self, w: int, last: bool) -> None:
        if self.idx < HEADER_WORDS:
            self._header_word(w)
            self._length(False, last)
            return
        if self.fmt == Fmt.RLE:
            self._rle_word(w, last)
        else:
            self._record_word(w, last)
        self.check = crc32_word(self.check, w)

    def _header_word(self, w: int) -> None:
        cfg, i = self.cfg, self.idx
        self.hw.append(w)
        if i == 0 and w != MAGIC:
            self._fail(Err.BAD_MAGIC, _magic_error(w))
        if i == 1:
            f, jw, p0, p1 = w & 0xFF, (w >> 8) & 0xFF, (w >> 16) & 0xFF, w >> 24
            want = {Fmt.BITMAP: (cfg.join_width, 0, 0), Fmt.RLE: (0, cfg.run_bits, 0),
                    Fmt.NM: (cfg.join_width, cfg.nm_n, cfg.nm_m)}
            if f not in (1, 2, 3):
                self._fail(Err.BAD_FORMAT, f"format code {f} is not 1, 2 or 3")
            if (jw, p0, p1) != want[Fmt(f)]:
                self._fail(Err.BAD_FORMAT,
                           f"{Fmt(f).label} image has (J, p0, p1) = {(jw, p0, p1)}; this "
                           f"decoder is built for {want[Fmt(f)]}")
            self.fmt = Fmt(f)
        if i == 2 and not 1 <= w <= 4:
            self._fail(Err.BAD_HEADER, f"ndim word is {w:#x}, expected 1..4")
        if i == 3:
            if not 1 <= w <= cfg.max_channels:
                self._fail(Err.BAD_HEADER, f"channels {w} not in 1..{cfg.max_channels}")
            self.c = w
        if i == 7:
            if not 1 <= w <= cfg.max_positions:
                self._fail(Err.BAD_HEADER, f"positions {w} not in 1..{cfg.max_positions}")
            self.npos = w
        if i == 8:
            if not 1 <= w <= MAX_BODY_WORDS:
                self._fail(Err.BAD_HEADER, f"body words {w} not in 1..{MAX_BODY_WORDS}")
            self.total = HEADER_WORDS + w
        if i == 9:
            self.check_want = w
        if i == 10 and w != header_crc(self.hw):
            self._fail(Err.BAD_HEADER, f"header CRC word 10 is {w:#010x}, the CRC-32 of words "
                                       f"0..9 is {header_crc(self.hw):#010x}")

    # bitmap and N:M records -----------------------------------------------------------
    def _record_word(self, w: int, last: bool) -> None:
        cfg = self.cfg
        jw = cfg.join_width
        valid = self._valid()
        nm = self.fmt == Fmt.NM
        meta_bytes = cfg.nm_meta_bytes if nm else cfg.mask_bytes
        first = self.widx == 0
        errs: dict[Err, str] = {}  # every rule this word breaks; reported by priority
        if first:
            meta = w & ((1 << (8 * meta_bytes)) - 1)
            if nm:
                groups = -(-valid // cfg.nm_m)
                nvals = groups * cfg.nm_n
                pb = cfg.nm_pos_bits
                for g in range(groups):
                    ps = [(meta >> ((g * cfg.nm_n + k) * pb)) & (cfg.nm_m - 1)
                          for k in range(cfg.nm_n)]
                    if any(a >= b for a, b in zip(ps, ps[1:], strict=False)):
                        errs.setdefault(Err.NM_ORDER, f"word {self.idx}: group {g} "
                                                      f"positions {ps}")
                if meta >> (nvals * pb):
                    errs.setdefault(Err.COUNT_MISMATCH,
                                    f"word {self.idx}: metadata {meta:#x} has bits beyond its "
                                    f"{nvals} position fields")
            else:
                if meta >> valid:
                    errs.setdefault(Err.PAST_END, f"word {self.idx}: mask {meta:#x} marks "
                                                  f"channels past the vector end ({valid} valid)")
                nvals = bin(meta).count("1")
            nwords = -(-(meta_bytes + nvals) // 4)
        else:
            meta, nvals, nwords = self.meta, self.nvals, self.nwords
        # value slots of this word
        vals: list[tuple[int, int]] = []  # (channel-in-chunk, value)
        for b in range(4):
            s = self.widx * 4 + b - meta_bytes
            if s < 0:
                continue
            byte = (w >> (8 * b)) & 0xFF
            if s >= nvals:
                if byte:
                    errs.setdefault(Err.COUNT_MISMATCH, f"word {self.idx}: padding byte {b} is "
                                                        f"{byte:#x} (record holds {nvals} values)")
            elif nm:
                pos = (meta >> (s * cfg.nm_pos_bits)) & (cfg.nm_m - 1)
                ch = (s // cfg.nm_n) * cfg.nm_m + pos
                if byte and ch >= valid:
                    errs.setdefault(Err.PAST_END, f"word {self.idx}: value {_s8(byte)} at "
                                                  f"channel {self.base + ch} past the vector end")
                if byte:
                    vals.append((ch, _s8(byte)))
            else:
                if not byte:
                    errs.setdefault(Err.COUNT_MISMATCH, f"word {self.idx}: value slot {s} is "
                                                        f"zero but the mask counts {nvals}")
                vals.append((-1, _s8(byte)))
        for code in (Err.NM_ORDER, Err.PAST_END, Err.COUNT_MISMATCH):
            if code in errs:
                self._fail(code, errs[code])
        end_of_record = self.widx == nwords - 1
        last_chunk = self.base + jw >= self.c
        structural_end = end_of_record and last_chunk and self.vpos == self.npos - 1
        self._length(structural_end, last, w)
        # commit
        if first:
            self.meta, self.nvals, self.nwords = meta, nvals, nwords
            if not nm:
                self.acc_mask = meta
        for ch, val in vals:
            if nm:
                self.acc_mask |= 1 << ch
            self.acc_vals.append(val)
        if end_of_record:
            self.widx = 0
            self._emit(last_chunk)
        else:
            self.widx += 1

    # run-length -----------------------------------------------------------------------
    def _rle_word(self, w: int, last: bool) -> None:
        cfg = self.cfg
        jw = cfg.join_width
        ew = 8 + cfg.run_bits
        n = (w >> 29) & 3
        vlast = bool(w >> 31)
        ents = [((w >> (k * ew)) & 0xFF, (w >> (k * ew + 8)) & ((1 << cfg.run_bits) - 1))
                for k in range(n if n <= 2 else 0)]
        pos = self.pos
        poss = []
        for _val, run in ents:
            poss.append(pos + run)
            pos += run + 1
        for p in poss:
            if p >= self.c:
                self._fail(Err.PAST_END, f"word {self.idx}: entry at channel {p} past the "
                                         f"vector end ({self.c} channels)")
        payload = w & ((1 << 29) - 1)
        if n == 3 or payload >> (n * ew):
            self._fail(Err.COUNT_MISMATCH, f"word {self.idx}: count field {n} with payload "
                                           f"{payload:#09x} (unused bits must be zero)")
        structural_end = vlast and self.vpos == self.npos - 1
        self._length(structural_end, last, w)
        # commit: same cycle-level emission rules as the RTL
        todo = list(zip(poss, (v for v, _ in ents), strict=True))
        while True:
            cls = [min(2, (p - self.base) // jw) for p, _ in todo]
            if any(k >= 1 for k in cls):
                cur = [e for e, k in zip(todo, cls, strict=True) if k == 0]
                nxt = [e for e, k in zip(todo, cls, strict=True) if k == 1]
                far = [e for e, k in zip(todo, cls, strict=True) if k == 2]
                self._merge(cur)
                self._emit(False)
                self._merge(nxt)
                if far:
                    todo = far
                    continue
                if vlast:
                    self._tail()
                return
            self._merge(todo)
            if vlast:
                self._tail()
            elif self.pos == self.base + jw and self.base + jw < self.c:
                self._emit(False)
            return

    def _merge(self, ents: Iterable[tuple[int, int]]) -> None:
        for p, val in ents:
            if val:
                self.acc_mask |= 1 << (p - self.base)
                self.acc_vals.append(_s8(val))
            self.pos = p + 1

    def _tail(self) -> None:
        while True:
            last = self.base + self.cfg.join_width >= self.c
            self._emit(last)
            if last:
                return


def parse_stream(words: Sequence[int], lasts: Sequence[bool], cfg: Config) -> list[ImageResult]:
    """Run the reference decoder over a stream of images delimited by ``lasts``."""
    p = Parser(cfg)
    for w, lst in zip(words, lasts, strict=True):
        p.push(int(w), bool(lst))
    return p.results


def parse_image(image: Sequence[int], cfg: Config) -> ImageResult:
    """Decode one image (its final word carries ``last``) with the reference decoder."""
    image = list(image)
    if not image:
        return ImageResult(error=Err.TRUNCATED, error_word=0, detail="empty image")
    res = parse_stream(image, [False] * (len(image) - 1) + [True], cfg)
    return res[-1]


def decode(image: Sequence[int] | np.ndarray, cfg: Config | None = None) -> np.ndarray:
    """Decode an image to its int8 tensor; raises :class:`FormatError` on a malformed image.

    The decoder parameters come from the image's header unless ``cfg`` is given."""
    image = [int(v) & MASK32 for v in np.asarray(image, dtype=np.uint64).ravel()]
    h = read_header(image)
    if cfg is None:
        try:
            cfg = config_for_header(h)
        except ConfigError as e:
            raise FormatError(Err.BAD_FORMAT, f"header asks for unsupported parameters: {e}"
                              ) from None
    r = parse_image(image, cfg)
    if r.error != Err.OK:
        raise FormatError(r.error, r.detail)
    return chunks_to_tensor(r.chunks, h.shape, cfg.join_width)
