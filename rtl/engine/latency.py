"""The engine's latencies and buffer sizes, as the performance model uses them
(``sim/engine_model.py`` imports this module; the RTL components define each number)."""

from __future__ import annotations

from ...sim.config import Config
from ..pe import OUT_SLOTS as PE_OUT_SLOTS
from ..pe import PE_STAGES
from .address import ADDRESS_STAGES, READ_STAGES
from .collector import COLLECT_BUFFER, COLLECT_STAGES
from .feeder import FEEDER_ENTRIES, FEEDER_STAGES
from .requant import REQUANT_STAGES

__all__ = ["ARRIVE", "OUT_SLOTS", "ENGINE_LATENCY", "queue_chunks"]

# from a step's broadcast (into the queues) to the earliest cycle a PE can finish it: the
# feeder's registers, then the PE's stage registers before its pair queue
ARRIVE = FEEDER_STAGES + PE_STAGES
# places for a PE's results: its output slots and its buffer at the collector (a PE
# stalls while all of them wait to be collected)
OUT_SLOTS = PE_OUT_SLOTS + COLLECT_BUFFER
# cycles a job spends outside the model's broadcast-to-result flow: from the start of RUN
# to the first broadcast (the sequencer's issue and step registers, the address and read
# stages), from a result leaving its PE to its retirement (collector, requantizer), and
# the model's calibration term for the completion handshake (fitted to the RTL)
_MODEL_CALIBRATION = 8
ENGINE_LATENCY = (2 + ADDRESS_STAGES + READ_STAGES) + (COLLECT_STAGES + REQUANT_STAGES) \
    + _MODEL_CALIBRATION


def queue_chunks(cfg: Config) -> int:
    """Chunk steps a PE can hold before the broadcast waits for it: its queue, the
    feeder's buffer, the PE's stage registers and its pair queue (``PE.depth``)."""
    return cfg.queue_depth + FEEDER_ENTRIES + PE_STAGES + max(2, cfg.queue_depth)
