"""The chunked HMM kernels against brute force and hmmlearn (notes 2.1.3.4, eq. 12)."""

from __future__ import annotations

import concurrent.futures
import itertools
import math

import numpy as np
import pytest
import torch
from hmmlearn import hmm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyrobn.errors import ConfigurationError
from pyrobn.infer import hmm_ops
from tests.common import assert_close

#: both kernel families: the compiled CPU loops and the chunked torch scans (CUDA's path)
BACKENDS = ["compiled", "torch"]


def random_tables(k: int, v: int, seed: int, sticky: float = 0.0):
    g = torch.Generator().manual_seed(seed)

    def rows(*shape):
        x = -torch.rand(*shape, generator=g, dtype=torch.float64).log()
        return x / x.sum(-1, keepdim=True)

    trans = rows(k, k)
    if sticky:
        trans = (1 - sticky) * trans + sticky * torch.eye(k, dtype=torch.float64)
    return rows(k), trans, rows(k, v)


def brute_force(init, trans, emission, x):
    """log p(x), p(z_t | x) and max_z log p(z, x) by listing all K^T state paths (eq. 12)."""
    k, length = len(init), len(x)
    joints, paths = [], list(itertools.product(range(k), repeat=length))
    for z in paths:
        lp = math.log(init[z[0]]) + sum(math.log(emission[z[t], x[t]]) for t in range(length))
        lp += sum(math.log(trans[z[t - 1], z[t]]) for t in range(1, length))
        joints.append(lp)
    joints = torch.tensor(joints, dtype=torch.float64)
    log_p = torch.logsumexp(joints, 0)
    weights = (joints - log_p).exp()
    marginals = torch.zeros(length, k, dtype=torch.float64)
    for w, z in zip(weights, paths):
        marginals[torch.arange(length), torch.tensor(z)] += w
    best = int(joints.argmax())
    return log_p, marginals, joints[best], torch.tensor(paths[best])


def categorical_reference(init, trans, emission):
    ref = hmm.CategoricalHMM(n_components=len(init), implementation="scaling")
    ref.startprob_, ref.transmat_ = init.numpy(), trans.numpy()
    ref.emissionprob_ = emission.numpy()
    ref.n_features = emission.shape[1]
    return ref


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    k=st.integers(1, 3),
    v=st.integers(1, 4),
    length=st.integers(1, 5),
    seed=st.integers(0, 10_000),
)
def test_kernels_equal_brute_force(k, v, length, seed, backend):
    init, trans, emission = random_tables(k, v, seed)
    x = torch.randint(v, (length,), generator=torch.Generator().manual_seed(seed))
    log_p, marginals, best, _path = brute_force(init, trans, emission, x.tolist())
    obs = emission.T[x][None]
    assert_close(
        hmm_ops.forward_log_prob(obs, init, trans, backend=backend)[0], log_p, rtol=1e-10, atol=1e-8
    )
    gamma, log_p2, _ = hmm_ops.forward_backward(obs, init, trans)
    assert_close(gamma[0], marginals, rtol=1e-9, atol=1e-12)
    assert_close(log_p2[0], log_p, rtol=1e-10, atol=1e-8)
    found, score = hmm_ops.viterbi(obs.log(), init.log(), trans.log(), backend=backend)
    assert_close(score[0], best, rtol=1e-10, atol=1e-8)
    joint = init[found[0, 0]].log() + emission[found[0], x].log().sum()
    joint = joint + trans[found[0, :-1], found[0, 1:]].log().sum()
    assert_close(joint, best, rtol=1e-10, atol=1e-8)  # an optimal path (ties allowed)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("k", "v", "n", "length", "sticky"),
    [(2, 3, 1, 3000, 0.0), (4, 50, 3, 800, 0.0), (16, 20, 5, 400, 0.0), (7, 9, 2, 1500, 0.9)],
)
def test_categorical_kernels_equal_hmmlearn(k, v, n, length, sticky, backend):
    """Several K, vocabularies and lengths; long enough to be cut into many chunks."""
    init, trans, emission = random_tables(k, v, seed=k * v + n, sticky=sticky)
    ref = categorical_reference(init, trans, emission)
    x = torch.randint(v, (n, length), generator=torch.Generator().manual_seed(k))
    obs = emission.T[x]
    log_p = hmm_ops.forward_log_prob(obs, init, trans, backend=backend)
    gamma, log_p2, _ = hmm_ops.forward_backward(obs, init, trans)
    path, best = hmm_ops.viterbi(obs.log(), init.log(), trans.log(), backend=backend)
    for i in range(n):
        xi = x[i].numpy()[:, None]
        assert log_p[i].item() == pytest.approx(ref.score(xi), rel=1e-6)
        assert log_p2[i].item() == pytest.approx(ref.score(xi), rel=1e-6)
        np.testing.assert_allclose(gamma[i].numpy(), ref.predict_proba(xi), rtol=1e-6, atol=1e-12)
        ref_best, _ref_path = ref.decode(xi)
        assert best[i].item() == pytest.approx(ref_best, rel=1e-9)
        # categorical emissions can tie; our path must score the same as hmmlearn's
        z = path[i]
        joint = init[z[0]].log() + emission[z, x[i]].log().sum() + trans[z[:-1], z[1:]].log().sum()
        assert joint.item() == pytest.approx(ref_best, rel=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("k", "d", "length"), [(3, 1, 2000), (5, 2, 600)])
