"""Names every doctest of the package may use without importing them, and a quiet backend."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import matplotlib
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

import pyrobn

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace):
    doctest_namespace.update(
        {"torch": torch, "np": np, "pyro": pyro, "dist": dist, "pyrobn": pyrobn}
    )
