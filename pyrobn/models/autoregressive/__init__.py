"""Autoregressive models (notes 2.2.2.1, eq. 15, Figura 8): images and text.

:class:`AutoregressiveModel` over D variables (the book's digits), and
:class:`TextAutoregressiveModel`, the same factorisation over characters, beside the
n-gram Markov chains of 2.1.3.3.
"""

from __future__ import annotations

from pyrobn.models.autoregressive.conditionals import LIKELIHOODS
from pyrobn.models.autoregressive.model import (
    NETWORKS,
    AutoregressiveDistribution,
    AutoregressiveModel,
)
from pyrobn.models.autoregressive.text import TextAutoregressiveModel

__all__ = [
    "LIKELIHOODS",
    "NETWORKS",
    "AutoregressiveDistribution",
    "AutoregressiveModel",
    "TextAutoregressiveModel",
]
