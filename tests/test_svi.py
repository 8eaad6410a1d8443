"""fit_svi: exact posterior on a conjugate model, divergence guard, checkpoint/resume."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO
from pyro.infer.autoguide import AutoNormal

from pyrobn.errors import CheckpointError, ConfigurationError, TrainingDiverged
from pyrobn.infer import FusedAdam, fit_svi, load_checkpoint

PRIOR_MEAN, PRIOR_SD, NOISE_SD = 0.0, 2.0, 1.0


def normal_normal(x: torch.Tensor) -> None:
    mu = pyro.sample("mu", dist.Normal(x.new_tensor(PRIOR_MEAN), x.new_tensor(PRIOR_SD)))
    with pyro.plate("data", len(x)):
        pyro.sample("obs", dist.Normal(mu, NOISE_SD), obs=x)


def exact_posterior(x: torch.Tensor) -> tuple[float, float]:
    precision = 1 / PRIOR_SD**2 + len(x) / NOISE_SD**2
    mean = (PRIOR_MEAN / PRIOR_SD**2 + float(x.sum()) / NOISE_SD**2) / precision
    return mean, precision**-0.5


def test_conjugate_normal_reaches_exact_posterior(device):
    x = (1.5 + torch.randn(50, generator=torch.Generator().manual_seed(1))).to(device)
    guide = AutoNormal(normal_normal)
    history = fit_svi(
        normal_normal,
        guide,
        x,
        steps=1500,
        # decay the step size tenfold so the last iterates average out the gradient noise
        optim=pyro.optim.ClippedAdam({"lr": 0.05, "lrd": 0.1 ** (1 / 1500)}),
        loss=Trace_ELBO(num_particles=4, vectorize_particles=True),
        progress=False,
        seed=0,
    )
    mean, sd = exact_posterior(x)
    loc = pyro.param("AutoNormal.locs.mu").item()
    scale = pyro.param("AutoNormal.scales.mu").item()
    assert abs(loc - mean) < 0.02  # posterior sd is 0.14: within 0.15 sd
    assert abs(scale - sd) / sd < 0.15
    assert history.steps == 1500 and len(history.losses) == 1500
    assert history.wall_time > 0
    # the loss decreased: the last 100 steps beat the first 100 on average
    assert sum(history.losses[-100:]) < sum(history.losses[:100])


def diverging_model() -> None:
    """loss = -theta; SGD with lr 1 moves theta to 1, 2, 3, ...; NaN once theta > 4.5."""
    theta = pyro.param("theta", torch.tensor(0.0))
    pyro.factor("f", torch.where(theta < 4.5, theta, torch.full_like(theta, math.nan)))


def empty_guide() -> None:
    pass


@pytest.mark.parametrize("validation", [True, False], ids=["validated", "unvalidated"])
def test_divergence_raises_at_the_step_and_rolls_back(validation):
    # validated: Pyro rejects the NaN factor; unvalidated: the loss itself is NaN
    pyro.enable_validation(validation)
    with pytest.raises(TrainingDiverged, match="step 5") as info:
        fit_svi(
            diverging_model,
            empty_guide,
            steps=20,
            optim=pyro.optim.SGD({"lr": 1.0}),
            progress=False,
        )
    assert info.value.step == 5
    assert math.isnan(info.value.loss)
    theta = pyro.param("theta")
    assert torch.isfinite(theta).all()
    assert float(theta) == 4.0  # the last step whose loss was finite


def test_checkpoint_then_resume_equals_uninterrupted(tmp_path):
    x = torch.randn(30, generator=torch.Generator().manual_seed(2))
    kwargs = dict(steps=40, progress=False, optim=pyro.optim.Adam({"lr": 0.05}))

    full = fit_svi(normal_normal, AutoNormal(normal_normal), x, seed=7, **kwargs)

    pyro.clear_param_store()
    path = tmp_path / "run.pt"
    first = fit_svi(
        normal_normal,
        AutoNormal(normal_normal),
        x,
        seed=7,
        checkpoint=path,
        **{**kwargs, "steps": 15},
    )
    assert load_checkpoint(path)["step"] == 15 and first.steps == 15

    pyro.clear_param_store()  # a new process would start from nothing
    resumed = fit_svi(
        normal_normal,
        AutoNormal(normal_normal),
        x,
        seed=999,  # the checkpoint's RNG state wins
        checkpoint=path,
        resume=True,
        optim=pyro.optim.Adam({"lr": 0.05}),
        steps=40,
        progress=False,
    )
    assert resumed.losses == full.losses
    assert resumed.steps == 40


def test_periodic_checkpoints_and_bad_files(tmp_path):
    path = tmp_path / "periodic.pt"
    x = torch.randn(10)
    fit_svi(
        normal_normal,
        AutoNormal(normal_normal),
        x,
        steps=10,
        checkpoint=path,
        checkpoint_every=4,
        progress=False,
    )
    assert load_checkpoint(path)["step"] == 10
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"bad\.pt"):
        load_checkpoint(bad)


def test_bad_options():
    with pytest.raises(ConfigurationError, match="steps"):
        fit_svi(normal_normal, empty_guide, torch.zeros(3), steps=-1)
    with pytest.raises(ConfigurationError, match="checkpoint"):
        fit_svi(normal_normal, empty_guide, torch.zeros(3), resume=True)
    with pytest.raises(ConfigurationError, match="checkpoint_every"):
        fit_svi(normal_normal, empty_guide, torch.zeros(3), checkpoint_every=0)


def test_fused_adam_is_pyro_adam_in_one_step(tmp_path):
    x = torch.randn(30, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    pyro_run = fit_svi(
        normal_normal,
        AutoNormal(normal_normal),
        x,
        steps=30,
        seed=1,
        progress=False,
        optim=pyro.optim.Adam({"lr": 0.05}),
    )
    pyro.clear_param_store()
    fused_run = fit_svi(
        normal_normal,
        AutoNormal(normal_normal),
        x,
        steps=30,
        seed=1,
        progress=False,
        optim=FusedAdam(lr=0.05),
    )
    assert fused_run.losses == pytest.approx(pyro_run.losses, rel=1e-10)
    # and it checkpoints and resumes exactly
    pyro.clear_param_store()
    path = tmp_path / "fused.pt"
    fit_svi(
        normal_normal,
        AutoNormal(normal_normal),
        x,
        steps=12,
        seed=1,
        progress=False,
        optim=FusedAdam(lr=0.05),
        checkpoint=path,
    )
    pyro.clear_param_store()
    resumed = fit_svi(
        normal_normal,
        AutoNormal(normal_normal),
        x,
        steps=30,
        progress=False,
        optim=FusedAdam(lr=0.05),
        checkpoint=path,
        resume=True,
    )
    assert resumed.losses == fused_run.losses


def nan_gradient_model() -> None:
    """A finite loss whose gradient is NaN: d/dθ sqrt(θ - θ) = 0 / 0."""
    theta = pyro.param("theta", torch.tensor(2.0))
    pyro.factor("f", theta + torch.sqrt(theta - theta))


@pytest.mark.parametrize("steps", [1, 5])
def test_nan_gradient_is_caught_and_rolled_back(steps):
    pyro.enable_validation(False)
    with pytest.raises(TrainingDiverged, match="diverged") as info:
        fit_svi(
            nan_gradient_model,
            empty_guide,
            steps=steps,
            optim=pyro.optim.SGD({"lr": 0.1}),
            progress=False,
        )
    assert info.value.step == 1  # the first step whose parameters are not finite
    assert pyro.param("theta").item() == 2.0  # the value before the NaN update


def test_a_seeded_run_leaves_the_callers_random_state_alone():
    x = torch.randn(20, generator=torch.Generator().manual_seed(0))
    before = torch.get_rng_state().clone()
    first = fit_svi(normal_normal, AutoNormal(normal_normal), x, steps=5, progress=False, seed=4)
    assert torch.equal(before, torch.get_rng_state())
    pyro.clear_param_store()
    again = fit_svi(normal_normal, AutoNormal(normal_normal), x, steps=5, progress=False, seed=4)
    assert first.losses == again.losses


def test_gradients_are_cleared_before_the_first_step_and_on_the_way_out():
    theta = pyro.param("theta", torch.tensor(0.0))

    def model() -> None:
        pyro.factor("f", -((pyro.param("theta") - 1.0) ** 2))

    def guide() -> None:
        pass

    # a stale gradient (a run stopped between its backward pass and its update)
    pyro.param("theta").unconstrained().grad = torch.tensor(1e6)
    fit_svi(model, guide, steps=1, optim=pyro.optim.SGD({"lr": 0.1}), progress=False)
    assert float(pyro.param("theta")) == pytest.approx(0.2)  # 0 + 0.1 * 2 * (1 - 0)
    assert pyro.param("theta").unconstrained().grad is None

    def interrupted(step: int, loss: float) -> None:
        pyro.param("theta").unconstrained().grad = torch.tensor(5.0)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit_svi(model, guide, steps=3, progress=False, callback=interrupted)
    assert theta.unconstrained().grad is None


class _Payload:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_crafted_checkpoint_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"version": 2, "rng": _Payload(str(marker))}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refused without running"):
        load_checkpoint(tmp_path / "evil.pt")
    x = torch.randn(10, generator=torch.Generator().manual_seed(0))
    with pytest.raises(CheckpointError):
        fit_svi(
            normal_normal,
            AutoNormal(normal_normal),
            x,
            steps=2,
            progress=False,
            checkpoint=tmp_path / "evil.pt",
            resume=True,
        )
    assert not marker.exists()
    # a real checkpoint with a parameter turned into NaN, or cut short
    fit_svi(
        normal_normal,
        AutoNormal(normal_normal),
        x,
        steps=2,
        progress=False,
        checkpoint=tmp_path / "ok.pt",
    )
    state = torch.load(tmp_path / "ok.pt", weights_only=True)
    state["params"][0] = torch.full_like(state["params"][0], math.nan)
    torch.save(state, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match="non-finite"):
        load_checkpoint(tmp_path / "nan.pt")
    del state["history"]
    torch.save(state, tmp_path / "short.pt")
    with pytest.raises(CheckpointError, match="history"):
        load_checkpoint(tmp_path / "short.pt")


def test_a_pair_without_parameters_runs_and_records_its_loss():
    """A model and guide with no free parameter (all observed, fixed tables): each step
    evaluates the loss, -log p(data), and changes nothing."""
    data = torch.tensor([0.5, -1.0, 2.0])

    def model(x):
        with pyro.plate("data", len(x)):
            pyro.sample("obs", dist.Normal(0.0, 1.0), obs=x)

    def guide(x):
        pass

    history = fit_svi(model, guide, data, steps=3, progress=False, seed=0)
    expected = -float(dist.Normal(0.0, 1.0).log_prob(data).sum())
    assert history.losses == pytest.approx([expected] * 3, rel=1e-6)
