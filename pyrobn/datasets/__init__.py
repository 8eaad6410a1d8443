"""Seeded data generators and bundled data; nothing is downloaded at run time.

Each topic has its own module; the names are re-exported here.
"""

from __future__ import annotations

from pyrobn._lazy import lazy_exports

_EXPORTS = {
    "student_samples": ".student",
    "course_mixture": ".mixture",
    "inverse_sine": ".mixture",
    "gaussian_blobs": ".mixture",
    "swiss_roll": ".manifold",
    "digits": ".manifold",
    "book_digits": ".book_digits",
    "best_direction_spearman": ".manifold",
    "text_corpus": ".text",
    "tagged_corpus": ".tagging",
}

__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = list(_EXPORTS)