def test_gaussian_viterbi_path_equals_hmmlearn(k, d, length, backend):
    """Continuous emissions make the optimal path unique: the paths must be identical."""
    rng = np.random.default_rng(k)
    ref = hmm.GaussianHMM(n_components=k, covariance_type="diag", implementation="scaling")
    ref.startprob_ = rng.dirichlet(np.ones(k))
    ref.transmat_ = rng.dirichlet(np.ones(k), size=k)
    ref.means_ = rng.normal(0, 2, size=(k, d))
    ref.covars_ = rng.uniform(0.5, 2.0, size=(k, d))
    x, _ = ref.sample(length, random_state=k)
    means = torch.tensor(ref.means_)
    var = torch.tensor(ref.covars_[:, np.arange(d), np.arange(d)])
    xt = torch.tensor(x)[None, :, None, :]
    log_b = (-0.5 * ((xt - means) ** 2 / var + torch.log(2 * math.pi * var))).sum(-1)
    offset = log_b.amax(-1)
    init, trans = torch.tensor(ref.startprob_), torch.tensor(ref.transmat_)
    path, best = hmm_ops.viterbi(log_b, init.log(), trans.log(), backend=backend)
    ref_best, ref_path = ref.decode(x)
    assert best.item() == pytest.approx(ref_best, rel=1e-9)
    assert torch.equal(path[0], torch.as_tensor(ref_path))
    log_p = hmm_ops.forward_log_prob(
        (log_b - offset[..., None]).exp(), init, trans, None, offset, backend=backend
    )
    assert log_p.item() == pytest.approx(ref.score(x), rel=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
def test_chains_that_never_forget_are_still_exact(backend):
    """Identity transitions defeat the chunk guesses: the rounds fall back to exactness."""
    k, v, length = 3, 4, 700
    init, _, emission = random_tables(k, v, seed=3)
    trans = torch.eye(k, dtype=torch.float64)
    x = torch.randint(v, (1, length), generator=torch.Generator().manual_seed(0))
    obs = emission.T[x]
    expected = torch.logsumexp(init.log() + emission.log()[:, x[0]].sum(-1), 0)
    assert_close(
        hmm_ops.forward_log_prob(obs, init, trans, backend=backend)[0],
        expected,
        rtol=1e-12,
        atol=1e-8,
    )
    _norms, _, rounds = hmm_ops._normalised_scan(obs, init, trans, store=False)
    assert rounds > 2  # the guesses were wrong and re-run
    gamma, _, _ = hmm_ops.forward_backward(obs, init, trans)
    state_post = (init.log() + emission.log()[:, x[0]].sum(-1) - expected).exp()
    assert_close(gamma[0], state_post.expand(length, k), rtol=1e-9, atol=1e-8)
    path, _best = hmm_ops.viterbi(obs.log(), init.log(), trans.log(), backend=backend)
    winner = int((init.log() + emission.log()[:, x[0]].sum(-1)).argmax())
    assert bool((path[0] == winner).all())


@pytest.mark.parametrize("backend", BACKENDS)
def test_padding_equals_separate_sequences(backend):
    """Padded steps are no-ops: a padded batch equals each sequence on its own."""
    k, v = 4, 6
    init, trans, emission = random_tables(k, v, seed=11)
    lengths = [700, 31, 1, 250]
    g = torch.Generator().manual_seed(1)
    x = torch.randint(v, (len(lengths), max(lengths)), generator=g)
    mask = torch.arange(max(lengths))[None] < torch.tensor(lengths)[:, None]
    obs = emission.T[x]
    log_p = hmm_ops.forward_log_prob(obs, init, trans, mask, backend=backend)
    gamma, _, _ = hmm_ops.forward_backward(obs, init, trans, mask)
    path, best = hmm_ops.viterbi(obs.log(), init.log(), trans.log(), mask, backend=backend)
    for i, n in enumerate(lengths):
        alone = obs[i : i + 1, :n]
        assert_close(
            log_p[i],
            hmm_ops.forward_log_prob(alone, init, trans, backend=backend)[0],
            rtol=1e-5,
            atol=1e-8,
        )
        g_alone, _, _ = hmm_ops.forward_backward(alone, init, trans)
        assert_close(gamma[i, :n], g_alone[0], rtol=1e-9, atol=1e-14)
        assert bool((gamma[i, n:] == 0).all())
        p_alone, b_alone = hmm_ops.viterbi(alone.log(), init.log(), trans.log(), backend=backend)
        assert_close(best[i], b_alone[0], rtol=1e-5, atol=1e-8)
        assert torch.equal(path[i, :n], p_alone[0])
        assert bool((path[i, n:] == -1).all())


def test_expected_transitions_equal_brute_force():
    k, v, length = 2, 3, 5
    init, trans, emission = random_tables(k, v, seed=5)
    x = [0, 2, 1, 1, 0]
    paths = list(itertools.product(range(k), repeat=length))
    weights = []
    for z in paths:
        p = init[z[0]] * emission[z[0], x[0]]
        for t in range(1, length):
            p = p * trans[z[t - 1], z[t]] * emission[z[t], x[t]]
        weights.append(p)
    weights = torch.stack(weights)
    weights = weights / weights.sum()
    expected = torch.zeros(k, k, dtype=torch.float64)
    for w, z in zip(weights, paths):
        for t in range(1, length):
            expected[z[t - 1], z[t]] += w
    obs = emission.T[torch.tensor(x)][None]
    _, _, xi = hmm_ops.forward_backward(obs, init, trans, transitions=True)
    assert_close(xi, expected, rtol=1e-10, atol=1e-8)


@pytest.mark.parametrize("backend", BACKENDS)
def test_impossible_sequence_has_minus_infinite_log_prob(backend):
    init = torch.tensor([1.0, 0.0], dtype=torch.float64)
    trans = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    emission = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    x = torch.tensor([[0, 0, 1, 0]])
    obs = emission.T[x]
    assert hmm_ops.forward_log_prob(obs, init, trans, backend=backend)[0] == -math.inf
    _, best = hmm_ops.viterbi(obs.log(), init.log(), trans.log(), backend=backend)
    assert best[0] == -math.inf


@pytest.mark.parametrize("backend", BACKENDS)
def test_kernels_follow_the_device_of_their_inputs(device, backend):
    init, trans, emission = random_tables(3, 4, seed=2)
    init, trans, emission = init.to(device), trans.to(device), emission.to(device)
    x = torch.randint(4, (2, 300), generator=torch.Generator().manual_seed(0)).to(device)
    obs = emission.T[x]
    assert hmm_ops.forward_log_prob(obs, init, trans, backend=backend).device.type == device.type
    path, best = hmm_ops.viterbi(obs.log(), init.log(), trans.log(), backend=backend)
    assert path.device.type == device.type and best.device.type == device.type


def reference_viterbi_score(log_obs, log_init, log_trans, length):
    """max_z log p(z, x) by the plain sequential max-product recursion (a step-by-step loop)."""
    delta = log_init + log_obs[0]
    for t in range(1, length):
        delta = (delta[:, None] + log_trans).amax(0) + log_obs[t]
    return delta.max()


def path_log_joint(path, log_obs, log_init, log_trans):
    """log p(z, x) of one given state path (eq. 12)."""
    steps = torch.arange(len(path))
    return log_init[path[0]] + log_obs[steps, path].sum() + log_trans[path[:-1], path[1:]].sum()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("k", "chain", "lengths"),
    [
        (3, "random", [1500, 1, 977]),
        (5, "sticky", [1200, 640]),
        (4, "absorbing", [900, 899]),
        (40, "random", [4000, 3333]),  # few long chunks: the back-track splits them
    ],
)
def test_chunked_viterbi_equals_sequential_recursion(k, chain, lengths, backend):
    """Many chunks, padding, filler steps past T, near-deterministic and -inf transitions:
    the best score equals the sequential recursion and the returned path attains it."""
    init, trans, _ = random_tables(k, 2, seed=k)
    if chain == "sticky":
        trans = 0.02 * trans + 0.98 * torch.eye(k, dtype=torch.float64)
    elif chain == "absorbing":  # state 0 never leaves: log A_0j = -inf for j != 0
        trans[0] = torch.eye(k, dtype=torch.float64)[0]
    g = torch.Generator().manual_seed(7)
    log_obs = 2.0 * torch.randn(len(lengths), max(lengths), k, generator=g, dtype=torch.float64)
    mask = torch.arange(max(lengths))[None] < torch.tensor(lengths)[:, None]
    log_obs = torch.where(mask[..., None], log_obs, torch.zeros_like(log_obs))
    path, best = hmm_ops.viterbi(log_obs, init.log(), trans.log(), mask, backend=backend)
    for i, n in enumerate(lengths):
        expected = reference_viterbi_score(log_obs[i], init.log(), trans.log(), n)
        assert best[i].item() == pytest.approx(expected.item(), rel=1e-12, abs=1e-9)
        found = path_log_joint(path[i, :n], log_obs[i], init.log(), trans.log())
        assert found.item() == pytest.approx(expected.item(), rel=1e-12, abs=1e-9)
        assert bool((path[i, n:] == -1).all())


