"""Data-parallel fit_svi: 2 Gloo processes on CPU equal one process on the global batch.

The runs that must succeed are launched by ``torchrun``, as a user launches them. The runs
that must fail (a dead peer, data that cannot be split) start each rank directly with the
variables torchrun sets (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), as ``srun`` or a
hand-written launcher would: torchrun's agent stops every other rank as soon as one
fails, and on a loaded machine it did so before a survivor had printed the
``DistributedError`` under test. Without an agent each rank ends by itself, so what a
survivor reports is what pyrobn raised, however slow the machine. Timeouts here are hang
guards, not expected durations (two busy loops beside this file made a launch take three
minutes).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pyro
import pytest
import torch

from pyrobn.errors import DistributedError
from pyrobn.infer import fit_svi, load_checkpoint

WORKER = str(Path(__file__).parent / "distributed_worker.py")
#: a guard against a hang, far above what a run takes even on a loaded machine
HANG_GUARD_S = 900
#: the group's timeout: how long a rank waits for a late peer before it gives up
_ENV = {"OMP_NUM_THREADS": "1", "PYROBN_DIST_TIMEOUT": "120", "PYROBN_DEVICE": "cpu"}


def launch(*args: str, processes: int = 2) -> subprocess.CompletedProcess:
    """Run the worker under torchrun (or plainly, for one process)."""
    command = [sys.executable]
    if processes > 1:
        command += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    return subprocess.run(
        [*command, WORKER, *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, **_ENV),
        timeout=HANG_GUARD_S,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch_ranks(*args: str, processes: int = 2) -> list[tuple[int, str]]:
    """Start every rank of the worker directly, without an agent; (exit code, stderr) each."""
    for _attempt in range(3):  # another process may take the free port before rank 0 does
        env = dict(
            os.environ,
            **_ENV,
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(_free_port()),
            WORLD_SIZE=str(processes),
            LOCAL_WORLD_SIZE=str(processes),
        )
        with tempfile.TemporaryDirectory() as folder:
            logs = [open(Path(folder) / f"rank{r}.err", "w+") for r in range(processes)]
            ranks = [
                subprocess.Popen(
                    [sys.executable, WORKER, *args],
                    env=dict(env, RANK=str(r), LOCAL_RANK=str(r)),
                    stdout=subprocess.DEVNULL,
                    stderr=logs[r],
                )
                for r in range(processes)
            ]
            try:
                codes = [rank.wait(timeout=HANG_GUARD_S) for rank in ranks]
            finally:
                for rank in ranks:
                    if rank.poll() is None:
                        rank.kill()
                        rank.wait()
            errors = []
            for log in logs:
                log.seek(0)
                errors.append(log.read())
                log.close()
        if not any("address already in use" in e.lower() for e in errors):
            break
    return list(zip(codes, errors))


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
    for code, stderr in launch_ranks("vae", str(tmp_path / "x.pt"), "40", "2"):
        assert code != 0
        assert "DistributedError" in stderr and "too few for 2 processes" in stderr, stderr[-3000:]


def test_a_dead_peer_gives_a_clear_error_not_a_hang(tmp_path):
    """Rank 1 exits at step 2; rank 0, left alone, raises DistributedError instead of
    hanging (its collective fails when the peer's connection closes, or after the group's
    timeout if the peer only stalls)."""
    (code0, stderr0), (code1, _) = launch_ranks(
        "vae", str(tmp_path / "x.pt"), "8", "50", "--die-at", "2"
    )
    assert code1 == 3  # the peer that died
    assert code0 != 0
    assert "DistributedError" in stderr0 and "peer process" in stderr0, stderr0[-3000:]


def test_bad_launch_environment_says_what_to_set(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)

    def model():
        pyro.sample("x", pyro.distributions.Normal(0.0, 1.0), obs=torch.tensor(0.0))

    with pytest.raises(DistributedError, match="torchrun --nproc_per_node"):
        fit_svi(model, lambda: None, steps=1, progress=False, distributed=True)


def test_the_example_trains_the_vae_on_two_processes(tmp_path):
    example = Path(__file__).parent.parent / "examples" / "distributed_vae.py"
    env = dict(os.environ, **_ENV)
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
        timeout=HANG_GUARD_S,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert '"processes": 2' in result.stdout
    assert load_checkpoint(checkpoint)["step"] == 3
