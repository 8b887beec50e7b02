"""Cycle-by-cycle stream drivers for Amaranth-simulator tests of single components.

A test runs one testbench process that, every cycle, lets each :class:`Source` and
:class:`Sink` set its inputs (``drive``), then lets each look at the settled outputs
(``observe``: a transfer is ``valid & ready`` in that cycle), then ticks. Sources leave
random gaps and never wait for ``ready`` before raising ``valid``; sinks apply random
backpressure and check Amaranth's stream rules on what they receive (a payload holds
while ``valid`` is high and ``ready`` low, and ``valid`` does not drop before a transfer).
Payloads are plain integers; :func:`pack` and :func:`unpack` convert to and from a
``data.StructLayout`` (signed fields as Python ints).
"""

from __future__ import annotations

import os
from collections import deque

import numpy as np
from amaranth import Const, Shape, Value
from amaranth.lib import data

__all__ = ["Source", "Sink", "pack", "unpack", "seed_for"]


def seed_for(name: str, default: int = 7) -> int:
    """The random seed of a test: ``DS_SEED`` (or ``default``) mixed with its name; the
    test prints it so a failure can be replayed."""
    base = int(os.environ.get("DS_SEED", default))
    return (base * 1_000_003 + sum(ord(ch) * 31 ** i for i, ch in enumerate(name))) % 2**31


def pack(layout: data.StructLayout, **fields: int) -> int:
    word = 0
    for name, value in fields.items():
        f = layout[name]
        width = Shape.cast(f.shape).width
        word |= (int(value) & ((1 << width) - 1)) << f.offset
    return word


def unpack(layout: data.StructLayout, word: int) -> dict[str, int]:
    out = {}
    for name, f in layout:
        shape = Shape.cast(f.shape)
        v = (word >> f.offset) & ((1 << shape.width) - 1)
        if shape.signed and v >> (shape.width - 1):
            v -= 1 << shape.width
        out[name] = v
    return out


class Source:
    """Sends ``items`` (ints) on ``stream``, offering each with probability ``p_valid`` a
    cycle."""

    def __init__(self, stream, items, rng: np.random.Generator, p_valid: float = 1.0):
        self.s, self.items, self.rng, self.p = stream, deque(items), rng, p_valid
        self.cur: int | None = None
        self.sent = 0

    def drive(self, ctx) -> None:
        if self.cur is None and self.items and self.rng.random() < self.p:
            self.cur = self.items.popleft()
        ctx.set(self.s.valid, self.cur is not None)
        if self.cur is not None:
            ctx.set(Value.cast(self.s.payload), self.cur)

    def observe(self, ctx) -> None:
        ready = ctx.get(self.s.ready)
        if self.cur is not None and ready:
            self.cur = None
            self.sent += 1

    @property
    def done(self) -> bool:
        return self.cur is None and not self.items


class Sink:
    """Receives from ``stream``, ready with probability ``p_ready`` a cycle (always, for an
    ``always_ready`` stream)."""

    def __init__(self, stream, rng: np.random.Generator, p_ready: float = 1.0,
                 name: str = "sink"):
        self.s, self.rng, self.p, self.name = stream, rng, p_ready, name
        self.got: list[int] = []
        self.ready = 0
        self.held: int | None = None       # payload offered and not taken last cycle
        self.always = isinstance(stream.ready, Const)

    def drive(self, ctx) -> None:
        self.ready = 1 if self.always else int(self.rng.random() < self.p)
        if not self.always:
            ctx.set(self.s.ready, self.ready)

    def observe(self, ctx, t: int) -> None:
        valid = ctx.get(self.s.valid)
        payload = ctx.get(Value.cast(self.s.payload)) if valid else None
        if self.held is not None:
            assert valid, f"cycle {t}: {self.name}: valid dropped before a transfer"
            assert payload == self.held, (f"cycle {t}: {self.name}: payload changed while "
                                          f"waiting: {self.held:#x} -> {payload:#x}")
        if valid and self.ready:
            self.got.append(payload)
            self.held = None
        else:
            self.held = payload if valid else None
