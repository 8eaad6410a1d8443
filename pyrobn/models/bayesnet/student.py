"""The notes' student network (2.1.1, eq. 1, Figura 1)."""

from __future__ import annotations

import torch

from pyrobn.models.bayesnet.cpt import CPT
from pyrobn.models.bayesnet.network import DiscreteBayesianNetwork

__all__ = ["student_network"]


def student_network(
    named_states: bool = False, device: str | torch.device | None = None
) -> DiscreteBayesianNetwork:
    """The student network of the notes (2.1.1, eq. 1, Figura 1), with their tables:

    x1 studies, x2 answers the theory well, x3 answers the practice well, x4 passes;
    p(x1, x2, x3, x4) = p(x1) p(x2 | x1) p(x3 | x1) p(x4 | x2, x3). State 1 = yes, 0 = no
    (named "no"/"yes" with ``named_states``). The notes list p(x4 | x2, x3) by rows
    (x2, x3) = (0,0), (1,0), (0,1), (1,1); here ``table[x2, x3]`` holds each row.
    """
    x4 = [[[0.95, 0.05], [0.40, 0.60]], [[0.35, 0.65], [0.01, 0.99]]]
    cpts = {
        "x1": CPT([0.10, 0.90]),
        "x2": CPT([[0.80, 0.20], [0.25, 0.75]], parents=["x1"]),
        "x3": CPT([[0.70, 0.30], [0.20, 0.80]], parents=["x1"]),
        "x4": CPT(x4, parents=["x2", "x3"]),
    }
    states = {n: ["no", "yes"] for n in cpts} if named_states else None
    return DiscreteBayesianNetwork(cpts, states=states, device=device)
