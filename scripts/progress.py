"""A small text progress bar for long runs (no dependency): redraws in place on a terminal,
prints one line per step otherwise (CI logs)."""

from __future__ import annotations

import sys
import time

__all__ = ["Progress"]


class Progress:
    def __init__(self, total: int, label: str, stream=None, width: int = 28):
        self.total, self.label, self.width = max(1, total), label, width
        self.stream = stream or sys.stderr
        self.done = 0
        self.t0 = time.time()
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def step(self, note: str = "", n: int = 1) -> None:
        self.done = min(self.total, self.done + n)
        el = time.time() - self.t0
        eta = el / self.done * (self.total - self.done)
        fill = round(self.width * self.done / self.total)
        bar = "#" * fill + "." * (self.width - fill)
        line = (f"{self.label} [{bar}] {self.done}/{self.total} {el:5.0f} s elapsed, "
                f"~{eta:4.0f} s left {note}")
        if self.tty:
            end = "\n" if self.done == self.total else ""
            self.stream.write("\r\x1b[2K" + line + end)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
