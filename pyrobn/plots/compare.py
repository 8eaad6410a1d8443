"""Figures comparing posterior approximations (tutorials 11-12, :mod:`pyrobn.infer.compare`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pyrobn.plots import PALETTE


def forest(
    comparison: Any, var_names: list[str] | None = None, hdi_prob: float = 0.94, **kwargs: Any
) -> Any:
    """``arviz.plot_forest`` of every guide side by side (mean and HDI per element)."""
    import arviz as az

    names = list(comparison.results)
    axes = az.plot_forest(
        [comparison.results[n].idata for n in names],
        model_names=names,
        var_names=var_names,
        combined=True,
        hdi_prob=hdi_prob,
        colors=[PALETTE[i % len(PALETTE)] for i in range(len(names))],
        **kwargs,
    )
    figure = np.ravel(axes)[0].figure
    figure.suptitle("posterior mean and HDI per guide", y=1.02)
    return figure


def marginals(
    comparison: Any,
    site: str,
    index: int = 0,
    reference: Any = None,
    grid: torch.Tensor | None = None,
    ax: Any = None,
) -> Any:
    """Histogram of every guide's draws of one element of ``site``, with the reference density.

    ``reference`` is a 1-D density of that element (a distribution with ``log_prob``);
    it is drawn on ``grid`` (default: the range of all draws).
    """
    import matplotlib.pyplot as plt

    from pyrobn.errors import OutOfSupportError, UnknownVariableError

    if site not in comparison.sites:
        raise UnknownVariableError(f"no site {site!r}; the sites are {comparison.sites}")
    size = next(iter(comparison.results.values())).draws[site][0].numel()
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < size:
        raise OutOfSupportError(
            f"index must be an element of {site!r} in 0..{size - 1}, got {index!r}"
        )
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4))
    values = {}
    for name, result in comparison.results.items():
        draws = result.draws[site]
        values[name] = draws.reshape(draws.shape[0], -1)[:, index].double().cpu().numpy()
    everything = np.concatenate(list(values.values()))
    low, high = np.quantile(everything, [0.001, 0.999])
    bins = np.linspace(low, high, 50)
    for i, (name, v) in enumerate(values.items()):
        colour = PALETTE[i % len(PALETTE)]
        if np.ptp(v) == 0:
            ax.axvline(v[0], color=colour, lw=2, ls="--", label=f"{name} (point)")
        else:
            ax.hist(v, bins=bins, density=True, histtype="step", lw=1.6, color=colour, label=name)
    if reference is not None:
        x = grid if grid is not None else torch.linspace(low, high, 400, dtype=torch.float64)
        density = reference.log_prob(x).exp().cpu().numpy()
        ax.plot(x.cpu().numpy(), density, color="black", lw=2, label="exact")
    ax.set_xlabel(f"{site}[{index}]" if index else site)
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    return ax.figure


__all__ = ["forest", "marginals"]
