"""Shared fixtures: a clean Pyro state per test, the devices to run on, and a guard that no
test (no library call) leaves torch's thread count changed.

The suite runs in a random order (pytest-randomly; the seed is printed at the top; replay an
order with ``pytest --randomly-seed=N``, or turn it off with ``-p no:randomly``).

Hypothesis draws the same examples on every run (profile ``"ci"``: derandomized), so that a
run's outcome does not depend on the run; ``HYPOTHESIS_PROFILE=explore`` draws new examples
on each run (run it when you touch input checks, and keep what it finds as a test)."""

from __future__ import annotations

import os

# One thread per test process (and per tutorial subprocess): with pytest-xdist on two
# cores, two torch threads per worker make small tensor operations several times slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pyro
import pytest
import torch
from hypothesis import settings

import pyrobn

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, max_examples=500, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

torch.set_num_threads(1)
DEVICES = [str(d) for d in pyrobn.available_devices()]


@pytest.fixture(autouse=True)
def _clean_pyro_state():
    pyro.clear_param_store()
    pyro.enable_validation(True)
    yield
    pyro.clear_param_store()


@pytest.fixture(autouse=True)
def _threads_unchanged(request):
    """Fail any test after which torch's thread count differs from the suite's one thread."""
    yield
    threads = torch.get_num_threads()
    if threads != 1:
        torch.set_num_threads(1)
        pytest.fail(f"{request.node.nodeid} left torch with {threads} threads (1 expected)")


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """Each test that takes ``device`` runs on CPU, and on CUDA when there is one."""
    return torch.device(request.param)