@pytest.mark.parametrize("backend", BACKENDS)
def test_near_underflow_blocks_are_redone_exactly(backend):
    """Factors so small that a block between renormalisations underflows: scaling every
    factor by c adds T log c to log p(x) and to the best score, and the path stays optimal
    (categorical emissions have exact ties, so the path itself may switch between them)."""
    k, v, length = 3, 5, 400
    init, trans, emission = random_tables(k, v, seed=5)
    x = torch.randint(v, (2, length), generator=torch.Generator().manual_seed(2))
    obs = emission.T[x]
    tiny = 1e-40  # a block of 8 steps multiplies the mass by about 1e-320 < UNDERFLOW
    shift = length * math.log(tiny)
    log_p = hmm_ops.forward_log_prob(obs, init, trans, backend=backend)
    assert_close(
        hmm_ops.forward_log_prob(obs * tiny, init, trans, backend=backend),
        log_p + shift,
        rtol=1e-5,
        atol=1e-8,
    )
    gamma, _, _ = hmm_ops.forward_backward(obs, init, trans)
    gamma_tiny, _, _ = hmm_ops.forward_backward(obs * tiny, init, trans)
    assert_close(gamma_tiny, gamma, rtol=1e-9, atol=1e-14)
    _, best = hmm_ops.viterbi(obs.log(), init.log(), trans.log(), backend=backend)
    path_tiny, best_tiny = hmm_ops.viterbi(
        (obs * tiny).log(), init.log(), trans.log(), backend=backend
    )
    assert_close(best_tiny, best + shift, rtol=1e-12, atol=1e-8)
    for i in range(len(x)):
        found = path_log_joint(path_tiny[i], obs[i].log(), init.log(), trans.log())
        assert found.item() == pytest.approx(best[i].item(), rel=1e-12)


