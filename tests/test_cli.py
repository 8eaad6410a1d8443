"""The `pyrobn` command: bad input gives one line and a non-zero exit, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest


def pyrobn(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pyrobn", *args], capture_output=True, text=True, timeout=120
    )


def test_info():
    result = pyrobn("info")
    assert result.returncode == 0
    assert "pyro-ppl" in result.stdout and "torch" in result.stdout


def test_tutorials_list():
    result = pyrobn("tutorials", "list")
    assert result.returncode == 0
    assert result.stdout.splitlines()[0] == "00_mle_basics"


@pytest.mark.parametrize(
    "args, needle",
    [
        (("frobnicate",), "invalid choice"),
        (("tutorials", "run", "no_such_tutorial"), "no tutorial"),
        (("tutorials", "run"), "needs a NAME"),
        (("tour", "--bogus"), "unrecognized arguments"),
    ],
)
def test_bad_input_is_one_line(args, needle):
    result = pyrobn(*args)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], result.stderr
