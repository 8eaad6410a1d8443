"""Network files: BIF, XMLBIF, UAI, Hugin NET, JSON (and .gz), pgmpy; bad files named by line."""

from __future__ import annotations

import gzip
import os
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pyrobn
from pyrobn import CPT, DiscreteBayesianNetwork
from pyrobn.errors import (
    ConfigurationError,
    CycleError,
    InvalidDistributionError,
    PyrobnError,
    ShapeError,
    UnknownVariableError,
)
from pyrobn.models.bayesnet.formats import RenormalizedWarning, read_network, write_network
from pyrobn.models.bayesnet.formats.bif import read_bif

EXAMPLES = os.path.join(os.path.dirname(__import__("pgmpy").__file__), "utils", "example_models")
FORMATS = ["bif", "xmlbif", "net", "uai", "json"]


def example(name: str) -> str:
    return os.path.join(EXAMPLES, f"{name}.bif.gz")


@st.composite
def named_networks(draw, max_nodes: int = 6):
    """Random DAGs with named states (odd names included), tables of full-precision
    floats (Dirichlet draws, some exact zeros), declared in a shuffled order."""
    n = draw(st.integers(1, max_nodes))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    words = ["yes", "no", "Asy/Patch", "a b", 'say "hi"', "x,y", "élan", "0.5", "low-mid", "q;"]
    cards = [int(rng.integers(2, 5)) for _ in range(n)]
    cpts, states = {}, {}
    for i in range(n):
        k = int(rng.integers(0, min(3, i) + 1))
        parents = [int(p) for p in rng.permutation(i)[:k]]
        table = rng.dirichlet(np.ones(cards[i]), size=[cards[p] for p in parents] or None)
        table[rng.random(table.shape) < 0.1] = 0.0
        table[..., 0] += table.sum(-1) == 0  # no empty row
        table /= table.sum(-1, keepdims=True)
        cpts[f"v{i}"] = CPT(table, parents=[f"v{p}" for p in parents])
        picked = rng.choice(len(words), cards[i], replace=False)
        states[f"v{i}"] = [words[j] for j in picked]
    order = list(cpts)
    rng.shuffle(order)
    return DiscreteBayesianNetwork({n: cpts[n] for n in order}, states=states, device="cpu")


def assert_same(a: DiscreteBayesianNetwork, b: DiscreteBayesianNetwork, names: bool = True):
    assert a.variables == b.variables
    for n in a.variables:
        assert a.parents(n) == b.parents(n)
        if names:
            assert a.state_names(n) == b.state_names(n)
        assert torch.equal(a.table(n), b.table(n)), n  # every bit


# ---------------------------------------------------------------------------- round trips


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(named_networks(), st.sampled_from(["bif", "xmlbif", "json"]), st.booleans())
def test_round_trips_are_bit_for_bit(tmp_path_factory, net, fmt, gz):
    path = tmp_path_factory.mktemp("rt") / f"net.{fmt}{'.gz' if gz else ''}"
    net.write(path)
    assert_same(net, read_network(path, device="cpu"))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(named_networks(), st.sampled_from(["net", "uai"]))
def test_net_and_uai_round_trips(tmp_path_factory, net, fmt):
    """NET names must be identifiers (these are) and its states are quoted; UAI has no
    names at all: variables come back as x0.. in the written order, states as indices."""
    path = tmp_path_factory.mktemp("rt") / f"net.{fmt}"
    net.write(path)
    back = read_network(path, device="cpu")
    if fmt == "net":
        assert_same(net, back)
        return
    assert back.variables == tuple(f"x{i}" for i in range(len(net.variables)))
    rename = dict(zip(net.variables, back.variables))
    for n in net.variables:
        assert back.parents(rename[n]) == tuple(rename[p] for p in net.parents(n))
        assert torch.equal(back.table(rename[n]), net.table(n))


def test_bnlearn_files_read_as_pgmpy_and_pyagrum_read_them(tmp_path):
    """pgmpy's reader (slow: one small file) and pyAgrum's (float32 numbers) agree."""
    import pyagrum as gum
    from pgmpy.readwrite import BIFReader

    ours = read_network(example("asia"), device="cpu")
    with gzip.open(example("asia"), "rt") as f:
        model = BIFReader(string=f.read()).get_model()
    assert_same(ours, DiscreteBayesianNetwork.from_pgmpy(model, device="cpu"))
    for name in ["alarm", "insurance", "hepar2"]:
        ours = read_network(example(name), device="cpu")
        path = tmp_path / f"{name}.bif"
        with gzip.open(example(name), "rb") as f:
            path.write_bytes(f.read())
        bn = gum.loadBN(str(path))
        for n in ours.variables:
            axes = list(reversed(bn.cpt(n).names))
            perm = [axes.index(x) for x in (*ours.parents(n), n)]
            expected = np.transpose(bn.cpt(n).toarray(), perm)
            np.testing.assert_allclose(ours.table(n).numpy(), expected, rtol=0, atol=1e-7)


