"""Reading and writing networks: BIF, XMLBIF, UAI, Hugin NET, pyrobn's JSON, pgmpy.

:func:`read_network` takes the format from the file's suffix (``.bif``, ``.xmlbif`` /
``.bifxml`` / ``.xml``, ``.uai``, ``.net``, ``.json``), reading ``.gz`` files
transparently; :func:`write_network` writes the same formats. Every reader checks the
file the same way (:func:`pyrobn.models.bayesnet.formats._spec.build`): a malformed
file, a variable declared twice, a state listed twice, an unknown parent, a cycle, a
table of the wrong size or a negative entry is an error from :mod:`pyrobn.errors`
naming the file and the line. A round trip (write, read) gives the same variables,
states, parents in the same order, and every probability bit for bit (UAI has no
names: see :mod:`.uai`).

>>> import pathlib, tempfile
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> pyrobn.student_network().write(folder / "student.bif.gz")
>>> net = read_network(folder / "student.bif.gz")
>>> net.write(folder / "student.xmlbif")
>>> read_network(folder / "student.xmlbif").variables
('x1', 'x2', 'x3', 'x4')
"""

from __future__ import annotations

import gzip
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyrobn.errors import ConfigurationError
from pyrobn.models.bayesnet.formats._spec import (
    READ_TOLERANCE,
    NetworkSpec,
    RenormalizedWarning,
    build,
)
from pyrobn.models.bayesnet.formats.bif import read_bif, write_bif
from pyrobn.models.bayesnet.formats.hugin import read_net, write_net
from pyrobn.models.bayesnet.formats.uai import read_uai, write_uai
from pyrobn.models.bayesnet.formats.xmlbif import read_xmlbif, write_xmlbif

if TYPE_CHECKING:
    from pyrobn.models.bayesnet.network import DiscreteBayesianNetwork

__all__ = [
    "BNLEARN",
    "FORMATS",
    "MAX_FILE_BYTES",
    "READ_TOLERANCE",
    "RenormalizedWarning",
    "bnlearn_path",
    "format_of",
    "read_network",
    "write_network",
]

#: suffix -> format name
FORMATS = {
    ".bif": "bif",
    ".xmlbif": "xmlbif",
    ".bifxml": "xmlbif",
    ".xml": "xmlbif",
    ".uai": "uai",
    ".net": "net",
    ".json": "json",
}

#: files (after decompression) larger than this are refused before they are parsed
MAX_FILE_BYTES = 256 * 2**20

_READERS: dict[str, Callable[[str, str], NetworkSpec]] = {
    "bif": read_bif,
    "xmlbif": read_xmlbif,
    "uai": read_uai,
    "net": read_net,
}
_WRITERS: dict[str, Callable[[Any], str]] = {
    "bif": write_bif,
    "xmlbif": write_xmlbif,
    "uai": write_uai,
    "net": write_net,
}


def format_of(path: str | os.PathLike, format: str | None = None) -> tuple[str, bool]:
    """(format, gzipped) of ``path`` from its suffix, or from ``format`` when given."""
    name = Path(path).name.lower()
    gzipped = name.endswith(".gz")
    if gzipped:
        name = name[:-3]
    if format is not None:
        if format not in set(FORMATS.values()):
            raise ConfigurationError(
                f"unknown network format {format!r}; choose from {sorted(set(FORMATS.values()))}"
            )
        return format, gzipped
    suffix = Path(name).suffix
    if suffix not in FORMATS:
        raise ConfigurationError(
            f"cannot tell the format of {str(path)!r} from its suffix {suffix or '(none)'!r}; "
            f"known: {', '.join(FORMATS)} (optionally followed by .gz), or pass format="
        )
    return FORMATS[suffix], gzipped


def _read_text(path: str | os.PathLike, gzipped: bool, max_bytes: int) -> str:
    try:
        raw: io.BufferedIOBase = gzip.open(path, "rb") if gzipped else open(path, "rb")
        with raw:
            data = raw.read(max_bytes + 1)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise ConfigurationError(f"cannot read network file {str(path)!r}: {exc}") from exc
    if len(data) > max_bytes:
        raise ConfigurationError(
            f"{str(path)!r} is larger than {max_bytes} bytes (max_bytes); refused before parsing"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # older files from Windows tools


def read_network(
    path: str | os.PathLike,
    *,
    format: str | None = None,
    tolerance: float = READ_TOLERANCE,
    device: Any = None,
    max_bytes: int = MAX_FILE_BYTES,
) -> DiscreteBayesianNetwork:
    """Read a network file; the format comes from the suffix (see :data:`FORMATS`).

    Rows that sum to 1 only within ``tolerance`` (rounded tables) are renormalised with
    a :class:`RenormalizedWarning` naming the nodes; beyond it the file is refused.

    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "student.uai"
    >>> pyrobn.student_network().write(path)
    >>> read_network(path).cardinality("x2")
    2
    """
    from pyrobn.models.bayesnet.network import DiscreteBayesianNetwork

    kind, gzipped = format_of(path, format)
    text = _read_text(path, gzipped, max_bytes)
    if kind == "json":
        from pyrobn.models.bayesnet.formats.json import from_json

        return from_json(DiscreteBayesianNetwork, text, device=device)
    spec = _READERS[kind](text, str(path))
    return build(spec, DiscreteBayesianNetwork, tolerance=tolerance, device=device)


def write_network(
    net: DiscreteBayesianNetwork, path: str | os.PathLike, *, format: str | None = None
) -> None:
    """Write ``net`` to ``path`` in the format of its suffix (gzipped for ``.gz``)."""
    kind, gzipped = format_of(path, format)
    if kind == "json":
        from pyrobn.models.bayesnet.formats.json import to_json

        text = to_json(net)
    else:
        text = _WRITERS[kind](net)
    data = text.encode("utf-8")
    try:
        if gzipped:
            with gzip.open(path, "wb") as out:
                out.write(data)
        else:
            Path(path).write_bytes(data)
    except OSError as exc:
        raise ConfigurationError(f"cannot write network file {str(path)!r}: {exc}") from exc


#: the bnlearn repository's networks that pgmpy's wheel ships (``.bif.gz``)
BNLEARN = (
    "asia", "cancer", "earthquake", "sachs", "survey", "alarm", "barley", "child",
    "insurance", "mildew", "water", "hailfinder", "hepar2", "win95pts", "andes",
    "diabetes", "link", "pathfinder", "pigs", "munin1", "munin2", "munin3", "munin4", "munin",
)  # fmt: skip


def bnlearn_path(name: str) -> Path:
    """The path of a bnlearn network (:data:`BNLEARN`) in the copy pgmpy ships: pyrobn
    does not redistribute them (pgmpy is a development and benchmark dependency).

    >>> read_network(bnlearn_path("alarm")).n_parameters     # needs pgmpy (pyrobn[dev])
    509
    """
    if name not in BNLEARN:
        raise ConfigurationError(f"unknown bnlearn network {name!r}; choose from {BNLEARN}")
    try:
        import pgmpy
    except ImportError as exc:
        raise ConfigurationError(
            f"the bnlearn networks come with pgmpy (pip install 'pyrobn[networks]' or pgmpy): "
            f"{name!r} is not available"
        ) from exc
    path = Path(pgmpy.__file__).parent / "utils" / "example_models" / f"{name}.bif.gz"
    if not path.exists():
        raise ConfigurationError(f"this pgmpy ({pgmpy.__version__}) does not ship {path.name}")
    return path
