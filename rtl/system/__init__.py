"""The board system around the engine: :class:`UARTTx` and :class:`UARTRx` (``uart``)."""

from .uart import (
    DEFAULT_BAUD,
    FRAME_BITS,
    RX_LATENCY,
    TX_LATENCY,
    UARTRx,
    UARTTx,
    divisor_for,
    sample_offsets,
)

__all__ = ["UARTTx", "UARTRx", "divisor_for", "sample_offsets", "DEFAULT_BAUD", "FRAME_BITS",
           "RX_LATENCY", "TX_LATENCY"]
