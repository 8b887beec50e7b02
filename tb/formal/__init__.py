"""Formal proof harnesses (``docs/verification.md``), one small file per block, and the
list of properties that ``doublesparse prove`` and ``tb/test_formal.py`` run."""

from __future__ import annotations

from dataclasses import dataclass

from .common import Spec

__all__ = ["Property", "PROPERTIES"]


@dataclass(frozen=True)
class Property:
    """One property: ``harness(mutation)`` builds the harness, ``mode`` is ``prove``
    (k-induction of depth ``depth``) or ``bmc`` (``depth`` cycles from the initial state);
    ``cover_depth`` bounds the cover run and the runs of the mutations (bmc: a mutation
    must give a counterexample from the initial state); ``mutations`` name the deliberate
    faults that must make the property FAIL."""

    name: str
    block: str
    what: str
    harness: type[Spec]
    mode: str
    depth: int
    cover_depth: int

    @property
    def mutations(self) -> tuple[str, ...]:
        return self.harness.mutations


def _properties() -> list[Property]:
    from . import pe_mac, spe_queue

    return [
        Property("stream.pe.mac", "rtl/pe/mac.py", "o obeys the stream rules",
                 pe_mac.MACStream, "prove", 2, 12),
        Property("queue.spe.model", "rtl/spe/queue.py",
                 "pairs leave in order, none lost or duplicated; ready and head_valid "
                 "as documented", spe_queue.QueueModel, "prove", 1, 24),
    ]


PROPERTIES: list[Property] = _properties()