def test_pgmpy_conversion_round_trip_and_queries():
    from pgmpy.inference import VariableElimination

    net = read_network(example("asia"), device="cpu")
    model = net.to_pgmpy()
    assert model.check_model()
    assert_same(net, DiscreteBayesianNetwork.from_pgmpy(model, device="cpu"))
    answer = VariableElimination(model).query(
        ["lung"], evidence={"xray": "yes"}, show_progress=False
    )
    ours = net.query("lung", evidence={"xray": "yes"})
    np.testing.assert_allclose(ours.numpy(), answer.values, rtol=0, atol=1e-12)
    with pytest.raises(ConfigurationError, match=r"pgmpy"):
        DiscreteBayesianNetwork.from_pgmpy(object())


@pytest.mark.parametrize("fmt", ["bif", "xmlbif", "net"])
def test_pyagrum_reads_what_we_write_and_we_read_what_it_writes(tmp_path, fmt):
    """The axis conventions agree with an independent implementation (pyAgrum parses
    BIF numbers in float32: hence the 1e-7). Not UAI: pyAgrum 3.3 lists a table of two
    or more parents with the first parent varying fastest, against the format's
    description (the last variable of the scope fastest), which pyrobn follows."""
    import pyagrum as gum

    net = read_network(example("asia"), device="cpu")
    suffix = {"xmlbif": "bifxml"}.get(fmt, fmt)
    path = tmp_path / f"asia.{suffix}"
    net.write(path, format=fmt)
    bn = gum.loadBN(str(path))
    for i, n in enumerate(net.variables):
        name = n if fmt != "uai" else bn.variable(i).name()
        rename = {bn.variable(j).name(): net.variables[j] for j in range(len(net.variables))}
        cpt = bn.cpt(name)
        axes = [rename[x] if fmt == "uai" else x for x in reversed(cpt.names)]
        perm = [axes.index(x) for x in (*net.parents(n), n)]
        np.testing.assert_allclose(
            np.transpose(cpt.toarray(), perm), net.table(n).numpy(), rtol=0, atol=1e-7
        )
    back_path = tmp_path / f"back.{suffix}"
    gum.saveBN(bn, str(back_path))
    back = read_network(back_path, format=fmt, device="cpu")
    rename = {n: (n if fmt != "uai" else f"x{i}") for i, n in enumerate(net.variables)}
    for n in net.variables:
        m = rename[n]
        perm = [back.parents(m).index(rename[p]) for p in net.parents(n)] + [len(net.parents(n))]
        np.testing.assert_allclose(
            back.table(m).numpy().transpose(perm), net.table(n).numpy(), rtol=0, atol=1e-7
        )


# ---------------------------------------------------------------------------- reading


def test_munin_parses_in_seconds():
    import time

    start = time.perf_counter()
    net = read_network(example("munin"), device="cpu")
    assert len(net.variables) == 1041
    assert time.perf_counter() - start < 30  # about 1 s here; pgmpy's reader takes ~13 s


GOOD = """
network tiny { }
variable a { type discrete [ 2 ] { no, yes }; }
variable b { type discrete [ 3 ] { lo, mid, hi }; property foo = bar; }
probability ( a ) { table 0.25, 0.75; }
probability ( b | a ) {
  (yes) 0.1, 0.2, 0.7;
  default 0.3, 0.3, 0.4;
}
"""


