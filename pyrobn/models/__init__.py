"""The models: one module per paradigm, each a PyroModule with ``model()`` and ``guide()``."""

__all__: list[str] = []  # the models live in their modules (pyrobn.X re-exports them)
