"""The models: one module per paradigm, each a PyroModule with ``model()`` and ``guide()``."""
