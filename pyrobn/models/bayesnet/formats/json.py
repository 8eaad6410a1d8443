"""The pyrobn JSON format."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from pyrobn.errors import ConfigurationError
from pyrobn.models.bayesnet.cpt import CPT

if TYPE_CHECKING:
    from pyrobn.models.bayesnet.network import DiscreteBayesianNetwork

__all__ = ["JSON_FORMAT", "JSON_VERSION", "from_json", "to_json"]

JSON_FORMAT = "pyrobn.bayesnet"
JSON_VERSION = 1


def to_json(net: DiscreteBayesianNetwork, path: str | os.PathLike | None = None) -> str:
    """The network as JSON (written to ``path`` when given)::

        {"format": "pyrobn.bayesnet", "version": 1,
         "nodes": [{"name": "x2", "parents": ["x1"], "states": ["no", "yes"] | null,
                    "table": [[0.8, 0.2], [0.25, 0.75]]}, ...]}

    Nodes are in topological order; ``table`` has one axis per parent (in the order
    of ``parents``) then the node's states, exactly as :class:`CPT` takes it.
    Floats are written with full precision, so a round trip is exact.
    """
    doc = {
        "format": JSON_FORMAT,
        "version": JSON_VERSION,
        "nodes": [
            {
                "name": n,
                "parents": list(net.parents(n)),
                "states": list(net.states[n]) if net.states[n] else None,
                "table": net.table(n).detach().cpu().tolist(),
            }
            for n in net.variables
        ],
    }
    text = json.dumps(doc, indent=1)
    if path is not None:
        Path(path).write_text(text)
    return text


def from_json(
    cls: type[DiscreteBayesianNetwork],
    source: str | os.PathLike,
    device: str | torch.device | None = None,
) -> DiscreteBayesianNetwork:
    """Read a network written by :meth:`to_json` (a path or the JSON text itself)."""
    text = str(source)
    if isinstance(source, os.PathLike) or not text.lstrip().startswith("{"):
        try:
            text = Path(source).read_text()
        except OSError as exc:
            raise ConfigurationError(f"cannot read network file {str(source)!r}: {exc}") from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != JSON_FORMAT:
        raise ConfigurationError(
            f"not a {JSON_FORMAT} document (missing 'format': '{JSON_FORMAT}')"
        )
    if doc.get("version") != JSON_VERSION:
        raise ConfigurationError(f"unsupported {JSON_FORMAT} version {doc.get('version')!r}")
    try:
        cpts = {nd["name"]: CPT(nd["table"], nd.get("parents", [])) for nd in doc["nodes"]}
        states = {nd["name"]: nd["states"] for nd in doc["nodes"] if nd.get("states")}
    except (KeyError, TypeError) as exc:
        raise ConfigurationError(f"malformed node in {JSON_FORMAT} document: {exc}") from exc
    return cls(cpts, states=states or None, device=device)
