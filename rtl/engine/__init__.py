"""The channel-sparse convolution engine (``docs/engine.md``)."""

from .engine import DESC, READ_LATENCY, REG, REGION, Engine, EngineError, HostSignature

__all__ = ["Engine", "EngineError", "HostSignature", "READ_LATENCY", "REG", "REGION", "DESC"]