def test_viterbi_backend_is_checked():
    init, trans, emission = random_tables(2, 3, seed=0)
    obs = emission.T[torch.tensor([[0, 1, 2]])]
    with pytest.raises(ConfigurationError, match="backend"):
        hmm_ops.viterbi(obs.log(), init.log(), trans.log(), backend="fast")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_kernels_keep_the_dtype_and_agree_with_torch(dtype):
    """Both kernel families on a batch of several lengths: same scores, optimal paths,
    same log p(x), same dtype."""
    k, v = 6, 8
    init, trans, emission = (t.to(dtype) for t in random_tables(k, v, seed=4))
    lengths = [300, 17, 120]
    x = torch.randint(v, (3, 300), generator=torch.Generator().manual_seed(3))
    mask = torch.arange(300)[None] < torch.tensor(lengths)[:, None]
    log_obs = torch.where(mask[..., None], emission.T[x].log(), torch.zeros((), dtype=dtype))
    args = (log_obs, init.log(), trans.log(), mask)
    path_c, best_c = hmm_ops.viterbi(*args, backend="compiled")
    _, best_t = hmm_ops.viterbi(*args, backend="torch")
    assert best_c.dtype == dtype and path_c.dtype == torch.long
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert_close(best_c, best_t, rtol=tol, atol=1e-8)
    factors = torch.where(mask[..., None], emission.T[x], torch.ones((), dtype=dtype))
    log_p_c = hmm_ops.forward_log_prob(factors, init, trans, mask, backend="compiled")
    log_p_t = hmm_ops.forward_log_prob(factors, init, trans, mask, backend="torch")
    assert log_p_c.dtype == dtype
    assert_close(log_p_c, log_p_t, rtol=tol, atol=1e-8)
    for i, n in enumerate(lengths):
        found = path_log_joint(path_c[i, :n], log_obs[i], init.log(), trans.log())
        assert found.item() == pytest.approx(best_t[i].item(), rel=tol)
        assert bool((path_c[i, n:] == -1).all())


