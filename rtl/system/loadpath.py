"""The load path: image words through the hardware decoder and the loader.

One pass of a LOAD (``protocol.py``): ``go`` starts the loader with the descriptor and
``commit``; the image's words then enter on ``i`` (``last`` on its final word), the decoder
(``rtl/decoder/``) checks and decodes them, the loader (``loader.py``) turns its chunks into
engine entries (bus writes on ``o`` when ``commit`` is high). ``result`` rises when the pass
is over: the decoder refused the image (``error``, its code) or the loader wrote the entry
of the image's final chunk. ``too_big``, ``entries`` and ``values`` are the loader's.
"""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ...sim.config import Config
from ..decoder import WORD_LAYOUT, Decoder
from .loader import Loader, write_layout
from .protocol import Target

__all__ = ["LoadPath"]


class LoadPath(wiring.Component):
    """Decoder and loader, one image a pass.

    Parameters
    ----------
    cfg : Config

    Members
    -------
    i : In(stream.Signature(WORD_LAYOUT))
        The image's words.
    go : In(1)
        Pulse: a pass starts (``target``, ``pe``, ``entry0``, ``value0``, ``commit``).
    target, pe, entry0, value0, commit :
        As the loader's.
    o : Out(stream.Signature(write_layout()))
        Bus writes.
    result : Out(1)
        The pass is over (held until the next ``go``).
    error : Out(4)
        The decoder's code (0: the image decoded).
    too_big : Out(1)
    entries, values : Out(32)
    """

    def __init__(self, cfg: Config):
        self.cfg = cfg
        super().__init__({
            "i": In(stream.Signature(WORD_LAYOUT)),
            "go": In(1), "target": In(Target), "pe": In(8),
            "entry0": In(32), "value0": In(32), "commit": In(1),
            "o": Out(stream.Signature(write_layout())),
            "result": Out(1), "error": Out(4), "too_big": Out(1),
            "entries": Out(32), "values": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.decoder = dec = Decoder(self.cfg)
        m.submodules.loader = ld = Loader(self.cfg)
        wiring.connect(m, wiring.flipped(self.i), dec.i)
        wiring.connect(m, dec.o, ld.i)
        wiring.connect(m, ld.o, wiring.flipped(self.o))
        refused = Signal()
        with m.If(self.go):
            m.d.sync += refused.eq(0)
        with m.Elif(dec.done & (dec.error != 0)):
            m.d.sync += refused.eq(1)
        m.d.comb += [ld.go.eq(self.go), ld.target.eq(self.target), ld.pe.eq(self.pe),
                     ld.entry0.eq(self.entry0), ld.value0.eq(self.value0),
                     ld.commit.eq(self.commit),
                     self.result.eq(refused | ld.finished), self.error.eq(dec.error),
                     self.too_big.eq(ld.too_big), self.entries.eq(ld.entries),
                     self.values.eq(ld.values)]
        return m
