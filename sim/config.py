"""The one configuration object of doublesparse.

Every generator (RTL), model (golden, performance), test, CLI command and document takes its
parameters from one frozen :class:`Config`. It is validated on construction: a bad value raises
:class:`ConfigError` naming the field and the value.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields

__all__ = ["Config", "ConfigError", "PRESETS", "BOARD_CONFIG"]

#: Named configurations (``--config NAME``, or ``NAME,field=value,...``). The built-in
#: default stays small so that tests and the demo simulate fast; a board preset fills its
#: device.
PRESETS: dict[str, dict[str, int]] = {
    # the ULX3S-85F's ECP5 at the issue's 32 multipliers: memories sized to its 208 block
    # RAMs (a 64-channel activation chunk is 16 of them wide); it needs 112 % of the
    # device's LUT sites, so it does not place (docs/performance.md, Synthesis)
    "ulx3s": {"pes": 32, "scan_width": 64, "out_lanes": 4, "act_mem_chunks": 512,
              "wgt_mem_chunks": 512, "wval_mem_words": 2048, "out_mem_words": 16384,
              "max_filters": 256},
    # the largest power-of-two array that places on the ULX3S-85F with room to route:
    # what `synth --board ulx3s-85f` builds when no --config is given (a PE's weight
    # values: 4 dense 3 x 3 x 64 filters)
    "ulx3s-16": {"pes": 16, "scan_width": 64, "out_lanes": 4, "act_mem_chunks": 512,
                 "wgt_mem_chunks": 512, "wval_mem_words": 4096, "out_mem_words": 16384,
                 "max_filters": 256},
    # the iCEBreaker's iCE40UP5K (5280 LUT4, 30 block RAMs of 4 kbit, 8 DSP): one PE, S = 16,
    # memories of a few block RAMs each (docs/board.md, Boards)
    "icebreaker": {"pes": 1, "scan_width": 16, "join_width": 16, "out_lanes": 1,
                   "act_mem_chunks": 256, "wgt_mem_chunks": 256, "wval_mem_words": 512,
                   "out_mem_words": 256, "max_filters": 16, "max_channels": 256,
                   "max_positions": 4096, "max_reduction": 2304},
}

#: The config a board is built with when ``synth`` is given no ``--config`` (the built-in
#: default is sized for simulation and needs more block RAM than the ECP5-85F has).
BOARD_CONFIG: dict[str, str] = {"ulx3s-85f": "ulx3s-16", "icebreaker": "icebreaker"}


class ConfigError(ValueError):
    """A configuration field holds a value the design does not support."""

    def __init__(self, field: str, value: object, why: str):
        self.field = field
        self.value = value
        super().__init__(f"config field {field!r} = {value!r}: {why}")


@dataclass(frozen=True)
class Config:
    """Parameters of one doublesparse build.

    Parameters
    ----------
    join_width:
        ``J``, channels per bitmap chunk: the width of a chunk's mask, of the engine's join
        and of the bitmap / N:M record. One of 8, 16, 24, 32.
    run_bits:
        ``R``, width of the zero-run field of the run-length format (EIE uses 4). 1..6.
    nm_n, nm_m:
        The N:M structured format keeps at most ``nm_n`` nonzeros in every group of ``nm_m``
        channels (2:4 by default). ``nm_m`` is 2, 4 or 8, ``1 <= nm_n < nm_m``, and ``nm_m``
        divides ``join_width``.
    data_width:
        Width of weights and activations. Only 8 (int8) is supported.
    acc_width:
        Width of the PE accumulators (int32 by default).
    scan_width:
        ``S``, channels of the convolution engine's chunks: a PE of the engine joins one
        S-channel pair a cycle and retires one match a cycle (``docs/architecture.md``).
        16, 32 or 64.
    pes:
        ``P``, processing elements of the convolution engine, one multiplier each.
    out_lanes:
        ``L``, results the engine's output stage takes a cycle (a collector, a requantizer
        and an output-memory bank each): 1, 2, 4 or 8, dividing ``pes``. PE p delivers to
        lane ``p // (P / L)``, which holds the filters ``k`` with ``k mod L`` equal to it.
    multipliers:
        ``M``, multipliers of the standalone dot-product PE (``rtl/pe/``): 1, 2 or 4.
    queue_depth:
        Depth of the standalone dot-product PE's pair queue (``rtl/pe/``). The engine's PEs
        decouple through their own pair queues (``rtl/spe/``, 16 pairs).
    max_channels:
        Largest channel count (first tensor axis) the hardware accepts; sizes the decoder's
        position counters. 1..65535.
    max_positions:
        Largest number of positions (product of the other axes) in one image. 1..2**24.
    max_filters:
        Most output channels (K) of a layer the engine takes. 1..4096.
    act_mem_chunks, wgt_mem_chunks, wval_mem_words, out_mem_words:
        Depths of the engine's on-chip memories: activation chunks (shared), weight chunks
        (per PE: a mask and where its values start), weight values (per PE, the nonzero
        weights packed), output words.
    max_reduction:
        Longest accumulation (channels of one dot product, C x R x S for a convolution) the
        PE accepts. ``acc_width`` must hold ``max_reduction`` products of -128 x -128, so a
        supported accumulation can never overflow; a longer one is flagged as an error.
    """

    join_width: int = 16
    run_bits: int = 4
    nm_n: int = 2
    nm_m: int = 4
    data_width: int = 8
    acc_width: int = 32
    scan_width: int = 64
    pes: int = 8
    out_lanes: int = 1
    multipliers: int = 2
    queue_depth: int = 8
    max_channels: int = 4096
    max_positions: int = 1 << 20
    max_reduction: int = 65536
    max_filters: int = 256
    act_mem_chunks: int = 4096
    wgt_mem_chunks: int = 1024
    wval_mem_words: int = 8192
    out_mem_words: int = 16384

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, int) or isinstance(v, bool):
                raise ConfigError(f.name, v, "must be an int")

        def need(name: str, ok: bool, why: str) -> None:
            if not ok:
                raise ConfigError(name, getattr(self, name), why)

        need("join_width", self.join_width in (8, 16, 24, 32), "must be one of 8, 16, 24, 32")
        need("run_bits", 1 <= self.run_bits <= 6,
             "must be 1..6 (two 8+R-bit entries and 3 flag bits fill a 32-bit word)")
        need("nm_m", self.nm_m in (2, 4, 8), "must be 2, 4 or 8")
        need("nm_n", 1 <= self.nm_n < self.nm_m, f"must satisfy 1 <= N < M = {self.nm_m}")
        need("nm_m", self.join_width % self.nm_m == 0,
             f"must divide join_width = {self.join_width}")
        need("nm_n", self.nm_meta_bytes <= 4,
             f"N:M metadata of one {self.join_width}-channel record needs "
             f"{self.nm_meta_bits} bits; at most 32 fit in the record's first word")
        need("data_width", self.data_width == 8, "only int8 data (8) is supported")
        need("acc_width", 17 <= self.acc_width <= 48,
             "must be 17..48 (the requantizer splits the accumulator at bit 16)")
        need("scan_width", self.scan_width in (16, 32, 64), "must be 16, 32 or 64")
        need("pes", 1 <= self.pes <= 64, "must be 1..64")
        need("out_lanes", self.out_lanes in (1, 2, 4, 8), "must be 1, 2, 4 or 8")
        need("out_lanes", self.pes % self.out_lanes == 0,
             f"must divide pes = {self.pes} (each lane collects as many PEs)")
        need("out_mem_words", self.out_mem_words % self.out_lanes == 0,
             f"must be a multiple of out_lanes = {self.out_lanes} (one bank a lane)")
        need("multipliers", self.multipliers in (1, 2, 4), "must be 1, 2 or 4")
        need("multipliers", self.join_width >= 8 * self.multipliers,
             f"needs join_width >= {8 * self.multipliers} (is {self.join_width}): the PE "
             f"scans one J-channel chunk a cycle, and J >= 8 x multipliers keeps scanning "
             f"from dominating while pairs are at least 1 in 8 channels")
        need("max_reduction", 1 <= self.max_reduction <= 1 << 24, "must be 1..2**24")
        need("max_filters", 1 <= self.max_filters <= 4096, "must be 1..4096")
        for name in ("act_mem_chunks", "wgt_mem_chunks", "wval_mem_words", "out_mem_words"):
            need(name, 16 <= getattr(self, name) <= 1 << 20, "must be 16..2**20")
        need("acc_width", self.acc_width >= self.acc_bits_needed,
             f"cannot hold {self.max_reduction} products of -128 x -128 "
             f"(max_reduction); needs {self.acc_bits_needed} bits")
        need("queue_depth", 1 <= self.queue_depth <= 256, "must be 1..256")
        need("max_channels", 1 <= self.max_channels <= 65535, "must be 1..65535")
        need("max_positions", 1 <= self.max_positions <= 1 << 24, "must be 1..2**24")
        self._check_register_map(need)

    def _check_register_map(self, need) -> None:
        """Limits of the engine's host register map (``rtl/engine/regmap.py``)."""
        from ..rtl.engine.regmap import max_pes

        need("pes", self.pes <= max_pes(),
             f"must be at most {max_pes()}: the register map has room for that many "
             f"PE_BUSY / PE_MACS registers")

    # -- derived quantities (never stored, so they cannot disagree) ---------------------
    @property
    def engine_multipliers(self) -> int:
        """Multipliers of the convolution engine: one per PE."""
        return self.pes

    @property
    def acc_bits_needed(self) -> int:
        """Signed bits that hold any sum of ``max_reduction`` int8 x int8 products."""
        return (128 * 128 * self.max_reduction).bit_length() + 1

    @property
    def max_chunks(self) -> int:
        """Chunks in the longest accepted accumulation."""
        return -(-self.max_reduction // self.join_width)

    @property
    def mask_bytes(self) -> int:
        """Bytes of a bitmap record's mask (J / 8)."""
        return self.join_width // 8

    @property
    def nm_pos_bits(self) -> int:
        """Bits of one N:M position field (log2 M)."""
        return (self.nm_m - 1).bit_length()

    @property
    def nm_groups(self) -> int:
        """N:M groups in one full J-channel record."""
        return self.join_width // self.nm_m

    @property
    def nm_meta_bits(self) -> int:
        return self.nm_groups * self.nm_n * self.nm_pos_bits

    @property
    def nm_meta_bytes(self) -> int:
        """Bytes of an N:M record's position metadata (rounded up to whole bytes)."""
        return (self.nm_meta_bits + 7) // 8

    # -- (de)serialisation ---------------------------------------------------------------
    def replace(self, **changes: int) -> Config:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Config:
        known = {f.name for f in fields(cls)}
        for k in d:
            if k not in known:
                raise ConfigError(k, d[k], f"unknown field (known: {', '.join(sorted(known))})")
        return cls(**d)  # type: ignore[arg-type]

    @classmethod
    def parse(cls, text: str | None) -> Config:
        """Build a config from ``None`` (default), a preset name (:data:`PRESETS`), a JSON
        file path, a JSON object, or comma-separated ``field=value`` pairs (e.g.
        ``join_width=8,multipliers=4``), which may follow a preset name
        (``ulx3s,queue_depth=4``).

        Every bad input raises :class:`ConfigError` naming it: text that is none of these,
        a file that cannot be read, invalid JSON, JSON that is not an object, a bad field."""
        if not text:
            return cls()
        text = text.strip()

        def bad(source: str, why: str) -> ConfigError:
            e = ConfigError("config", source, why)
            e.args = (f"config {source}: {why}",)
            return e

        def from_json(source: str, doc: str) -> Config:
            try:
                d = json.loads(doc)
            except json.JSONDecodeError as e:
                raise bad(source, f"not valid JSON ({e})") from None
            if not isinstance(d, dict):
                raise bad(source, f"must be a JSON object ({{\"field\": value, ...}}), "
                                  f"got {json.dumps(d)[:40]}")
            return cls.from_dict(d)

        if text.startswith(("{", "[")):
            return from_json(text, text)
        head, _, rest = text.partition(",")
        d: dict[str, object] = {}
        if head in PRESETS:
            d.update(PRESETS[head])
            text = rest
        elif "=" not in text:
            try:
                with open(text, encoding="utf-8") as f:
                    doc = f.read()
            except FileNotFoundError:
                raise bad(text, f"no such file, and not a preset ({', '.join(PRESETS)}), "
                                f"JSON object or field=value list") from None
            except (OSError, UnicodeDecodeError) as e:
                raise bad(text, f"cannot read: {getattr(e, 'strerror', None) or e}") from None
            return from_json(text, doc)
        for item in text.split(","):
            if not item.strip():
                continue
            k, sep, v = item.partition("=")
            if not sep:
                raise ConfigError(item, None, "expected field=value")
            try:
                d[k.strip()] = int(v, 0)
            except ValueError:
                raise ConfigError(k.strip(), v, "must be an int") from None
        return cls.from_dict(d)

    def key(self) -> str:
        """A short stable name for this config, used for build folders."""
        import hashlib

        return hashlib.sha1(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:10]

