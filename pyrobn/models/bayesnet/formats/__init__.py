"""Reading and writing networks: pyrobn's JSON, BIF, XMLBIF, UAI, Hugin NET and pgmpy."""

from __future__ import annotations

__all__: list[str] = []
