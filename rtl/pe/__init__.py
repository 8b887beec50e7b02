"""The double-sparse processing element (``docs/pe.md``): :class:`PE` and its components
(``join``, ``window``, ``pick``, ``mac``, ``counters``)."""

from .join import PE_STAGES, PEError
from .mac import OUT_SLOTS, result_layout
from .pe import PE, PE_LATENCY, SELECT_TO_OUT

__all__ = ["PE", "PEError", "result_layout", "PE_STAGES", "PE_LATENCY", "SELECT_TO_OUT",
           "OUT_SLOTS"]
