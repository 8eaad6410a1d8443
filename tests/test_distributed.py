"""Data-parallel fit_svi: 2 Gloo processes on CPU equal one process on the global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyro
import pytest
import torch

from pyrobn.errors import DistributedError
from pyrobn.infer import fit_svi, load_checkpoint

WORKER = str(Path(__file__).parent / "distributed_worker.py")


def launch(*args: str, processes: int = 2, timeout: float = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYROBN_DIST_TIMEOUT="30", PYROBN_DEVICE="cpu")
    command = [sys.executable]
    if processes > 1:
        command += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    return subprocess.run(
        [*command, WORKER, *args], capture_output=True, text=True, env=env, timeout=timeout
    )


MODELS = ["vae", "mixture"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[str, str]:
    folder = tmp_path_factory.mktemp("distributed")
    two, one = str(folder / "two"), str(folder / "one")
    result = launch(",".join(MODELS), two, "8", "6")
    assert result.returncode == 0, result.stderr[-3000:]
    result = launch(",".join(MODELS), one, "16", "6", processes=1)  # the 2 x 8 global batch
    assert result.returncode == 0, result.stderr[-3000:]
    return two, one


@pytest.mark.parametrize("model", MODELS)
def test_two_processes_equal_one_on_the_global_batch(model, runs):
    two, one = (f"{path}.{model}" for path in runs)
    a, b = torch.load(two), torch.load(one)
    assert a["state"].keys() == b["state"].keys() and a["state"]
    for name, value in a["state"].items():
        torch.testing.assert_close(value, b["state"][name], rtol=0, atol=1e-6, msg=name)
    assert a["losses"] == pytest.approx(b["losses"], rel=1e-9)
    # the parameters moved, so the comparison is not vacuous
    assert not all(torch.equal(a["state"][k], load_initial(model)[k]) for k in a["state"])
    # a checkpoint written by the distributed run loads in a single process
    assert load_checkpoint(two + ".ckpt")["step"] == 6


def load_initial(model: str) -> dict[str, torch.Tensor]:
    sys.path.insert(0, str(Path(WORKER).parent))
    try:
        from distributed_worker import build
    finally:
        sys.path.pop(0)
    import pyrobn

    pyrobn.set_seed(0)
    module, _, _ = build(model)
    return module.state_dict()


def test_data_that_cannot_be_split_fails_on_every_rank(tmp_path):
    # 64 rows, two processes drawing 40 each: too few rows
    result = launch("vae", str(tmp_path / "x.pt"), "40", "2")
    assert result.returncode != 0
    assert result.stderr.count("DistributedError") >= 2, result.stderr[-3000:]
    assert "too few for 2 processes" in result.stderr


def test_a_dead_peer_gives_a_clear_error_not_a_hang(tmp_path):
    result = launch("vae", str(tmp_path / "x.pt"), "8", "50", "--die-at", "2", timeout=200)
    assert result.returncode != 0
    assert "DistributedError" in result.stderr and "peer process" in result.stderr


def test_bad_launch_environment_says_what_to_set(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)

    def model():
        pyro.sample("x", pyro.distributions.Normal(0.0, 1.0), obs=torch.tensor(0.0))

    with pytest.raises(DistributedError, match="torchrun --nproc_per_node"):
        fit_svi(model, lambda: None, steps=1, progress=False, distributed=True)


def test_the_example_trains_the_vae_on_two_processes(tmp_path):
    example = Path(__file__).parent.parent / "examples" / "distributed_vae.py"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYROBN_DEVICE="cpu")
    checkpoint = tmp_path / "vae.pt"
    result = subprocess.run(
        [
            sys.executable,
            *("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"),
            str(example),
            *("--steps", "3", "--batch-size", "16", "--json", "--checkpoint", str(checkpoint)),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert '"processes": 2' in result.stdout
    assert load_checkpoint(checkpoint)["step"] == 3
