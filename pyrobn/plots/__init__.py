"""Matplotlib figures used by the tutorials and the tour, one module per topic."""

from __future__ import annotations

__all__ = ["PALETTE"]

#: the colours every figure shares, so the tour's gallery reads as one piece
PALETTE = ["#1f5fa8", "#d1495b", "#2e8b57", "#edae49", "#6a4c93", "#00798c", "#8d6e63"]
