"""Shared fixtures: a clean Pyro state per test and the devices to run on."""

from __future__ import annotations

import os

# One thread per test process (and per tutorial subprocess): with pytest-xdist on two
# cores, two torch threads per worker make small tensor operations several times slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pyro
import pytest
import torch

import pyrobn

torch.set_num_threads(1)
DEVICES = [str(d) for d in pyrobn.available_devices()]


@pytest.fixture(autouse=True)
def _clean_pyro_state():
    pyro.clear_param_store()
    pyro.enable_validation(True)
    yield
    pyro.clear_param_store()


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """Each test that takes ``device`` runs on CPU, and on CUDA when there is one."""
    return torch.device(request.param)
