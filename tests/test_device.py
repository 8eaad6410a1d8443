"""Device selection, seeding and the ``pyrobn info`` command."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import pyrobn
from pyrobn.cli import main
from pyrobn.errors import ConfigurationError, DeviceUnavailable


def test_default_device_follows_cuda(monkeypatch):
    monkeypatch.delenv("PYROBN_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert pyrobn.device().type == expected


def test_env_forces_cpu(monkeypatch):
    monkeypatch.setenv("PYROBN_DEVICE", "cpu")
    assert pyrobn.device() == torch.device("cpu")
    assert pyrobn.to_tensor([1.0, 2.0]).device == torch.device("cpu")


def test_env_cuda_without_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("PYROBN_DEVICE", "cuda")
    if torch.cuda.is_available():
        assert pyrobn.device().type == "cuda"
    else:
        with pytest.raises(DeviceUnavailable, match="PYROBN_DEVICE"):
            pyrobn.device()


def test_env_nonsense_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("PYROBN_DEVICE", "tpu")
    with pytest.raises(ConfigurationError, match="'tpu'"):
        pyrobn.device()


def test_to_tensor_dtypes():
    assert pyrobn.to_tensor(np.zeros(3)).dtype == torch.get_default_dtype()
    assert pyrobn.to_tensor(np.zeros(3, dtype=np.int64)).dtype == torch.int64
    assert pyrobn.to_tensor(torch.zeros(2, dtype=torch.float64)).dtype == torch.float64


def test_set_seed_seeds_torch_numpy_and_python():
    import random

    pyrobn.set_seed(3)
    first = (torch.rand(3), np.random.rand(3), random.random())  # noqa: NPY002
    pyrobn.set_seed(3)
    second = (torch.rand(3), np.random.rand(3), random.random())  # noqa: NPY002
    assert torch.equal(first[0], second[0])
    assert np.array_equal(first[1], second[1])
    assert first[2] == second[2]


def test_info_command(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert pyrobn.__version__ in out and "pyro-ppl" in out and "device" in out
