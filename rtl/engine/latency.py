"""The engine's latencies and buffer sizes, as the performance model uses them
(``sim/engine_model.py`` imports this module; the RTL components define each number)."""

from __future__ import annotations

from ...sim.config import Config
from ..spe import ISSUE_TO_OUT, PAIR_QUEUE, SPE_LATENCY
from ..spe import OUT_SLOTS as PE_OUT_SLOTS
from .address import ADDRESS_STAGES, READ_STAGES
from .collector import COLLECT_BUFFER, COLLECT_STAGES
from .feeder import CREDIT_MARGIN, FEEDER_STAGES
from .requant import REQUANT_STAGES

__all__ = ["ARRIVE", "OUT_SLOTS", "ENGINE_LATENCY", "queue_chunks"]

# from a step's broadcast to the earliest cycle its PE can issue it: the feeder's stages,
# the PE's pair queue
ARRIVE = FEEDER_STAGES + (SPE_LATENCY - ISSUE_TO_OUT)
# places for a PE's results: its result buffer and its buffer at the collector (a PE
# stalls while all of them wait to be collected)
OUT_SLOTS = PE_OUT_SLOTS + COLLECT_BUFFER
# cycles a job spends outside the model's broadcast-to-issue flow: from the start of RUN
# to the first broadcast (the sequencer's issue and step registers, the address and read
# stages), from the last issue to its result leaving the PE, from there to its retirement
# (collector, requantizer), and the model's calibration term for the completion
# handshake (fitted to the RTL)
_MODEL_CALIBRATION = 8
ENGINE_LATENCY = (2 + ADDRESS_STAGES + READ_STAGES) + ISSUE_TO_OUT \
    + (COLLECT_STAGES + REQUANT_STAGES) + _MODEL_CALIBRATION


def queue_chunks(cfg: Config) -> int:
    """Chunk steps a PE can hold before the broadcast waits for it: its pair queue less
    the credit's margin (steps in the feeder count until they are dropped or queued)."""
    return PAIR_QUEUE - CREDIT_MARGIN
