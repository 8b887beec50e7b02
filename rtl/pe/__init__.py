"""The double-sparse processing element (``docs/pe.md``)."""

from .pe import PE, PE_STAGES, PEError, result_layout

__all__ = ["PE", "PEError", "result_layout", "PE_STAGES"]
