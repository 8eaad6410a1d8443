"""The estimator contract every pyrobn model shares (:class:`PyrobnModule`).

* ``fit(...)`` returns the model; what happened is in ``fit_result_``
  (:class:`pyrobn.infer.FitResult`). A fit runs inside :meth:`PyrobnModule._fitting`:
  ``seed=`` seeds the block and gives the caller's random states back, and the thread
  counts of torch are restored, so no fit has a side effect on the caller.
* ``model(...)`` and ``guide(...)`` share one signature (usable with ``pyro.infer.SVI``,
  ``TraceEnum_ELBO``, ``infer_discrete``, ``Predictive``); the class states its
  ``max_plate_nesting``; the data plate is ``"data"``.
* Each instance has a Pyro name of its own, so two models never share parameters in
  Pyro's global param store; the names it put there are removed when it is collected.
* ``save(path)`` / ``Model.load(path)`` round-trip exactly through a file that holds data
  only (tensors, numbers, strings), read with ``torch.load(weights_only=True)``, rebuilt
  through the constructor (its validation) and checked by :meth:`PyrobnModule._check_state`:
  a loaded file can neither run code nor bring in an invalid model.
* ``graph()`` gives the model's Bayesian network (:class:`pyrobn.graph.ModelGraph`) and
  ``plot_graph()`` draws it.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from pyro.nn import PyroModule, pyro_method

from pyrobn.device import preserve_threads
from pyrobn.errors import CheckpointError, NonFiniteError, PyrobnError
from pyrobn.files import read_data_file
from pyrobn.infer.params import release_with, unique_name
from pyrobn.infer.result import FitResult
from pyrobn.random import seeded

if TYPE_CHECKING:
    from pyrobn.graph import ModelGraph

__all__ = ["FILE_FORMAT", "FILE_VERSION", "DataSizedBuffers", "PyrobnModule"]

M = TypeVar("M", bound="PyrobnModule")

#: the ``format`` field of every model file
FILE_FORMAT = "pyrobn.model"
#: the file version written by :meth:`PyrobnModule.save` (version 1 files were pickles)
FILE_VERSION = 2
_PLAIN = (str, int, float, bool, type(None), torch.Tensor)


def _check_plain(value: Any, where: str) -> None:
    """Raise TypeError unless ``value`` is plain data (what ``weights_only`` loads)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str | int):
                raise TypeError(f"{where} has a key of type {type(key).__name__}")
            _check_plain(item, f"{where}[{key!r}]")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
    elif not isinstance(value, _PLAIN):
        raise TypeError(f"{where} is a {type(value).__name__}, not plain data")


