"""pyrobn: Bayesian networks and generative models as Pyro model/guide pairs.

Exact where exactness is possible, vectorised, and on CUDA when there is one.

>>> import pyrobn
>>> net = pyrobn.student_network()
>>> net.query("x2")            # p(x2) = [0.305, 0.695]
tensor([0.3050, 0.6950], dtype=torch.float64)
"""

from __future__ import annotations

from pyrobn._lazy import lazy_exports
from pyrobn.device import available_devices, device, to_tensor
from pyrobn.random import set_seed

__version__ = "0.1.0"

_EXPORTS = {
    # discrete Bayesian networks (notes 2.1, eq. 1 and 8)
    "DiscreteBayesianNetwork": ".models.bayesnet",
    "CPT": ".models.bayesnet",
    "student_network": ".models.bayesnet",
    "read_network": ".models.bayesnet",
    # densities and mixtures (notes 2.1.3.1, 2.2.1, 2.4.4; lecture: mixtures, MDN)
    "GaussianMixture": ".models.mixture",
    "MixtureDensityNetwork": ".models.mdn",
    "KDE": ".density",
    # sequences and classifiers (notes 2.1.3.2-2.1.3.4)
    "NaiveBayes": ".models.naive_bayes",
    "MarkovChain": ".models.markov",
    "HiddenMarkovModel": ".models.hmm",
    # latent-variable generative models (lecture: VAE; notes 2.2)
    "VAE": ".models.vae",
    "ConditionalVAE": ".models.vae",
    "Autoencoder": ".models.vae",
    # autoregressive models and normalizing flows (notes 2.2.2.1, 2.2.2.5; eq. 15, 18)
    "AutoregressiveModel": ".models.autoregressive",
    "TextAutoregressiveModel": ".models.autoregressive",
    "NormalizingFlow": ".models.flow",
    "DiffusionModel": ".models.diffusion",  # notes 2.2.2.4, eq. 16-17
    "GAN": ".models.gan",  # notes 2.2.2.3
    # MAP and regression (notes 2.3, 2.4.1.3)
    "BayesianLinearRegression": ".models.regression",
}

__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "__version__",
    "available_devices",
    "device",
    "set_seed",
    "to_tensor",
    *_EXPORTS,
]
