"""The deterministic autoencoder of the lecture: z = hφ(x), x̂ = fθ(z), loss MSE.

Lecture ("Autoencoder (AE)" and "Diferencia conceptual entre AE y VAE"): the code is a
function of x and nothing ties the latent space to a prior, so it compresses but does not
generate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyro
import torch
from pyro.optim import PyroOptim

from pyrobn.errors import ConfigurationError
from pyrobn.graph import GraphNode, ModelGraph
from pyrobn.models.vae.base import AutoencodingModel
from pyrobn.models.vae.latent import LatentTools
from pyrobn.nn import encoder_decoder

__all__ = ["Autoencoder"]


class Autoencoder(AutoencodingModel, LatentTools):
    """The deterministic autoencoder of the lecture: z = hφ(x), x̂ = fθ(z), loss MSE.

    L_recon = (1/N) Σ_i ||x_i - fθ(hφ(x_i))||² (lecture, "Autoencoder (AE)"), written as
    a Pyro model with the factor exp(-||x - x̂||²) per row, so it trains through the same
    :func:`pyrobn.infer.fit_svi` loop (the guide is empty: nothing is latent). No prior on
    z: it compresses but does not generate, the "diferencia conceptual" with the VAE.
    ``sigmoid_output=True`` maps the reconstruction into (0, 1), for images.

    >>> ae = pyrobn.Autoencoder(8, latent_dim=2, hidden=(16,), sigmoid_output=True)
    >>> x = torch.rand(30, 8)
    >>> ae.fit(x, steps=5, seed=0, progress=False).fit_result_.objective_name
    'neg_squared_error'
    >>> ae.encode(x).shape
    torch.Size([30, 2])
    """

    def __init__(
        self,
        data_dim: int,
        latent_dim: int = 2,
        hidden: Sequence[int] = (256, 128),
        activation: str = "relu",
        sigmoid_output: bool = False,
    ) -> None:
        super().__init__(
            data_dim=data_dim,
            latent_dim=latent_dim,
            hidden=list(hidden) if isinstance(hidden, Sequence) else hidden,
            activation=activation,
            sigmoid_output=sigmoid_output,
        )
        hidden = self._init_common(data_dim, latent_dim, hidden, activation)
        if not isinstance(sigmoid_output, bool):
            raise ConfigurationError(
                f"sigmoid_output must be True or False, got {sigmoid_output!r}"
            )
        self.sigmoid_output = sigmoid_output
        self._check_network_size(
            [data_dim, *hidden, latent_dim], [latent_dim, *reversed(hidden), data_dim]
        )
        self._set_networks(
            *encoder_decoder(data_dim, latent_dim, hidden, activation, encoder_outputs=1)
        )

    @property
    def n_parameters(self) -> int:
        """Free parameters: encoder hφ and decoder fθ (no generative model to separate)."""
        return self._count(self.encoder) + self._count(self.decoder)

    def graph(self) -> ModelGraph:
        """x -> z = hφ(x) -> x̂ = fθ(z): deterministic nodes, no prior (not a generative
        network: compare Figura 9's VAE).

        >>> pyrobn.Autoencoder(4, hidden=(8,)).graph().node("z").role
        'deterministic'
        """
        nodes = [
            GraphNode("x", "observed", label="$x$"),
            GraphNode("z", "deterministic", label="$z$"),
            GraphNode("x_hat", "deterministic", label=r"$\hat x$"),
            GraphNode("phi", "parameter", label=r"$\phi$"),
            GraphNode("theta", "parameter", label=r"$\theta$"),
        ]
        edges = [("x", "z"), ("phi", "z"), ("z", "x_hat"), ("theta", "x_hat")]
        return ModelGraph(
            nodes, edges, plates={"data": (["x", "z", "x_hat"], "N")}, title="autoencoder"
        )

    def _reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        out = self.decoder(self.encoder(x))
        return torch.sigmoid(out) if self.sigmoid_output else out

    def model(self, x: torch.Tensor, batch_size: int | None = None) -> None:
        """log-factor -||x_i - fθ(hφ(x_i))||² per row of a subsample (the MSE loss)."""
        with pyro.plate("data", x.shape[0], subsample_size=batch_size, device=x.device) as idx:
            xb = x if batch_size is None else x[idx]
            pyro.factor("reconstruction", -(self._reconstruct(xb) - xb).pow(2).sum(-1))

    def guide(self, x: torch.Tensor, batch_size: int | None = None) -> None:
        """Nothing is latent; the plate only draws the subsample the model reuses."""
        with pyro.plate("data", x.shape[0], subsample_size=batch_size, device=x.device):
            pass

    def fit(
        self,
        x: Any,
        *,
        steps: int = 2000,
        batch_size: int | None = 128,
        lr: float = 1e-3,
        jit: bool | None = None,
        optim: PyroOptim | None = None,
        **kwargs: Any,
    ) -> Autoencoder:
        """Minimise N · MSE by Adam through :func:`pyrobn.infer.fit_svi` (see
        :meth:`pyrobn.VAE.fit`); returns the model. ``fit_result_.objective`` is minus the
        summed squared error per step (higher is better)."""
        x = self._check_x(x, matrix=True)
        return self._fit(
            self.model,
            self.guide,
            (x,),
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            loss="trace",
            jit=jit,
            num_particles=1,
            optim=optim,
            objective_name="neg_squared_error",
            **kwargs,
        )

    def _no_draws(self, sample: bool) -> None:
        if sample:
            raise ConfigurationError(
                "the autoencoder's code and reconstruction are deterministic: sample=True "
                "needs a VAE"
            )

    @torch.no_grad()
    def encode(self, x: Any, *, sample: bool = False, seed: int | None = None) -> torch.Tensor:
        """z = hφ(x); x of shape (..., D). (``sample`` exists for the latent tools' sake and
        must be False: nothing is random here.)"""
        self._no_draws(sample)
        return self.encoder(self._check_x(x))

    @torch.no_grad()
    def decode(self, z: Any, *, sample: bool = False, seed: int | None = None) -> torch.Tensor:
        """x̂ = fθ(z); z of shape (..., L)."""
        self._no_draws(sample)
        out = self.decoder(self._check_z(z))
        return torch.sigmoid(out) if self.sigmoid_output else out

    def reconstruct(self, x: Any) -> torch.Tensor:
        """fθ(hφ(x))."""
        return self.decode(self.encode(x))

    @torch.no_grad()
    def mse(self, x: Any) -> float:
        """The lecture's MSE: mean over rows and features of (x - fθ(hφ(x)))²."""
        x = self._check_x(x, matrix=True)
        return float((self._reconstruct(x) - x).pow(2).mean())