class PyrobnModule(PyroModule):
    """Base class of the models: the estimator contract (see the module docstring).

    Subclasses call ``super().__init__(**config)`` with the constructor arguments needed to
    rebuild them, as plain data (numbers, strings, lists, dicts, tensors); non-parameter
    state that is not a buffer goes through ``get_extra_state``/``set_extra_state``
    (torch's own hooks), also as plain data.
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
        name = unique_name(type(self).__name__)
        super().__init__(name=name)
        self.config = dict(config)
        self.fit_result_: FitResult | None = None
        release_with(self, name)

    def model(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def guide(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ fitting
    @contextlib.contextmanager
    def _fitting(self, seed: int | None) -> Iterator[None]:
        """The block of a ``fit``: seeded without touching the caller's random streams,
        thread counts kept, gradients of the model's parameters cleared on the way out."""
        with preserve_threads(), seeded(seed):
            try:
                yield
            finally:
                for p in self.parameters():
                    p.grad = None

    def _set_result(self: M, result: FitResult, started: float | None = None) -> M:
        """Store ``result`` as ``fit_result_`` (wall time from ``started``) and return self."""
        if started is not None:
            result.wall_time = time.perf_counter() - started
        self.fit_result_ = result
        return self

    def _guide_prefix(self, kind: str) -> str:
        """A param-store prefix for a guide this model builds, under the model's own name
        (so it is released with the model): ``"HiddenMarkovModel_3.map_guide"``."""
        return f"{self._pyro_name}.{kind}_guide"

    # ------------------------------------------------------------------ structure
    @property
    def device(self) -> torch.device:
        """The device of the first parameter or buffer (CPU when there is none)."""
        for tensor in self.parameters():
            return tensor.device
        for tensor in self.buffers():
            return tensor.device
        return torch.device("cpu")

    def graph(self) -> ModelGraph:
        """The model's Bayesian network: nodes (observed, latent, parameters), edges, plates."""
        raise NotImplementedError(f"{type(self).__name__} does not describe its graph yet")

    @property
    def n_parameters(self) -> int:
        """Free parameters: the number of trainable scalars (models whose parameters are
        tables with constraints, such as probability rows, count their free entries)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def plot_graph(self, ax: Any = None, **kwargs: Any) -> Any:
        """Draw :meth:`graph` with matplotlib (no graphviz needed); returns the axes."""
        return self.graph().draw(ax=ax, **kwargs)

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike) -> None:
        """Write the class, the constructor config and the full state to ``path``.

        The file holds data only (tensors, numbers, strings, lists, dicts): it loads with
        ``torch.load(weights_only=True)`` and can run no code.
        """
        state = {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "config": self.config,
            "state_dict": dict(self.state_dict()),
        }
        try:
            _check_plain(state, "the model's state")
        except TypeError as exc:  # a bug of the model class, not of the user's input
            raise RuntimeError(f"{type(self).__name__} cannot be saved as data: {exc}") from exc
        torch.save(state, path)

    @classmethod
    def load(cls: type[M], path: str | os.PathLike, map_location: Any = None) -> M:
        """Rebuild a model written by :meth:`save`; the round trip is exact.

        Raises:
            CheckpointError: the file cannot be read, is truncated or corrupt, holds code,
                another class or an inconsistent state (the reason is named).
        """
        where = str(path)
        saved = read_data_file(path, "model file", map_location)
        expected = f"{cls.__module__}.{cls.__qualname__}"
        if not isinstance(saved, dict) or saved.get("format") != FILE_FORMAT:
            raise CheckpointError(f"{where!r} is not a pyrobn model file (no format header)")
        if saved.get("version") != FILE_VERSION:
            raise CheckpointError(
                f"{where!r} is a model file of version {saved.get('version')!r}; this pyrobn "
                f"reads version {FILE_VERSION}"
            )
        if saved.get("class") != expected:
            raise CheckpointError(f"{where!r} holds a {saved.get('class')}, not a {expected}")
        config, state_dict = saved.get("config"), saved.get("state_dict")
        if not isinstance(config, dict) or not isinstance(state_dict, dict):
            raise CheckpointError(f"{where!r} lacks the model's config or state")
        try:
            model = cls(**config)
        except (PyrobnError, TypeError) as exc:
            raise CheckpointError(f"{where!r} holds an invalid configuration: {exc}") from exc
        try:
            model.load_state_dict(state_dict)
        except (RuntimeError, KeyError, TypeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise CheckpointError(f"{where!r} holds a state that does not fit: {first}") from exc
        try:
            model._check_state()
        except PyrobnError as exc:
            raise CheckpointError(f"{where!r} holds an invalid model: {exc}") from exc
        if map_location is not None:
            model.to(map_location)
        return model

    def _check_state(self) -> None:
        """Validate the state after a load (models add their own checks: rows that sum to
        1, positive variances, ...). By default every floating parameter must be finite."""
        for name, tensor in self.named_parameters():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise NonFiniteError(f"parameter {name!r} holds NaN or inf")


class DataSizedBuffers:
    """Mixin: buffers whose shapes depend on the data take the saved shapes on load.

    :meth:`PyrobnModule.load` rebuilds a model from its config, then loads the state dict;
    buffers sized by ``fit`` (class counts, n-gram tables) are still empty then, so each
    one is replaced by an empty tensor of the saved shape before torch copies it. The
    model's :meth:`PyrobnModule._check_state` then checks that the shapes agree.
    """

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        for name, buffer in list(self._buffers.items()):  # type: ignore[attr-defined]
            saved = state_dict.get(prefix + name)
            if (
                isinstance(saved, torch.Tensor)
                and buffer is not None
                and saved.shape != buffer.shape
            ):
                self._buffers[name] = torch.empty(  # type: ignore[attr-defined]
                    saved.shape, dtype=saved.dtype, device=buffer.device
                )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)  # type: ignore[misc]