def test_auto_backend_takes_the_compiled_forward_for_few_states_only(monkeypatch):
    """ "auto" sends models with at most COMPILED_FORWARD_MAX_STATES states to the compiled
    forward loop and larger ones to the torch scan; both agree."""
    from pyrobn.infer import hmm_compiled

    calls = []
    original = hmm_compiled.forward_log_prob
    monkeypatch.setattr(
        hmm_compiled, "forward_log_prob", lambda *a: calls.append(a[0].shape) or original(*a)
    )
    most = hmm_ops.COMPILED_FORWARD_MAX_STATES
    for n, k in [(1, 3), (32, most), (4, most + 1)]:
        init, trans, emission = random_tables(k, 5, seed=n)
        x = torch.randint(5, (n, 50), generator=torch.Generator().manual_seed(n))
        obs = emission.T[x]
        auto = hmm_ops.forward_log_prob(obs, init, trans)
        torch_only = hmm_ops.forward_log_prob(obs, init, trans, backend="torch")
        assert_close(auto, torch_only, rtol=1e-12, atol=1e-8)
    assert calls == [(1, 50, 3), (32, 50, most)]


def test_compiled_viterbi_is_safe_from_several_threads():
    """Parallel launches from two Python threads are serialised, not a crash."""
    init, trans, emission = random_tables(5, 7, seed=6)
    x = torch.randint(7, (64, 200), generator=torch.Generator().manual_seed(0))
    args = (emission.T[x].log(), init.log(), trans.log())
    expected = hmm_ops.viterbi(*args, backend="compiled")
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: hmm_ops.viterbi(*args, backend="compiled"), range(8)))
    for path, best in results:
        assert torch.equal(path, expected[0]) and torch.equal(best, expected[1])


