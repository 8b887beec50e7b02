"""The channel-sparse convolution engine (``docs/engine.md``).

One component a file: ``host.py`` (host bus and registers), ``check.py`` (descriptor
check), ``control.py``, ``sequencer.py``, ``address.py`` (address pipeline and activation
read), ``broadcast.py`` (queues), ``feeder.py``, ``collector.py``, ``requant.py``,
``encoder.py`` (re-encoder); ``engine.py`` instantiates the memories and the components and
connects them. ``regmap.py`` is the register map, ``layouts.py`` the payloads between the
components, ``latency.py`` the latencies the performance model uses.
"""

from .engine import Engine
from .host import READ_LATENCY
from .regmap import DESC, ERROR_MEANING, REG, REGION, EngineError, HostSignature

__all__ = ["Engine", "EngineError", "ERROR_MEANING", "HostSignature", "READ_LATENCY", "REG",
           "REGION", "DESC"]
