"""Bad input to DiffusionModel and GAN: a pyrobn error naming the fault, never a NaN or a
raw torch exception (issue 18)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pyrobn.errors import (
    CheckpointError,
    ConfigurationError,
    NonFiniteError,
    OutOfSupportError,
    PyrobnValueError,
    ShapeError,
)
from pyrobn.models.diffusion import DiffusionModel
from pyrobn.models.gan import GAN

FAST = settings(max_examples=15, deadline=None)


def _dm(**kwargs) -> DiffusionModel:
    return DiffusionModel(4, **{"levels": 5, "timesteps": 6, "hidden": (8,), **kwargs})


def _gan(**kwargs) -> GAN:
    return GAN(4, **{"levels": 5, "latent_dim": 2, "hidden": (8,), **kwargs})


_X = torch.tensor([[0, 1, 2, 3], [4, 3, 2, 1], [0, 0, 4, 4]])


# ---------------------------------------------------------------------- schedules


@FAST
@given(
    st.integers(0, 5),
    st.one_of(
        st.floats(max_value=0.0, allow_nan=False),
        st.floats(min_value=1.0, allow_nan=False),
        st.just(math.nan),
    ),
)
def test_a_beta_outside_the_open_unit_interval_is_named(index, bad):
    betas = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    betas[index] = bad
    with pytest.raises(OutOfSupportError, match=rf"schedule\[{index}\]"):
        _dm(schedule=betas)


@FAST
@given(st.lists(st.floats(0.01, 0.9), min_size=6, max_size=6, unique=True))
def test_a_non_monotone_schedule_is_refused(raw):
    betas = sorted(raw, reverse=True)
    with pytest.raises(ConfigurationError, match="not monotone"):
        _dm(schedule=betas)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"schedule": "quadratic"}, "unknown schedule"),
        ({"schedule": [0.1, 0.2]}, "timesteps = 6 betas"),
        ({"schedule": [[0.1] * 6]}, "timesteps = 6 betas"),
        ({"schedule": ["a"] * 6}, "sequence of betas"),
        ({"timesteps": 0}, "timesteps"),
        ({"timesteps": -3}, "timesteps"),
        ({"timesteps": 2.5}, "timesteps"),
        ({"prediction": "score"}, "prediction"),
        ({"levels": 1}, "levels"),
        ({"n_classes": 1}, "n_classes"),
        ({"n_classes": -2}, "n_classes"),
        ({"p_uncond": 1.0}, "p_uncond"),
        ({"dropout": -0.1}, "dropout"),
        ({"hidden": (8, 0)}, "hidden"),
        ({"activation": "gelu"}, "activation"),
    ],
)
def test_bad_diffusion_configuration(kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        _dm(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"latent_dim": 0}, "latent_dim"),
        ({"levels": 1}, "levels"),
        ({"n_classes": 1}, "n_classes"),
        ({"dropout": 1.5}, "dropout"),
        ({"hidden": (-1,)}, "hidden"),
    ],
)
def test_bad_gan_configuration(kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        _gan(**kwargs)


# ---------------------------------------------------------------------- data


MODELS = [_dm, _gan]


@pytest.mark.parametrize("make", MODELS, ids=["diffusion", "gan"])
@FAST
@given(row=st.integers(0, 2), col=st.integers(0, 3), value=st.sampled_from([-1, 5, 17, 2.5]))
def test_values_outside_the_levels_are_named(make, row, col, value):
    x = _X.double().clone()
    x[row, col] = value
    with pytest.raises(OutOfSupportError, match=rf"\({row}, {col}\)"):
        make().fit(x, steps=1, progress=False)


@pytest.mark.parametrize("make", MODELS, ids=["diffusion", "gan"])
@FAST
@given(row=st.integers(0, 2), col=st.integers(0, 3), value=st.sampled_from([math.nan, math.inf]))
def test_nan_is_refused(make, row, col, value):
    x = torch.randn(3, 4, dtype=torch.float64)
    x[row, col] = value
    with pytest.raises(NonFiniteError, match=rf"\({row}, {col}\)"):
        make(levels=None).fit(x, steps=1, progress=False)
    levels = _X.double().clone()
    levels[row, col] = value
    with pytest.raises(NonFiniteError):
        make().fit(levels, steps=1, progress=False)


@pytest.mark.parametrize("make", MODELS, ids=["diffusion", "gan"])
@pytest.mark.parametrize(
    "x",
    [torch.zeros(3, 5, dtype=torch.long), torch.zeros(4, dtype=torch.long), torch.zeros(2, 2, 4)],
)
def test_wrong_shapes(make, x):
    with pytest.raises(ShapeError, match="shape"):
        make().fit(x, steps=1, progress=False)


@pytest.mark.parametrize("make", MODELS, ids=["diffusion", "gan"])
@pytest.mark.parametrize("x", ["abc", [[1, 2], [3]], [[1j, 2, 3, 4]]])
def test_non_numeric_data(make, x):
    with pytest.raises(PyrobnValueError):
        make().fit(x, steps=1, progress=False)


# ---------------------------------------------------------------------- labels


@pytest.mark.parametrize("make", MODELS, ids=["diffusion", "gan"])
@FAST
@given(label=st.one_of(st.integers(3, 100), st.integers(-100, -1)), row=st.integers(0, 2))
def test_unknown_class(make, label, row):
    model = make(n_classes=3)
    y = torch.tensor([0, 1, 2])
    y[row] = label
    with pytest.raises(OutOfSupportError, match=rf"\({row},\)"):
        model.fit(_X, y, steps=1, progress=False)
    with pytest.raises(OutOfSupportError):
        model.sample(2, y=label)


@pytest.mark.parametrize("make", MODELS, ids=["diffusion", "gan"])
def test_labels_and_conditioning_must_agree(make):
    with pytest.raises(ConfigurationError, match="unconditional"):
        make().fit(_X, [0, 1, 0], steps=1, progress=False)
    with pytest.raises(ConfigurationError, match="class-conditional"):
        make(n_classes=3).fit(_X, steps=1, progress=False)
    with pytest.raises(ShapeError, match="shape"):
        make(n_classes=3).fit(_X, [0, 1], steps=1, progress=False)
    with pytest.raises(ConfigurationError, match="class-conditional"):
        make(n_classes=3).sample(2)


# ---------------------------------------------------------------------- options


@pytest.mark.parametrize("make", MODELS, ids=["diffusion", "gan"])
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "exactly one of steps= and epochs="),
        ({"steps": 1, "epochs": 1}, "exactly one of steps= and epochs="),
        ({"steps": 0}, "steps"),
        ({"epochs": -1}, "epochs"),
        ({"steps": 1, "batch_size": 0}, "batch_size"),
        ({"steps": 1, "lr": 0.0}, "lr"),
        ({"steps": 1, "lr": math.nan}, "lr"),
    ],
)
def test_bad_fit_options(make, kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        make().fit(_X, progress=False, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"steps": 1, "time_samples": 0}, "time_samples"),
        ({"steps": 1, "ema": 1.0}, "ema"),
        ({"steps": 1, "x_val": torch.zeros(2, 3, dtype=torch.long)}, "x_val"),
    ],
)
def test_bad_diffusion_fit_options(kwargs, match):
    with pytest.raises(PyrobnValueError, match=match):
        _dm().fit(_X, progress=False, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": 0}, "n must"),
        ({"n": 2, "steps": 1}, "steps must lie in 2..6"),
        ({"n": 2, "steps": 7}, "steps must lie in 2..6"),
        ({"n": 2, "eta": -0.5}, "eta"),
        ({"n": 2, "eta": 2.0}, "eta"),
        ({"n": 2, "guidance": -1.0}, "guidance"),
        ({"n": 2, "guidance": math.nan}, "guidance"),
        ({"n": 2, "guidance": 1.0}, "class-conditional"),
    ],
)
def test_bad_sampling_options(kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        _dm().sample(**kwargs)


@FAST
@given(st.floats(min_value=1e-3, max_value=10.0))
def test_guidance_needs_label_dropout(w):
    # p_uncond = 0: the "no label" output f(z, t, ∅) was never trained
    with pytest.raises(ConfigurationError, match="p_uncond"):
        _dm(n_classes=2, p_uncond=0.0, guidance=w)
    with pytest.raises(ConfigurationError, match="p_uncond"):
        _dm(n_classes=2, p_uncond=0.0).sample(2, y=0, guidance=w)


@FAST
@given(st.one_of(st.integers(-5, 0), st.integers(7, 50), st.just(2.5)))
def test_steps_outside_the_chain(t):
    model = _dm()
    with pytest.raises(OutOfSupportError, match=r"t must (lie in|hold integers)"):
        model.encode(_X, [1, t])
    with pytest.raises(OutOfSupportError, match=r"t must (lie in|hold integers)"):
        model.denoise(torch.zeros(3, 4), [t, 1, 1])


def test_bad_denoise_and_generate_inputs():
    model = _dm()
    with pytest.raises(ShapeError):
        model.denoise(torch.zeros(3, 5), 1)
    with pytest.raises(NonFiniteError):
        model.denoise(torch.full((3, 4), math.nan), 1)
    with pytest.raises(ShapeError):
        model.denoise(torch.zeros(3, 4), [1, 2])
    gan = _gan()
    with pytest.raises(ShapeError):
        gan.generate(torch.zeros(3, 3))
    with pytest.raises(NonFiniteError):
        gan.generate(torch.full((3, 2), math.inf))


# ---------------------------------------------------------------------- files


@pytest.mark.parametrize("make", MODELS, ids=["diffusion", "gan"])
def test_corrupt_and_foreign_files(make, tmp_path):
    model = make()
    path = tmp_path / "m.pt"
    model.save(path)
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        type(model).load(tmp_path / "cut.pt")
    other = _gan() if isinstance(model, DiffusionModel) else _dm()
    other.save(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="holds a"):
        type(model).load(tmp_path / "other.pt")
    state = torch.load(path, weights_only=True)
    state["config"]["hidden"] = [8, 0]
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="invalid configuration"):
        type(model).load(tmp_path / "bad.pt")
    state = torch.load(path, weights_only=True)
    key = next(k for k in state["state_dict"] if k.endswith("weight"))
    state["state_dict"][key] = state["state_dict"][key] * math.nan
    torch.save(state, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match="NaN"):
        type(model).load(tmp_path / "nan.pt")