# ------------------------------------------------------------------ thread counts
def _every_kernel_family():
    """Forward, forward-backward, Viterbi (compiled and torch) and sampling, directly and
    through the model (which pins torch's threads around its kernels)."""
    import pyrobn

    init, trans, emission = random_tables(4, 6, seed=8)
    x = torch.randint(6, (3, 500), generator=torch.Generator().manual_seed(8))
    obs = emission.T[x]
    for backend in BACKENDS:
        yield (
            f"forward[{backend}]",
            lambda b=backend: hmm_ops.forward_log_prob(obs, init, trans, backend=b),
        )
        yield (
            f"viterbi[{backend}]",
            lambda b=backend: hmm_ops.viterbi(obs.log(), init.log(), trans.log(), backend=b),
        )
    yield "forward_backward", lambda: hmm_ops.forward_backward(obs, init, trans, transitions=True)
    model = pyrobn.HiddenMarkovModel(
        4, n_symbols=6, init_probs=init, trans_probs=trans, emission_probs=emission
    )
    yield "sample", lambda: model.sample(50, 100, seed=0)
    yield "model.log_prob", lambda: model.log_prob(x)
    yield "model.predict_proba", lambda: model.predict_proba(x)
    yield "model.predict", lambda: model.predict(x)
    yield "model.fit", lambda: model.fit(x, max_iter=2)


@pytest.mark.parametrize("threads", [1, 2])
def test_no_kernel_changes_the_thread_counts(threads, monkeypatch):
    """torch.get_num_threads() and numba.get_num_threads() are the same after every kernel
    family as before, under 1 and 2 threads; numba's count is never even set."""
    import numba

    torch_before, numba_before = torch.get_num_threads(), numba.get_num_threads()
    numba_threads = min(threads, numba.config.NUMBA_NUM_THREADS)
    calls = []
    original = numba.set_num_threads
    torch.set_num_threads(threads)
    original(numba_threads)
    try:
        monkeypatch.setattr(numba, "set_num_threads", lambda n: calls.append(n) or original(n))
        for name, run in _every_kernel_family():
            run()
            assert torch.get_num_threads() == threads, name
            assert numba.get_num_threads() == numba_threads, name
        assert calls == []
    finally:
        torch.set_num_threads(torch_before)
        original(numba_before)


def test_the_first_compiled_kernel_leaves_torch_threads_alone():
    """The issue's reproduction, in a fresh process (numba's OpenMP pool starts there):
    torch.set_num_threads(1); a Viterbi query; torch.get_num_threads() stays 1."""
    import os
    import subprocess
    import sys

    code = (
        "import torch, pyrobn; torch.set_num_threads(1); "
        "pyrobn.HiddenMarkovModel(2, n_symbols=3).viterbi(torch.tensor([0, 1, 2])); "
        "m = pyrobn.HiddenMarkovModel(2, n_symbols=3); m.log_prob(torch.zeros(4, 9).long()); "
        "print(torch.get_num_threads())"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"
