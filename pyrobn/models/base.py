"""What every pyrobn model shares: a unique Pyro name, its config, save and load.

Pyro keeps PyroModule parameters in one global param store keyed by name, so two
instances of one class with the same name would silently share (and overwrite) each
other's parameters. Every :class:`PyrobnModule` therefore gets a name of its own.
"""

from __future__ import annotations

import itertools
import os
from typing import Any, TypeVar

import torch
from pyro.nn import PyroModule, pyro_method

from pyrobn.errors import CheckpointError

_counter = itertools.count()
M = TypeVar("M", bound="PyrobnModule")


class PyrobnModule(PyroModule):
    """Base class of the models: ``model``/``guide`` pair, ``config``, ``save``/``load``.

    Subclasses call ``super().__init__(**config)`` with the constructor arguments
    needed to rebuild them (plain Python values); non-parameter state that is not a
    buffer goes through ``get_extra_state``/``set_extra_state`` (torch's own hooks).
    """

    #: how many nested plates the model uses (for ``TraceEnum_ELBO``)
    max_plate_nesting: int = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # ``model``/``guide`` are called directly (``SVI(net.model, net.guide)``), not through
        # ``forward``: without ``pyro_method`` their parameters would not be registered
        # with Pyro, and SVI would silently leave them untrained.
        super().__init_subclass__(**kwargs)
        for name in ("model", "guide"):
            method = cls.__dict__.get(name)
            if callable(method) and not getattr(method, "_pyrobn_pyro_method", False):
                wrapped = pyro_method(method)
                wrapped._pyrobn_pyro_method = True
                setattr(cls, name, wrapped)

    def __init__(self, **config: Any) -> None:
        super().__init__(name=f"{type(self).__name__}_{next(_counter)}")
        self.config = dict(config)

    def model(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def guide(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        """The device of the first parameter or buffer (CPU when there is none)."""
        for tensor in itertools.chain(self.parameters(), self.buffers()):
            return tensor.device
        return torch.device("cpu")

    def save(self, path: str | os.PathLike) -> None:
        """Write the class, the constructor config and the full state to ``path``."""
        torch.save(
            {
                "class": f"{type(self).__module__}.{type(self).__qualname__}",
                "config": self.config,
                "state_dict": self.state_dict(),
            },
            path,
        )

    @classmethod
    def load(cls: type[M], path: str | os.PathLike, map_location: Any = None) -> M:
        """Rebuild a model written by :meth:`save`; the round trip is exact."""
        try:
            saved = torch.load(path, map_location=map_location, weights_only=False)
        except (OSError, RuntimeError, EOFError) as exc:
            raise CheckpointError(f"cannot read model file {str(path)!r}: {exc}") from exc
        expected = f"{cls.__module__}.{cls.__qualname__}"
        if not isinstance(saved, dict) or saved.get("class") != expected:
            found = saved.get("class") if isinstance(saved, dict) else type(saved).__name__
            raise CheckpointError(f"{str(path)!r} holds a {found}, not a {expected}")
        model = cls(**saved["config"])
        model.load_state_dict(saved["state_dict"])
        if map_location is not None:
            model.to(map_location)
        return model
