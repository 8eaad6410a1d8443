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
    assert "numba" in result.stdout  # which HMM kernels run on CPU


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
        (("query", "student", "x9 | x2=0"), "unknown variable 'x9'"),
        (("query", "student", "x1 | x2=7"), "state 7 of 'x2'"),
        (("query", "student", "P(x1="), "query"),
        (("query", "student", "x1 | x4=0, x4=1"), "x4"),
        (("query", "no_such_file.json", "x1"), "no_such_file.json"),
        (("query", "student"), "required"),
        (("compare", "nonsense"), "invalid choice"),
        (("compare", "mixture", "--guides", "bogus"), "unknown guide(s) ['bogus']"),
        (("compare", "regression", "--n", "1"), "--n must be at least 2"),
    ],
)
def test_bad_input_is_one_line(args, needle):
    result = pyrobn(*args)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], result.stderr


def test_query_answers_the_notes_questions():
    assert pyrobn("query", "student", "P(x2=1)").stdout.strip() == "P(x2=1) = 0.695"
    table = pyrobn("query", "student", "x1 | x2=0", "--digits", "10").stdout.split()
    assert table == ["x1=0", "0.262295082", "x1=1", "0.737704918"]
    assert pyrobn("query", "student", "P(x2=1, x3=1)").stdout.strip().endswith("= 0.546")
    assert pyrobn("query", "student", "P(x3=1 | x2=1)").stdout.strip().endswith("= 0.785612")
    assert pyrobn("query", "student", "mpe | x4=1").stdout.strip() == "mpe: x1=1, x2=1, x3=1"


def test_query_on_a_json_network(tmp_path):
    import pyrobn as lib

    path = tmp_path / "net.json"
    lib.DiscreteBayesianNetwork(
        {"rain": lib.CPT([0.8, 0.2]), "wet": lib.CPT([[0.9, 0.1], [0.1, 0.9]], parents=["rain"])},
        states={"rain": ["no", "yes"], "wet": ["dry", "wet"]},
    ).to_json(path)
    result = pyrobn("query", str(path), "rain | wet=wet")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("rain=no") and lines[1].startswith("rain=yes")
    assert abs(float(lines[1].split()[-1]) - 0.18 / 0.26) < 1e-5


def test_compare_prints_the_table():
    result = pyrobn(
        "compare", "regression", "--steps", "100", "--samples", "30", "--guides", "normal,laplace"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("regression: 100 SVI steps")
    assert "kl" in lines[1] and "sd_ratio" in lines[1]
    body = "\n".join(lines[2:])
    assert "normal" in body and "laplace" in body and "theta[1]" in body
