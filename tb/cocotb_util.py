"""Shared pieces of the cocotb testbenches."""

from __future__ import annotations

from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge

__all__ = ["start_and_reset"]


async def start_and_reset(dut, idle: list, cycles: int = 3) -> None:
    """Start a 100 MHz clock, drive ``idle`` inputs low, hold ``rst`` for ``cycles`` rising
    edges and release it just after a falling edge (where the testbenches drive inputs)."""
    Clock(dut.clk, 10, unit="ns").start()
    for sig in idle:
        sig.value = 0
    dut.rst.value = 1
    for _ in range(cycles):
        await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0
