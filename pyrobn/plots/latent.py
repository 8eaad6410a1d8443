"""Figures of latent-variable models: image mosaics and latent scatter plots (tutorials 09-10)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pyrobn.plots import PALETTE

__all__ = ["image_grid", "latent_scatter", "loss_curves"]


def _numpy(values: Any) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def image_grid(
    images: Any,
    ax: Any = None,
    *,
    side: int = 8,
    title: str | None = None,
    row_labels: list[str] | None = None,
) -> Any:
    """Draw a (rows, cols, side²) or (n, side²) array of images as one grey mosaic.

    A 2-D array of n images is laid out in one row. Pixels are shown on [0, 1]
    (white background, dark ink, as the digits are drawn). Returns the axes.
    """
    import matplotlib.pyplot as plt

    pixels = _numpy(images)
    if pixels.ndim == 2:
        pixels = pixels[None]
    rows, cols = pixels.shape[:2]
    tiles = pixels.reshape(rows, cols, side, side)
    pad = np.ones((rows, cols, side + 2, side + 2))
    pad[:, :, 1:-1, 1:-1] = 1 - tiles
    mosaic = pad.transpose(0, 2, 1, 3).reshape(rows * (side + 2), cols * (side + 2))
    if ax is None:
        _, ax = plt.subplots(figsize=(0.45 * cols + 1, 0.45 * rows + 0.5))
    ax.imshow(mosaic, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    if row_labels is not None:
        ax.set_yticks((np.arange(rows) + 0.5) * (side + 2))
        ax.set_yticklabels(row_labels)
    else:
        ax.set_yticks([])
    if title:
        ax.set_title(title)
    return ax


def latent_scatter(
    z: Any,
    color: Any,
    ax: Any = None,
    *,
    title: str | None = None,
    discrete: bool = False,
    label: str | None = None,
) -> Any:
    """Scatter the first two latent coordinates coloured by ``color`` (a label or a value).

    ``discrete=True`` gives one palette colour per integer label and a legend;
    otherwise a colour bar named ``label``.
    """
    import matplotlib.pyplot as plt

    points, values = _numpy(z), _numpy(color)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4.5))
    if discrete:
        cmap = plt.get_cmap("tab10")
        for k in np.unique(values):
            mask = values == k
            ax.scatter(points[mask, 0], points[mask, 1], s=6, color=cmap(int(k) % 10), label=str(k))
        ax.legend(markerscale=2.5, fontsize=7, ncol=2, title=label, loc="best")
    else:
        sc = ax.scatter(points[:, 0], points[:, 1], s=5, c=values, cmap="viridis")
        ax.figure.colorbar(sc, ax=ax, label=label)
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    if title:
        ax.set_title(title)
    return ax


def loss_curves(histories: dict[str, Any], ax: Any = None, *, per: float = 1.0) -> Any:
    """Plot loss histories (``History`` or lists) divided by ``per`` (e.g. the data size)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    for i, (name, history) in enumerate(histories.items()):
        losses = np.asarray(getattr(history, "losses", history), dtype=float) / per
        ax.plot(losses, lw=1, color=PALETTE[i % len(PALETTE)], label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    return ax
