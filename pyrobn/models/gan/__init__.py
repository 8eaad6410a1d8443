"""Generative adversarial networks (notes 2.2.2.3): the generator as a Pyro model, the
discriminator as a Pyro classifier q(y | x), the game through ``fit_svi``."""

from pyrobn.models.gan.model import GAN, AdversarialLoss, build_networks
from pyrobn.models.gan.reference import ReferenceGAN, train_reference

__all__ = ["GAN", "AdversarialLoss", "ReferenceGAN", "build_networks", "train_reference"]
