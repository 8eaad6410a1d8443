"""Names shared by the network's modules: the missing-value marker and evidence types."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["MISSING", "Evidence", "Value"]

#: the missing-value marker in data columns
MISSING = -1

#: a state: its index or its name
Value = int | str

#: evidence: variable name -> a state, or a 1-D batch of states
Evidence = Mapping[str, Any]
