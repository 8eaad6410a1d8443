"""Variance schedules of the forward chain (notes 2.2.2.4, eq. 16) and their closed forms.

The forward chain adds Gaussian noise step by step, z_0 = x,

    q(z_t | z_{t-1}) = N(√(1 - β_t) z_{t-1}, β_t I),   t = 1, ..., T,

so that its marginals and its posteriors are Gaussian in closed form (ᾱ_t = Π_{s≤t} (1 - β_s)):

    q(z_t | x)           = N(α_t x, σ_t² I),      α_t = √ᾱ_t,  σ_t² = 1 - ᾱ_t,
    q(z_{t-1} | z_t, x)  = N(a_t x + b_t z_t, σ̃_t² I),
        a_t = √ᾱ_{t-1} β_t / (1 - ᾱ_t),  b_t = √(1 - β_t) (1 - ᾱ_{t-1}) / (1 - ᾱ_t),
        σ̃_t² = β_t (1 - ᾱ_{t-1}) / (1 - ᾱ_t),

and the signal-to-noise ratio SNR_t = α_t² / σ_t² falls from SNR_0 = ∞ to SNR_T ≈ 0.
Every number here is computed in float64 and cast once, so that the small end of the
schedule (β_1 ~ 1e-4) keeps its digits.

Schedules: ``"linear"`` (Ho et al. 2020: β from 1e-4 to 0.02 over 1000 steps, both scaled
by 1000 / T for other T), ``"cosine"`` (Nichol & Dhariwal 2021: ᾱ_t = f(t) / f(0),
f(t) = cos²((t / T + s) / (1 + s) · π / 2), s = 0.008, β_t capped at 0.999),
``"log_snr"`` (log SNR_t falling linearly from 10 to -10: every step removes the same
fraction of the signal-to-noise ratio, Kingma et al. 2021's view of the schedule; its
first step, from SNR = ∞ to e^10, is the one larger than the next), or the β_1..β_T
themselves: each in (0, 1), non-decreasing (the convention of Ho et al.: each step adds
at least as much noise as the one before; a schedule that breaks it is refused).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from pyrobn.errors import ConfigurationError, OutOfSupportError
from pyrobn.validation import check_int

__all__ = ["SCHEDULES", "Schedule", "betas_for"]

#: the named schedules
SCHEDULES = ("linear", "cosine", "log_snr")
#: the end points of the ``"log_snr"`` schedule: log SNR_1 and log SNR_T
LOG_SNR_RANGE = (10.0, -10.0)
#: the cap on β_t of the cosine schedule (Nichol & Dhariwal): keeps the last step finite
MAX_BETA = 0.999


def _linear(T: int) -> np.ndarray:
    scale = 1000.0 / T
    return np.minimum(np.linspace(scale * 1e-4, scale * 0.02, T), MAX_BETA)


def _cosine(T: int, s: float = 0.008) -> np.ndarray:
    t = np.arange(T + 1, dtype=np.float64) / T
    f = np.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    return np.minimum(1 - alpha_bar[1:] / alpha_bar[:-1], MAX_BETA)


def _log_snr(T: int) -> np.ndarray:
    hi, lo = LOG_SNR_RANGE
    log_snr = np.linspace(hi, lo, T)
    alpha_bar = np.concatenate([[1.0], 1 / (1 + np.exp(-log_snr))])  # sigmoid(log SNR)
    return np.minimum(1 - alpha_bar[1:] / alpha_bar[:-1], MAX_BETA)


def betas_for(
    schedule: str | Sequence[float] | torch.Tensor | np.ndarray, timesteps: int
) -> np.ndarray:
    """β_1..β_T (float64) of a named schedule, or the given ones after checking them.

    Raises:
        ConfigurationError: an unknown name, T < 1, a length other than T, or β that
            decrease somewhere (the index is named).
        OutOfSupportError: a β outside the open interval (0, 1), or not finite.

    >>> betas_for("linear", 1000)[[0, -1]].tolist()
    [0.0001, 0.02]
    """
    T = check_int(timesteps, "timesteps")
    if isinstance(schedule, str):
        if schedule == "linear":
            return _linear(T)
        if schedule == "cosine":
            return _cosine(T)
        if schedule == "log_snr":
            return _log_snr(T)
        raise ConfigurationError(
            f"unknown schedule {schedule!r}; choose one of {list(SCHEDULES)} or give the betas"
        )
    try:
        betas = np.asarray(
            schedule.detach().cpu().numpy() if isinstance(schedule, torch.Tensor) else schedule,
            dtype=np.float64,
        )
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"schedule must be a name or a sequence of betas: {exc}") from None
    if betas.ndim != 1 or betas.shape[0] != T:
        raise ConfigurationError(
            f"schedule must hold timesteps = {T} betas (one per step), got shape {betas.shape}"
        )
    bad = ~np.isfinite(betas) | (betas <= 0) | (betas >= 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise OutOfSupportError(
            f"schedule[{i}] = {betas[i]!r}: every β_t must lie in the open interval (0, 1)"
        )
    falls = np.diff(betas) < 0
    if falls.any():
        i = int(np.flatnonzero(falls)[0])
        raise ConfigurationError(
            f"schedule is not monotone: β[{i + 1}] = {betas[i + 1]:.6g} < β[{i}] = "
            f"{betas[i]:.6g} (the forward chain must add at least as much noise at each step)"
        )
    return betas


class Schedule:
    """The closed forms of one schedule, as float64 tensors indexed by t = 0, ..., T.

    Index 0 is x itself (α_0 = 1, σ_0 = 0); the posterior coefficients a_t, b_t, σ̃_t² are
    defined for t ≥ 2 (index 0 and 1 hold 0). ``Schedule.as_dict()`` gives them all.

    >>> s = Schedule("cosine", 10)
    >>> bool(torch.all(s.alpha[1:] ** 2 + s.sigma[1:] ** 2 - 1 < 1e-12))
    True
    """

    def __init__(self, schedule: Any, timesteps: int) -> None:
        betas = torch.from_numpy(betas_for(schedule, timesteps))
        T = betas.shape[0]
        self.timesteps = T
        self.beta = torch.cat([betas.new_zeros(1), betas])
        alpha_bar = torch.cumprod(1 - self.beta, 0)
        self.alpha_bar = alpha_bar
        self.alpha = alpha_bar.sqrt()
        # 1 - ᾱ_t accumulated as 1 - Π (1 - β) without cancellation: -expm1(Σ log1p(-β))
        one_minus = -torch.expm1(torch.cumsum(torch.log1p(-self.beta), 0))
        self.sigma2 = one_minus
        self.sigma = one_minus.sqrt()
        a = torch.zeros(T + 1, dtype=torch.float64)
        b = torch.zeros(T + 1, dtype=torch.float64)
        var = torch.zeros(T + 1, dtype=torch.float64)
        if T >= 2:
            t = torch.arange(2, T + 1)
            a[t] = self.alpha[t - 1] * self.beta[t] / one_minus[t]
            b[t] = (1 - self.beta[t]).sqrt() * one_minus[t - 1] / one_minus[t]
            var[t] = self.beta[t] * one_minus[t - 1] / one_minus[t]
        self.post_x, self.post_z, self.post_var = a, b, var

    @property
    def snr(self) -> torch.Tensor:
        """SNR_t = α_t² / σ_t² (inf at t = 0)."""
        return self.alpha_bar / self.sigma2

    def as_dict(self) -> dict[str, torch.Tensor]:
        """Every per-step tensor by name (the model keeps them as buffers)."""
        return {
            "beta": self.beta,
            "alpha": self.alpha,
            "sigma": self.sigma,
            "post_x": self.post_x,
            "post_z": self.post_z,
            "post_std": self.post_var.sqrt(),
        }