def test_bif_dialects():
    net = pyrobn.models.bayesnet.formats._spec.build(
        read_bif(GOOD, "good.bif"), DiscreteBayesianNetwork, device="cpu"
    )
    np.testing.assert_array_equal(net.table("b").numpy(), [[0.3, 0.3, 0.4], [0.1, 0.2, 0.7]])
    # a conditional "table" lists the node's own state slowest (JavaBayes, pgmpy)
    text = GOOD.replace(
        "(yes) 0.1, 0.2, 0.7;\n  default 0.3, 0.3, 0.4;", "table 0.3 0.1 0.3 0.2 0.4 0.7;"
    )
    spec = read_bif(text, "t.bif")
    np.testing.assert_array_equal(spec.nodes["b"].table, [[0.3, 0.3, 0.4], [0.1, 0.2, 0.7]])
    # comments, spaces instead of commas, old-style headers
    text = "// c\n/* block\ncomment */" + GOOD.replace("{ no, yes }", "{ no yes }").replace(
        "( b | a )", "( b a )"
    )
    assert read_bif(text, "t.bif").nodes["a"].states == ["no", "yes"]


G = GOOD.replace
TABLE_A = "probability ( a ) { table 0.25, 0.75; }"
CYCLE = "probability ( a | b ) { table 0.25, 0.75, 0.5, 0.5, 0.1, 0.9; }"
MALFORMED = [
    (G("{ no, yes }", "{ no, no }"), ShapeError, r"t.bif:3: .*'a'.*\['no'\] twice"),
    (
        GOOD + "variable a { type discrete [ 2 ] { u, v }; }",
        ConfigurationError,
        r"t.bif:10: .*'a'.*declared twice.*line 3",
    ),
    (G("0.25, 0.75", "0.25, -0.75"), InvalidDistributionError, r"t.bif:5: .*p\(a\).*negative"),
    (G("0.25, 0.75", "0.25, 0.5"), InvalidDistributionError, r"t.bif:5: .*sums to 0.75"),
    (G("0.25, 0.75", "0.25, nan"), InvalidDistributionError, r"t.bif:5: 'nan' is not a finite"),
    (G("0.25, 0.75", "0.25, 0.75, 0.0"), ShapeError, r"t.bif:5: .*3 numbers, expected 2"),
    (G("(yes) 0.1, 0.2, 0.7;", "(yes) 0.1, 0.9;"), ShapeError, r"t.bif:7: .*2 numbers"),
    (G("(yes)", "(maybe)"), ConfigurationError, r"t.bif:7: 'maybe' is not a state of 'a'"),
    (G("  default 0.3, 0.3, 0.4;\n", ""), ConfigurationError, r"t.bif:6: .*no row for \(no\)"),
    (G("( b | a )", "( b | z )"), UnknownVariableError, r"t.bif:6: 'z' is not a declared"),
    (G(TABLE_A, CYCLE), CycleError, r"cycle: (a -> b -> a|b -> a -> b)"),
    (G("{ lo, mid, hi }", "{ lo, mid }"), ShapeError, r"t.bif:4: .*declares 3 states but lists 2"),
    (G("variable b {", "variable b"), ConfigurationError, r"t.bif:4: expected '\{', found '\['"),
    (G(TABLE_A, ""), ConfigurationError, r"t.bif:3: .*'a' has no probability table"),
    (GOOD + "oops", ConfigurationError, r"t.bif:10: expected 'network', .*found 'oops'"),
    (G("[ 2 ]", "[ 2"), ConfigurationError, r"t.bif:3: expected '\]'"),
    (GOOD + '"unclosed', ConfigurationError, r"t.bif:10: cannot read"),
]


@pytest.mark.parametrize("text, error, needle", MALFORMED)
def test_malformed_bif_is_named_by_line(text, error, needle):
    with pytest.raises(error, match=needle):
        pyrobn.models.bayesnet.formats._spec.build(
            read_bif(text, "t.bif"), DiscreteBayesianNetwork, device="cpu"
        )


def test_rounded_rows_are_renormalised_with_a_warning_naming_the_node(tmp_path):
    path = tmp_path / "rounded.bif"
    path.write_text(GOOD.replace("0.1, 0.2, 0.7", "0.1, 0.2, 0.703"))
    with pytest.warns(RenormalizedWarning, match=r"'b'"):
        net = read_network(path, device="cpu")
    np.testing.assert_allclose(net.table("b")[1].numpy(), np.array([0.1, 0.2, 0.703]) / 1.003)
    with pytest.raises(InvalidDistributionError, match=r"tolerance on reading: 0.001"):
        read_network(path, tolerance=1e-3)
    path.write_text(GOOD.replace("0.1, 0.2, 0.7", "0.1, 0.2, 0.7000001"))  # 7-digit noise
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net = read_network(path, device="cpu")
    assert abs(float(net.table("b")[1].sum()) - 1) < 1e-15


