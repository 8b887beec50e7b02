"""The scan PE of the convolution engine (``docs/architecture.md``): one S-channel pair
in, one match a cycle multiplied, one result per accumulation out. :class:`SPE` and its
components (``queue``, ``extract``, ``address``, ``mac``, ``outbuf``, ``counters``)."""

from .layouts import pair_layout, result_layout, wval_addr_bits
from .pe import ISSUE_TO_OUT, OUT_SLOTS, PAIR_QUEUE, SPE, SPE_LATENCY

__all__ = ["pair_layout", "result_layout", "wval_addr_bits", "SPE", "SPE_LATENCY",
           "ISSUE_TO_OUT", "PAIR_QUEUE", "OUT_SLOTS"]
