"""The `pyrobn` command: bad input gives one line and exit status 2, never a traceback.

Most cases call :func:`pyrobn.cli.main` in the test process (the same code path as the
console script, without paying an interpreter start per case); a few run the real command
in a subprocess.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyrobn import cli
from pyrobn.models.bayesnet import student_network


def pyrobn(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pyrobn", *args], capture_output=True, text=True, timeout=120
    )


def run(capsys, *args: str) -> tuple[int, str, str]:
    """``pyrobn ARGS`` in-process: (exit status, stdout, stderr)."""
    try:
        code = cli.main(list(args))
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, needle: str = "") -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert needle in lines[0], err


def student_doc() -> dict:
    return json.loads(student_network().to_json())


def test_info():
    result = pyrobn("info")
    assert result.returncode == 0
    assert "pyro-ppl" in result.stdout and "torch" in result.stdout
    assert "numba" in result.stdout  # which HMM kernels run on CPU


def test_tutorials_list():
    result = pyrobn("tutorials", "list")
    assert result.returncode == 0
    assert result.stdout.splitlines()[0] == "00_mle_basics"


def test_the_console_command_gives_one_line_for_bad_input():
    for args, needle in [
        (("query", "student", "x9 | x2=0"), "unknown variable 'x9'"),
        (("query", "/dev/zero", "x1"), "not a regular file"),
    ]:
        start = time.perf_counter()
        result = pyrobn(*args)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and needle in lines[0], result.stderr
        assert time.perf_counter() - start < 60  # /dev/zero is refused, not read


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
        # an empty evidence after the bar is an error, not p(x1)
        (("query", "student", "x1 |"), "nothing after '|'"),
        (("query", "student", "P(x1 | )"), "nothing after '|'"),
        (("query", "student", "mpe |"), "nothing after '|'"),
        (("query", "student", "x1 | x2=0,"), "empty item"),
        (("query", "student", "x1, , x2"), "empty item"),
        (("query", "student", "x1 || x2=0"), "more than one '|'"),
        (("query", "student", "x1 | x2==0"), "more than one '='"),
        (("query", "student", "P(x1=1"), "unbalanced"),
        (("query", "student", "x1", "--digits", "0"), "--digits"),
        (("query", "student", "x1", "--digits", "400"), "--digits"),
        (("query", "student", "x1", "--max-bytes", "0"), "--max-bytes"),
        (("compare", "regression", "--steps", "0"), "--steps"),
        (("compare", "regression", "--samples", "-3"), "--samples"),
        (("compare", "regression", "--seed", "-1"), "--seed"),
        (("compare", "regression", "--n", "100000000000"), "memory budget"),
        (("compare", "regression", "--guides", "normal,"), "unknown guide(s) ['']"),
    ],
)
def test_bad_input_is_one_line(capsys, args, needle):
    code, _, err = run(capsys, *args)
    assert_one_line_error(code, err, needle)


def test_unbounded_and_special_input_files_are_refused(capsys, tmp_path):
    code, _, err = run(capsys, "query", "/dev/zero", "x1")
    assert_one_line_error(code, err, "not a regular file")
    code, _, err = run(capsys, "query", str(tmp_path), "x1")
    assert_one_line_error(code, err, "not a regular file")
    big = tmp_path / "big.json"
    big.write_text(student_network().to_json())
    size = big.stat().st_size
    code, _, err = run(capsys, "query", str(big), "x1", "--max-bytes", str(size - 1))
    assert_one_line_error(code, err, "over the input limit")
    code, out, err = run(capsys, "query", str(big), "x1", "--max-bytes", str(size))
    assert code == 0, err
    assert out.splitlines()[0].startswith("x1=0")


def _mutations() -> list[tuple[str, object, str]]:
    """(name, document or raw text, what the one-line error must mention)."""
    states_number = student_doc()
    states_number["nodes"][0]["states"] = 5
    huge_int = student_doc()
    huge_int["nodes"][0]["table"] = [10**400, 1]
    two_nodes = student_doc()
    two_nodes["nodes"].append(copy.deepcopy(two_nodes["nodes"][0]))
    table_text = student_doc()
    table_text["nodes"][0]["table"] = "abc"
    parents_number = student_doc()
    parents_number["nodes"][1]["parents"] = 7
    repeated_key = json.dumps(student_doc())[:-1] + ', "format": "other"}'
    deep = "[" * 100_000 + "]" * 100_000
    return [
        ("states_number", states_number, ""),
        ("huge_int", huge_int, ""),
        ("two_nodes_one_name", two_nodes, "more than once"),
        ("table_text", table_text, ""),
        ("parents_number", parents_number, ""),
        ("repeated_key", repeated_key, "twice"),
        ("deep", deep, ""),
        ("not_json", "{not json", ""),
        ("binary", b"{\xff\xfe", ""),
    ]


@pytest.mark.parametrize("name, doc, needle", _mutations(), ids=[m[0] for m in _mutations()])
def test_malformed_network_files_are_one_line(capsys, tmp_path, name, doc, needle):
    path = tmp_path / f"{name}.json"
    if isinstance(doc, bytes):
        path.write_bytes(doc)
    else:
        path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    code, _, err = run(capsys, "query", str(path), "x1")
    assert_one_line_error(code, err, needle)


def test_output_folders_are_checked_before_any_work(capsys, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    out = tmp_path / "out"
    start = time.perf_counter()
    code, _, err = run(capsys, "tutorials", "run", "01", "--out", str(blocker / "sub"))
    assert_one_line_error(code, err, "--out")
    code, _, err = run(capsys, "tour", "--out", str(out), "--gallery", str(blocker / "g"))
    assert_one_line_error(code, err, "--gallery")
    code, _, err = run(capsys, "tour", "--out", str(blocker / "sub"))
    assert_one_line_error(code, err, "--out")
    assert time.perf_counter() - start < 10  # no tutorial ran
    assert not list(out.glob("*")), "the tour started before its --gallery was checked"


def test_a_joint_table_too_large_to_print_is_refused(capsys, monkeypatch):
    monkeypatch.setattr(cli, "MAX_TABLE_ROWS", 8)
    code, _, err = run(capsys, "query", "student", "x1, x2, x3, x4")
    assert_one_line_error(code, err, "16 rows")
    code, out, _ = run(capsys, "query", "student", "x1, x2, x3")
    assert code == 0 and len(out.splitlines()) == 8


def test_internal_errors_are_one_line_and_debug_shows_them(capsys, monkeypatch):
    def broken(_):
        raise TypeError("a bug\nwith a second line")

    monkeypatch.setattr(cli, "_info", broken)
    code, _, err = run(capsys, "info")
    assert_one_line_error(code, err, "internal error (TypeError: a bug ...)")
    assert "PYROBN_DEBUG=1" in err
    monkeypatch.setenv("PYROBN_DEBUG", "1")
    with pytest.raises(TypeError, match="a bug"):
        cli.main(["info"])


def test_ctrl_c_is_one_line_and_status_130(capsys, monkeypatch):
    def interrupted(_):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_info", interrupted)
    code, _, err = run(capsys, "info")
    assert code == 130 and err.strip() == "pyrobn info: interrupted"


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(alphabet="x1234P()|=,; -mpeab\t", max_size=24))
def test_any_query_text_answers_or_fails_in_one_line(capsys, text):
    code, out, err = run(capsys, "query", "student", text)
    if code == 0:
        assert out.strip() and not err
    else:
        assert_one_line_error(code, err)


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.lists(st.floats(allow_nan=True), max_size=3),
    st.lists(st.lists(st.integers(-3, 3), max_size=3), max_size=3),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    node=st.integers(0, 3),
    key=st.sampled_from(["name", "parents", "states", "table", "extra"]),
    value=_VALUES,
)
def test_any_corrupted_json_network_answers_or_fails_in_one_line(
    capsys, tmp_path, node, key, value
):
    doc = student_doc()
    doc["nodes"][node][key] = value
    path = tmp_path / "net.json"
    path.write_text(json.dumps(doc))
    code, out, err = run(capsys, "query", str(path), "x1")
    if code == 0:
        assert out.strip() and not err
    else:
        assert_one_line_error(code, err)


def test_query_answers_the_notes_questions(capsys):
    def out(*args: str) -> str:
        code, stdout, stderr = run(capsys, "query", "student", *args)
        assert code == 0, stderr
        return stdout

    assert out("P(x2=1)").strip() == "P(x2=1) = 0.695"
    table = out("x1 | x2=0", "--digits", "10").split()
    assert table == ["x1=0", "0.262295082", "x1=1", "0.737704918"]
    assert out("P(x2=1, x3=1)").strip().endswith("= 0.546")
    assert out("P(x3=1 | x2=1)").strip().endswith("= 0.785612")
    assert out("mpe | x4=1").strip() == "mpe: x1=1, x2=1, x3=1"


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


def test_compare_prints_the_table(capsys):
    code, out, err = run(
        capsys,
        "compare",
        "regression",
        "--steps",
        "100",
        "--samples",
        "30",
        "--guides",
        "normal,laplace",
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("regression: 100 SVI steps")
    assert "kl" in lines[1] and "sd_ratio" in lines[1]
    body = "\n".join(lines[2:])
    assert "normal" in body and "laplace" in body and "theta[1]" in body


def test_tutorials_run_reports_failed_claims(capsys, tmp_path, monkeypatch):
    folder = tmp_path / "tutorials"
    folder.mkdir()
    (folder / "90_claims.py").write_text(
        "from pyrobn.tutorial import Tutorial\n"
        "tut = Tutorial('90_claims', figures=[])\n"
        "tut.check('holds', 1 + 1 == 2, 'arithmetic')\n"
        "tut.check('fails', 1 + 1 == 3, 'wrong arithmetic')\n"
    )
    monkeypatch.setenv("PYROBN_TUTORIALS", str(folder))
    code, out, err = run(capsys, "tutorials", "run", "90", "--out", str(tmp_path / "out"))
    assert code == 1
    assert "claims that did not hold: fails" in out
    assert err.strip() == "pyrobn tutorials: error: 90_claims failed"
    summary = json.loads(Path(tmp_path / "out" / "90_claims" / "summary.json").read_text())
    assert [(c["name"], c["ok"]) for c in summary["checks"]] == [("holds", True), ("fails", False)]