def test_other_formats_name_the_line(tmp_path):
    net_text = (
        'net { }\nnode a { states = ("n" "y"); }\npotential ( a ) { data = ( 0.5 0.5 0.1 ); }\n'
    )
    (tmp_path / "a.net").write_text(net_text)
    with pytest.raises(ShapeError, match=r"a.net:3: .*3 numbers, expected 2"):
        read_network(tmp_path / "a.net")
    (tmp_path / "d.net").write_text("decision node d { }\n")
    with pytest.raises(ConfigurationError, match=r"d.net:1: decision nodes are not supported"):
        read_network(tmp_path / "d.net")
    (tmp_path / "m.uai").write_text("MARKOV\n1\n2\n1\n1 0\n2 0.5 0.5\n")
    with pytest.raises(ConfigurationError, match=r"m.uai:1: a MARKOV"):
        read_network(tmp_path / "m.uai")
    (tmp_path / "b.uai").write_text("BAYES\n2\n2 2\n2\n1 0\n2 0 1\n2 0.5 0.5\n3 0.5 0.5 0.5\n")
    with pytest.raises(ShapeError, match=r"b.uai:8: function 1 declares 3 entries"):
        read_network(tmp_path / "b.uai")
    (tmp_path / "x.xml").write_text('<?xml version="1.0"?>\n<BIF><NETWORK>\n<VARIABLE>\n</BIF>')
    with pytest.raises(ConfigurationError, match=r"x.xml:4: not well-formed"):
        read_network(tmp_path / "x.xml")
    bomb = '<?xml version="1.0"?>\n<!DOCTYPE b [<!ENTITY a "aaaa">]>\n<BIF>&a;</BIF>'
    (tmp_path / "e.xml").write_text(bomb)
    with pytest.raises(ConfigurationError, match=r"e.xml:2: a document type declaration"):
        read_network(tmp_path / "e.xml")


def test_files_that_cannot_be_read(tmp_path):
    with pytest.raises(ConfigurationError, match=r"suffix '.txt'"):
        read_network(tmp_path / "net.txt")
    with pytest.raises(ConfigurationError, match=r"cannot read network file"):
        read_network(tmp_path / "missing.bif")
    (tmp_path / "bad.bif.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ConfigurationError, match=r"bad.bif.gz"):
        read_network(tmp_path / "bad.bif.gz")
    (tmp_path / "big.bif").write_text(GOOD)
    with pytest.raises(ConfigurationError, match=r"larger than 100 bytes"):
        read_network(tmp_path / "big.bif", max_bytes=100)
    with pytest.raises(ConfigurationError, match=r"unknown network format 'csv'"):
        write_network(pyrobn.student_network(), tmp_path / "s.bif", format="csv")
    with pytest.raises(ConfigurationError, match=r"not a NET identifier"):
        DiscreteBayesianNetwork({"a b": CPT([0.5, 0.5])}).write(tmp_path / "s.net")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_corrupted_files_give_pyrobn_errors_never_raw_exceptions(tmp_path_factory, data):
    """Random edits of a valid file in every format: a network or a pyrobn error."""
    fmt = data.draw(st.sampled_from(["bif", "xmlbif", "net", "uai"]))
    path = tmp_path_factory.mktemp("fuzz") / f"s.{fmt}"
    pyrobn.student_network(named_states=True).write(path)
    text = path.read_text()
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(text)))
        j = data.draw(st.integers(i, min(len(text), i + 8)))
        text = text[:i] + data.draw(st.text(max_size=6)) + text[j:]
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RenormalizedWarning)
            read_network(path, device="cpu")
    except PyrobnError:
        pass


@pytest.mark.parametrize("fmt", ["bif", "xmlbif", "net", "uai", "json", "bif.gz"])
def test_the_command_answers_queries_on_every_format(tmp_path, capsys, fmt):
    from pyrobn.cli import main

    net = pyrobn.student_network(named_states=fmt != "uai")
    path = tmp_path / f"student.{fmt}"
    net.write(path)
    x1, x2 = ("x1", "x2") if fmt != "uai" else ("x0", "x1")  # UAI has no names
    assert main(["query", str(path), f"P({x1}=1 | {x2}=0)", "--digits", "10"]) == 0
    assert capsys.readouterr().out.strip().endswith("= 0.737704918")
    assert main(["query", str(tmp_path / "missing.net"), "x1"]) == 2
    assert "missing.net" in capsys.readouterr().err
