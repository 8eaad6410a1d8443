"""Fast exact kernels for hidden Markov models (notes 2.1.3.4, eq. 12, Figura 5).

The joint of eq. 12, p(z, x) = p(z_1) prod_t p(z_{t+1} | z_t) prod_t p(x_t | z_t), gives

* the forward algorithm   alpha_t(j) = p(x_t | z_t = j) sum_i alpha_{t-1}(i) A_ij,
  log p(x) = log sum_j alpha_T(j)                                          (sum-product);
* the backward algorithm  beta_t(i) = sum_j A_ij p(x_{t+1} | j) beta_{t+1}(j), and the
  posterior marginals      p(z_t | x) = alpha_t beta_t / p(x)             (forward-backward);
* the Viterbi recursion   delta_t(j) = log p(x_t | j) + max_i [delta_{t-1}(i) + log A_ij]
  and its back-pointers                                                    (max-product).

Every recursion is a scan over time, and a Python loop over 100,000 time steps costs about a
second in torch (5-10 us per operation). The kernels below therefore cut each sequence into
C chunks of L steps and run all the chunks (of all the sequences) side by side, one batched
matrix product per step, so a pass costs L Python steps instead of T. A chunk needs the
forward vector at its left boundary, which is known only when the previous chunk is done;
the kernels guess it by running the recursion over the last W steps of the previous chunk
from a uniform vector ("warm-up"). Because the normalised recursion forgets its starting
point (its map is a contraction in Hilbert's projective metric: Birkhoff; for max-plus
this is the "rank convergence" of Maleki, Musuvathi and Mytkowicz, PPoPP 2014), the guess
usually equals the true boundary vector to machine precision. Every guess is then
*checked* against the end of the previous chunk, and the chunks whose guess was wrong are
run again from the true boundary until all boundaries agree (relative tolerance
``BOUNDARY_RTOL``). Each round fixes at least the first wrong chunk of every sequence, so
the result is exact whatever the model; a chain that never forgets (an identity transition
matrix, say) merely costs more rounds, down to the speed of a sequential scan.

Viterbi back-tracking is chunked the same way, on the forward pass's own buffer (no
re-layout): each chunk back-tracks from a state guessed by back-tracking W steps of the
next chunk, and guesses are checked (exactly: states are integers) against the path the
next chunk actually took. The max-plus step materialises (K, K, rows) and reduces it with
``amax`` (values only: ``max`` with indices costs about 5 times more per element), so the
back-track recomputes one arg-max over K per row and step instead of storing pointers.

On CPU, ``BACKEND = "auto"`` runs Viterbi, and the forward algorithm for K <= 16 states, as
compiled loops instead (:mod:`pyrobn.infer.hmm_compiled`, numba): max-plus has no BLAS, so
the chunked max-plus steps, each materialising (rows, K, K), only reach the speed of
hmmlearn's C loop there, and with few states the (rows, K) @ (K, K) products are too small
to pay for their dispatch. The chunked kernels remain the CUDA path.

Conventions: ``obs`` (N, T, K) holds per-step emission factors b_t(k) = p(x_t | z_t = k)
(probability space, optionally divided by a per-step constant whose log is in ``offset``),
or their logs for Viterbi; ``mask`` (N, T) is True on real steps. Missing observations
have b = 1 (log b = 0): they are summed out. Padded steps are no-ops.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib.util
import math
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch

from pyrobn.errors import ConfigurationError

__all__ = [
    "BACKEND",
    "BACKENDS",
    "KERNEL_THREADS",
    "chunk_length",
    "compiled_available",
    "forward_backward",
    "forward_log_prob",
    "kernel_threads",
    "viterbi",
]

#: relative tolerance for a guessed chunk boundary vector to count as the true one
BOUNDARY_RTOL = 1e-12
#: absolute tolerance for guessed Viterbi boundary scores (only near-ties this close can
#: change a path; hmmlearn's own unnormalised sums carry errors of this order at T = 1e5)
VITERBI_ATOL = 1e-9
#: warm-up steps that guess a chunk's boundary: measured on random models, the normalised
#: forward vector forgets its start to 1e-12 within 24-32 steps and the max-plus one
#: (rank convergence) within 16-24; a wrong guess only costs a re-run of its chunk
WARM_UP = {"sum": 32, "max": 24, "back": 24}
#: sum-product vectors are renormalised every this many steps (and at chunk ends); a
#: block whose mass comes near underflow is redone step by step (``UNDERFLOW``)
RENORMALISE_EVERY = 8
#: a renormaliser below this means the mass came near underflow: redo every step
UNDERFLOW = 1e-200
#: elements of one (rows, K, K) max-plus intermediate: small enough to stay in cache
MAXPLUS_ELEMENTS = 2**16
#: at most this many rows for the max-plus pass (small K: fewer, longer chunks pay)
MAXPLUS_ROWS = 2048
#: rows the Viterbi back-track aims for (its steps are (rows, K) gathers and arg-maxes; long
#: chunks are split for it)
BACKTRACK_ROWS = 512

#: intra-op threads while a torch kernel runs on CPU (None: leave torch's setting). The
#: kernels' per-step operations are sized to stay in cache (about 64K elements); threading
#: them costs more in synchronisation than it gains, and collapses when the cores are
#: oversubscribed. Measured by ``python bench/hmm.py --kernel-threads`` (each query with 1
#: pinned thread against the caller's 2, medians of 7 interleaved runs; K = 4 / 16 / 64, one
#: sequence of 20,000 steps and 256 x 200), twice on the 2-core development machine shared
#: with other jobs (load averages 10 and 16): with the caller's 2 threads, forward-backward
#: was 3.8-46x slower, the torch forward scan 3.6-73x and the torch Viterbi scan 3.8-65x
#: (the compiled paths, whose boundary checks and emission lookups are torch operations,
#: 1.4-30x); no case was faster. Not measured on a quiet many-core machine, where large K
#: might gain from threads: set ``KERNEL_THREADS = None`` to try. See
#: :func:`kernel_threads` for its scope.
KERNEL_THREADS: int | None = 1

#: kernels on CPU: "compiled" runs the numba loops of :mod:`pyrobn.infer.hmm_compiled`,
#: "torch" the chunked torch scans (the CUDA path), "auto" the faster one where measured:
#: always the compiled Viterbi, and the compiled forward algorithm up to
#: ``COMPILED_FORWARD_MAX_STATES`` states (measured on 1-1024 sequences of 50-20,000 steps:
#: the compiled loop is 1-7x faster for K <= 16; from K = 24 the torch scan's BLAS products
#: win on long or many sequences)
BACKENDS = ("auto", "compiled", "torch")
#: the backend :func:`viterbi` and :func:`forward_log_prob` use when none is given
BACKEND = "auto"
COMPILED_FORWARD_MAX_STATES = 16

F = TypeVar("F", bound=Callable[..., Any])

#: torch's thread count outside ``kernel_threads`` (the compiled kernel's thread budget)
_OUTER_THREADS: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "pyrobn_outer_threads", default=None
)


@contextlib.contextmanager
def kernel_threads(device: torch.device) -> Iterator[None]:
    """Run the block with ``KERNEL_THREADS`` intra-op threads when ``device`` is a CPU.

    Why: the torch kernels' steps are small (see ``KERNEL_THREADS`` for the measurement:
    threading them made the queries 1.4-73x slower on a loaded 2-core machine, and never
    faster). Scope: torch's CPU build runs its intra-op threads on OpenMP, whose thread
    count is a per-thread setting, so the change is seen by the calling thread only, and
    only inside the call (another Python thread's ``torch.get_num_threads()`` does not move);
    the caller's count is restored on the way out, also on an exception. Nothing is done
    when the count already equals ``KERNEL_THREADS``, on CUDA, or with
    ``KERNEL_THREADS = None``. numba's thread count is never set (see
    :mod:`pyrobn.infer.hmm_compiled`).
    """
    if KERNEL_THREADS is None or device.type != "cpu" or torch.get_num_threads() == KERNEL_THREADS:
        yield
        return
    previous = torch.get_num_threads()
    token = _OUTER_THREADS.set(_OUTER_THREADS.get() or previous)
    torch.set_num_threads(KERNEL_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
        _OUTER_THREADS.reset(token)


@functools.cache
def compiled_available() -> bool:
    """Whether the compiled CPU kernels can run (numba is installed)."""
    return importlib.util.find_spec("numba") is not None


def _compiled(x: torch.Tensor, backend: str | None, auto: bool) -> bool:
    """Whether to run the compiled kernel on ``x``: ``backend`` (None: ``BACKEND``), with
    ``auto`` the choice of "auto"; CUDA tensors always take the torch kernels."""
    backend = BACKEND if backend is None else backend
    if backend not in BACKENDS:
        raise ConfigurationError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if x.device.type != "cpu" or backend == "torch":
        return False
    return backend == "compiled" or (auto and compiled_available())


def _outer_threads() -> int:
    """The threads the compiled kernels may use: torch's setting outside ``kernel_threads``."""
    return _OUTER_THREADS.get() or torch.get_num_threads()


def _threaded(fn: F) -> F:
    """Run ``fn`` with ``KERNEL_THREADS`` intra-op threads (its first argument's device)."""

    @functools.wraps(fn)
    def wrapper(first: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        with kernel_threads(first.device):
            return fn(first, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


RowRun = Callable[[torch.Tensor | None, torch.Tensor], tuple[torch.Tensor, list[torch.Tensor]]]


# ----------------------------------------------------------------------------- chunk layout
def _sum_rows(n_states: int) -> int:
    """Target rows of a sum-product step (rows, K) @ (K, K): measured on 1 x 100,000 and
    256 x 200 (more rows cost more per step than the shorter chunks save)."""
    return 1024 if n_states <= 8 else (512 if n_states <= 32 else 256)


def chunk_length(n_seq: int, length: int, n_states: int, kind: str) -> int:
    """The chunk length L for ``n_seq`` sequences of ``length`` steps.

    Rows (chunks run side by side) are sized so one step's work fills the machine without
    leaving the cache: sum-product steps are (rows, K) @ (K, K) products; max-plus steps
    materialise (rows, K, K), so they use fewer rows for larger K.
    """
    if kind == "sum":
        target_rows = _sum_rows(n_states)
    else:  # "max": the Viterbi forward pass (its back-track reuses the layout)
        target_rows = int(min(MAXPLUS_ROWS, max(16, MAXPLUS_ELEMENTS // n_states**2)))
    chunks = max(1, math.ceil(target_rows / max(n_seq, 1)))
    min_len = WARM_UP["sum"]
    chunks = max(1, min(chunks, length // min_len))
    # among chunk counts down to 3/4 of that, take the one with the fewest filler steps
    # past T (filler steps are padding, which costs a select per step)
    candidates = range(chunks, max(1, (3 * chunks) // 4) - 1, -1)
    chunks = min(candidates, key=lambda c: math.ceil(length / c) * c - length)
    return math.ceil(length / chunks)


def _to_chunks(x: torch.Tensor, chunk: int, fill: float | bool) -> torch.Tensor:
    """(N, T, ...) -> (N, C, L, ...), padding time with ``fill`` up to C * L."""
    n, t = x.shape[:2]
    c = math.ceil(t / chunk)
    pad = c * chunk - t
    if pad:
        filler = x.new_full((n, pad, *x.shape[2:]), fill)
        x = torch.cat([x, filler], dim=1)
    return x.reshape(n, c, chunk, *x.shape[2:])


def _from_chunks(x: torch.Tensor, length: int) -> torch.Tensor:
    """(N, C, L, ...) -> (N, T, ...)."""
    n, c, chunk = x.shape[:3]
    return x.reshape(n, c * chunk, *x.shape[3:])[:, :length]


def _speculative(
    run: RowRun,
    starts: torch.Tensor,
    n_chunks: int,
    same: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    link: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    *,
    backwards: bool = False,
    dim: int = 0,
) -> tuple[torch.Tensor, list[torch.Tensor], int]:
    """Run all rows from guessed ``starts``, then re-run rows whose guess was wrong.

    Rows are chunks, row r = n * C + c, indexed along ``dim`` of ``starts``, of the ends
    and of every output. Row r's true start is ``link(end of its predecessor, r)`` (``link``
    defaults to the end itself); the predecessor is row r - 1 (chunk c - 1), or row r + 1
    (chunk c + 1) when ``backwards``, and the rows with no predecessor start exactly.
    ``run(rows, starts)`` runs the given rows (None = all) and returns their ends and
    per-row outputs. Returns the ends, the outputs and the number of rounds.
    """
    ends, outputs = run(None, starts)
    n_rows = starts.shape[dim]
    device = starts.device
    step = -1 if backwards else 1
    exact_chunk = n_chunks - 1 if backwards else 0
    all_rows = torch.arange(n_rows, device=device)
    candidates = all_rows[(all_rows % n_chunks) != exact_chunk]
    rounds = 1
    while candidates.numel():
        previous_ends = ends.index_select(dim, candidates - step)
        proposed = previous_ends if link is None else link(previous_ends, candidates)
        wrong = ~same(starts.index_select(dim, candidates), proposed)
        rows = candidates[wrong]
        if not rows.numel():
            break
        fixed = proposed.index_select(dim, wrong.nonzero()[:, 0])
        starts.index_copy_(dim, rows, fixed)
        new_ends, new_outputs = run(rows, fixed)
        ends.index_copy_(dim, rows, new_ends)
        for stored, new in zip(outputs, new_outputs):
            stored.index_copy_(dim if dim >= 0 else stored.dim() + dim, rows, new)
        rounds += 1
        successors = rows + step
        candidates = successors[(successors % n_chunks) != exact_chunk]
    return ends, outputs, rounds


def _same_distribution(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Rows equal within ``BOUNDARY_RTOL`` relative, entry by entry (NaN rows match NaN rows)."""
    close = (a - b).abs() <= BOUNDARY_RTOL * torch.maximum(a.abs(), b.abs())
    return (close | (a.isnan() & b.isnan())).all(-1)


def _same_log_vector(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Rows of logs equal within ``VITERBI_ATOL`` (absolute), -inf matching -inf.

    Max-plus scores are summed unnormalised within a chunk (as hmmlearn sums them over the
    whole sequence), so they carry absolute rounding errors of about |score| * 1e-16.
    """
    close = (a - b).abs() <= VITERBI_ATOL
    return (close | (a == b) | (a.isnan() & b.isnan())).all(-1)


# ----------------------------------------------------------------------------- sum-product
def _normalised_scan(
    obs: torch.Tensor,
    first: torch.Tensor,
    trans: torch.Tensor,
    *,
    store: bool,
    every: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """v_t ∝ (v_{t-1} @ trans) * obs_t, v_0 ∝ first * obs_0, chunked; log p = sum log s.

    The vectors are renormalised (divided by their sum s) every ``every`` steps and at each
    chunk's end, which saves two operations on the other steps; should a block's mass come
    near underflow (s < ``UNDERFLOW``), the whole scan is redone renormalising every step.
    Returns the normalisers s (N, blocks) (their logs sum to log p), the normalised vectors
    v_t (N, T, K) when ``store``, and the number of speculative rounds.
    """
    if every is None:
        every = RENORMALISE_EVERY
    n, length, k = obs.shape
    chunk = chunk_length(n, length, k, "sum")
    chunks = _to_chunks(obs, chunk, 1.0)  # (N, C, L, K)
    n_chunks = chunks.shape[1]
    rows_obs = chunks.reshape(n * n_chunks, chunk, k)
    is_first = (torch.arange(n * n_chunks, device=obs.device) % n_chunks) == 0

    def run(rows: torch.Tensor | None, starts: torch.Tensor):
        steps = rows_obs if rows is None else rows_obs[rows]
        first_rows = is_first if rows is None else is_first[rows]
        pred = torch.where(first_rows[:, None], first, starts @ trans)
        norms, vectors = [], []
        v = pred
        for t, b_t in enumerate(steps.unbind(1)):
            v = pred * b_t
            if (t + 1) % every == 0 or t + 1 == chunk:
                s = v.sum(-1, keepdim=True)
                v = v / s
                norms.append(s)
            if store:
                vectors.append(v)
            if t + 1 < chunk:
                pred = v @ trans
        outputs = [torch.cat(norms, -1)]
        if store:
            outputs.append(torch.stack(vectors, 1))
        return v, outputs

    starts = obs.new_full((n * n_chunks, k), 1.0 / k)
    if n_chunks > 1:
        # guess row r's start from the last W steps of row r - 1 (row 0's guess is unused);
        # the steps are strided views, not a copy
        width = min(chunk, WARM_UP["sum"])
        v = starts[1:]
        for t, b_t in enumerate(rows_obs[:-1, chunk - width :].unbind(1)):
            v = (v @ trans) * b_t
            if (t + 1) % every == 0 or t + 1 == width:
                v = v / v.sum(-1, keepdim=True)
        starts[1:] = v
    _, outputs, rounds = _speculative(run, starts, n_chunks, _same_distribution)
    norms = outputs[0].reshape(n, -1)
    # a block whose mass fell below UNDERFLOW (or to 0: it may have underflowed, or the
    # sequence is impossible; step by step tells which) is redone renormalising every step
    if every > 1 and bool((norms < UNDERFLOW).any()):
        return _normalised_scan(obs, first, trans, store=store, every=1)
    vectors = None
    if store:
        vectors = _from_chunks(outputs[1].reshape(n, n_chunks, chunk, k), length)
        vectors = vectors / vectors.sum(-1, keepdim=True)
    return norms, vectors, rounds


def _log_normaliser(norms: torch.Tensor) -> torch.Tensor:
    """sum log s over the renormalisations (padded and filler steps keep the mass, so they
    add log 1 = 0); -inf where some s is 0 or NaN (an impossible observation)."""
    impossible = ~(norms > 0)
    total = torch.where(impossible, torch.ones_like(norms), norms).log().sum(-1)
    return torch.where(impossible.any(-1), torch.full_like(total, -math.inf), total)


@_threaded
def forward_log_prob(
    obs: torch.Tensor,
    init: torch.Tensor,
    trans: torch.Tensor,
    mask: torch.Tensor | None = None,
    offset: torch.Tensor | None = None,
    *,
    backend: str | None = None,
) -> torch.Tensor:
    """log p(x) by the scaled forward algorithm (eq. 12 summed over z), one per sequence.

    ``obs`` (N, T, K) emission factors (padded and missing steps = 1), ``init`` (K,),
    ``trans`` (K, K) row-stochastic, ``mask`` (N, T) real steps (a prefix), ``offset``
    (N, T) the log of a per-step constant divided out of ``obs``. ``backend``: see
    ``BACKENDS``. Returns (N,).
    """
    if _compiled(obs, backend, auto=obs.shape[-1] <= COMPILED_FORWARD_MAX_STATES):
        from pyrobn.infer import hmm_compiled

        total = hmm_compiled.forward_log_prob(obs, init, trans, mask, _outer_threads())
    else:
        if mask is not None:
            obs = torch.where(mask[..., None], obs, torch.ones_like(obs))
        norms, _, _ = _normalised_scan(obs, init, trans, store=False)
        total = _log_normaliser(norms)
    return total if offset is None else total + _masked_sum(offset, mask)


def _masked_sum(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return x.sum(-1) if mask is None else torch.where(mask, x, torch.zeros_like(x)).sum(-1)


@_threaded
def forward_backward(
    obs: torch.Tensor,
    init: torch.Tensor,
    trans: torch.Tensor,
    mask: torch.Tensor | None = None,
    offset: torch.Tensor | None = None,
    *,
    transitions: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Posterior marginals gamma_t(k) = p(z_t = k | x) by forward-backward, and log p(x).

    The backward recursion is the forward one run backwards on A^T: with
    u_t = normalise(b_t * beta_t), u_t = normalise((u_{t+1} @ A^T) * b_t) and
    beta_t ∝ A u_{t+1}; so gamma_t ∝ alpha_t * (A u_{t+1}). With ``transitions`` it also
    returns the expected transition counts sum_{n,t} p(z_{t-1} = i, z_t = j | x) (K, K)
    (the E-step of Baum-Welch). Padded steps get gamma = 0.
    """
    _n, length, k = obs.shape
    if mask is not None:
        # b = 1 on padding: forwards a no-op on the log, backwards it keeps beta uniform
        obs = torch.where(mask[..., None], obs, torch.ones_like(obs))
    norms, alphas, _ = _normalised_scan(obs, init, trans, store=True)
    flipped = obs.flip(1)
    _, us, _ = _normalised_scan(flipped, torch.ones_like(init), trans.T, store=True)
    us = us.flip(1)  # u_t, (N, T, K)
    betas = torch.cat([us[:, 1:] @ trans.T, torch.ones_like(us[:, :1])], dim=1)
    gamma = alphas * betas
    gamma = gamma / gamma.sum(-1, keepdim=True)
    if mask is not None:
        gamma = torch.where(mask[..., None], gamma, torch.zeros_like(gamma))
    log_prob = _log_normaliser(norms)
    if offset is not None:
        log_prob = log_prob + _masked_sum(offset, mask)
    xi = None
    if transitions and length > 1:
        previous = alphas[:, :-1]  # alpha_{t-1}
        current = us[:, 1:]  # u_t
        denominator = ((previous @ trans) * current).sum(-1, keepdim=True)
        weight = previous / denominator
        if mask is not None:
            weight = torch.where(mask[:, 1:, None], weight, torch.zeros_like(weight))
        weight = torch.nan_to_num(weight, nan=0.0)
        xi = trans * (weight.reshape(-1, k).T @ current.reshape(-1, k))
    elif transitions:
        xi = torch.zeros_like(trans)
    return gamma, log_prob, xi


# ----------------------------------------------------------------------------- max-product
def _chunk_pads(
    pad: torch.Tensor | None, n: int, length: int, chunk: int, device: torch.device
) -> torch.Tensor | None:
    """(rows, L) padding flags of the chunk rows (filler steps past T count as padding);
    None when no step is padded."""
    filler = (-length) % chunk
    if pad is None and not filler:
        return None
    if pad is None:
        pad = torch.zeros((n, length), dtype=torch.bool, device=device)
    return _to_chunks(pad, chunk, True).reshape(-1, chunk)


def _viterbi_chunked(
    log_obs: torch.Tensor, log_init: torch.Tensor, log_trans: torch.Tensor, pad: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Viterbi on chunk rows: max-plus forward pass, then the arg-max back-track.

    Layout: row r = n * C + c is chunk c of sequence n (L steps); the vectors are kept
    states-first, d_t as (K, rows), stored time-major in one (L, K, rows) buffer, so the
    max over predecessors, d_t(j) = log_obs_t(j) + max_i [d_{t-1}(i) + log A_ij], reduces
    contiguous slabs. Padded steps (``pad`` True, and the filler steps past T) copy
    d_{t-1}. Chunk c > 0 starts from a vector with max 0 guessed by a warm-up over the end
    of chunk c - 1 and checked (``VITERBI_ATOL``); its end maximum is its gain, so
    max_z log p(z, x) = the sum of the chunks' gains.

    The back-track z_{t-1} = argmax_i [d_{t-1}(i) + log A_{i, z_t}] (or z_t if step t is
    padding) runs on the same buffer, every chunk at once from the last step to the first;
    chunk c guesses its last state by back-tracking W steps of chunk c + 1, and the guess is
    checked (exactly) against where chunk c + 1 really ends. Returns paths (N, T) and
    scores (N,).
    """
    n, length, k = log_obs.shape
    device = log_obs.device
    chunk = chunk_length(n, length, k, "max")
    obs_rows = _to_chunks(log_obs, chunk, 0.0).reshape(-1, chunk, k)  # (R, L, K)
    n_rows = obs_rows.shape[0]
    n_chunks = n_rows // n
    pad_rows = _chunk_pads(pad, n, length, chunk, device)
    chunk_of_row = torch.arange(n_rows, device=device) % n_chunks
    is_first = chunk_of_row == 0
    trans_ij1 = log_trans.unsqueeze(-1)  # [i, j, 1]
    init_col = log_init.unsqueeze(-1)

    def propagate(v: torch.Tensor, out: torch.Tensor, expanded: bool = False) -> torch.Tensor:
        """out = max_i [v(i) + log A_ij] for v (K, r) (or (K, 1, r) if ``expanded``), in
        target blocks that stay in cache."""
        block = max(1, MAXPLUS_ELEMENTS // (v.shape[-1] * k))
        v = v if expanded else v.unsqueeze(1)
        if block >= k:
            return torch.amax(v + trans_ij1, 0, out=out)
        for j in range(0, k, block):
            torch.amax(v + trans_ij1[:, j : j + block], 0, out=out[j : j + block])
        return out

    # time-major, states-first observations: step t is a (K, rows) slab; copied to make the
    # slabs contiguous unless the rows are few (then a strided slab reads few cache lines)
    obs_steps = obs_rows.permute(1, 2, 0)
    if n_rows > 64:
        obs_steps = obs_steps.contiguous()

    def run_forward(rows: torch.Tensor | None, starts: torch.Tensor):
        obs = obs_steps if rows is None else obs_steps[:, :, rows]
        pads = None if pad_rows is None else (pad_rows if rows is None else pad_rows[rows])
        first = is_first if rows is None else is_first[rows]
        deltas = obs.new_empty(obs.shape)
        v = propagate(starts, deltas[0])
        v.copy_(torch.where(first, init_col, v)).add_(obs[0])
        padded = [False] * chunk if pads is None else pads.any(0).tolist()
        if padded[0]:
            v.copy_(torch.where(pads[:, 0], starts, v))
        # per-step views taken in one call each (indexing per step costs microseconds)
        outs, ins, obs_t = deltas.unbind(0), deltas.unsqueeze(2).unbind(0), obs.unbind(0)
        for t in range(1, chunk):
            v = propagate(ins[t - 1], outs[t], expanded=True).add_(obs_t[t])
            if padded[t]:
                v.copy_(torch.where(pads[:, t], outs[t - 1], v))
        gain = v.amax(0)
        return v - gain, [deltas, gain.unsqueeze(0)]

    starts = log_obs.new_zeros((k, n_rows))
    if n_chunks > 1:
        # guess row r's start from the last W steps of row r - 1 (row 0's guess is unused)
        width = min(chunk, WARM_UP["max"])
        v = log_obs.new_zeros((k, n_rows - 1))
        for t in range(chunk - width, chunk):
            new = propagate(v, torch.empty_like(v)).add_(obs_steps[t, :, :-1])
            v = new if pad_rows is None else torch.where(pad_rows[:-1, t], v, new)
        starts[:, 1:] = v - v.amax(0)
    same_vector = lambda a, b: _same_log_vector(a.T, b.T)  # noqa: E731
    _, (deltas, gains), _ = _speculative(run_forward, starts, n_chunks, same_vector, dim=-1)
    gains = gains.reshape(n, n_chunks)
    best = gains.sum(-1)
    best = torch.where((gains == -math.inf).any(-1), torch.full_like(best, -math.inf), best)

    # the back-track does (rows, K) work per step: split long chunks into S sub-chunks
    # (one copy of the deltas) so that it runs fewer, wider steps
    split = _backtrack_split(n_rows, chunk)
    if split > 1:
        sub = chunk // split
        deltas = deltas.view(split, sub, k, n_rows).permute(1, 2, 3, 0).reshape(sub, k, -1)
        pad_rows = None if pad_rows is None else pad_rows.reshape(-1, sub)
    paths = _viterbi_backtrack(deltas, pad_rows, log_trans, n_chunks * split)
    return paths.reshape(n, -1)[:, :length], best


def _backtrack_split(n_rows: int, chunk: int) -> int:
    """The divisor S of ``chunk`` that brings the back-track's rows nearest to
    ``BACKTRACK_ROWS`` while keeping sub-chunks of at least 2 W steps; 1 (no split) unless
    the rows are 4 times fewer (the split copies the deltas, about as slow as the steps
    it saves otherwise)."""
    if 4 * n_rows > BACKTRACK_ROWS:
        return 1
    divisors = [d for d in range(1, chunk + 1) if chunk % d == 0]
    divisors = [d for d in divisors if d == 1 or chunk // d >= 2 * WARM_UP["back"]]
    return min(divisors, key=lambda d: abs(math.log(n_rows * d / BACKTRACK_ROWS)))


def _viterbi_backtrack(
    deltas: torch.Tensor, pad_rows: torch.Tensor | None, log_trans: torch.Tensor, n_chunks: int
) -> torch.Tensor:
    """The arg-max path from the Viterbi vectors ``deltas`` (L, K, rows) of chunk rows
    (row r = n * C + c, time-ordered; ``pad_rows`` (rows, L)): (rows, L) states.

    z_{t-1} = argmax_i [d_{t-1}(i) + log A_{i, z_t}] (or z_t if step t is padding), every
    chunk at once from its last step to its first; chunk c guesses its last state by
    back-tracking W steps of chunk c + 1, checked exactly against where chunk c + 1 ends.
    """
    chunk, _k, n_rows = deltas.shape
    chunk_of_row = torch.arange(n_rows, device=deltas.device) % n_chunks
    trans_for_target = log_trans.T.contiguous()  # row z = log A_{., z}

    def back(z: torch.Tensor, d_prev: torch.Tensor, pad_now: torch.Tensor | None) -> torch.Tensor:
        """argmax_i [d_prev(i) + log A_{i, z}] for d_prev (r, K), or z where ``pad_now``."""
        new = (trans_for_target.index_select(0, z) + d_prev).max(-1).indices
        return new if pad_now is None else torch.where(pad_now, z, new)

    def run_back(rows: torch.Tensor | None, ends: torch.Tensor):
        d = deltas if rows is None else deltas[:, :, rows]
        pads = None if pad_rows is None else (pad_rows if rows is None else pad_rows[rows])
        padded = [False] * chunk if pads is None else pads.any(0).tolist()
        z = ends
        path = [z]
        d_rows_first = d.transpose(1, 2).unbind(0)  # (r, K) views
        for s in range(chunk - 1, 0, -1):
            z = back(z, d_rows_first[s - 1], pads[:, s] if padded[s] else None)
            path.append(z)
        # stored (r, L) so that the rows of all chunks form the paths without a copy
        return z, [torch.stack(path[::-1], 1).T]

    last_pad = None if pad_rows is None else pad_rows[:, 0]  # step 0 of the later chunk

    def link(later_starts: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        pads = None if last_pad is None else last_pad[rows + 1]
        return back(later_starts, deltas[chunk - 1][:, rows].T, pads)

    ends = deltas[chunk - 1].max(0).indices  # exact for the last chunk of every sequence
    if n_chunks > 1:
        # guess row r's last state by back-tracking W steps of row r + 1 (from a guess)
        width = min(chunk, WARM_UP["back"])
        later = deltas[:, :, 1:]
        later_pads = None if pad_rows is None else pad_rows[1:]
        z = later[width - 1].max(0).indices
        for s in range(width - 1, 0, -1):
            z = back(z, later[s - 1].T, None if later_pads is None else later_pads[:, s])
        guessed = back(z, deltas[chunk - 1][:, :-1].T, None if last_pad is None else last_pad[1:])
        ends[:-1] = torch.where(chunk_of_row[:-1] == n_chunks - 1, ends[:-1], guessed)
    _, (path,), _ = _speculative(run_back, ends, n_chunks, torch.eq, link, backwards=True, dim=-1)
    return path.T


@_threaded
def viterbi(
    log_obs: torch.Tensor,
    log_init: torch.Tensor,
    log_trans: torch.Tensor,
    mask: torch.Tensor | None = None,
    offset: torch.Tensor | None = None,
    *,
    backend: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The most probable state path argmax_z p(z, x) (max-product on eq. 12) and its log.

    ``log_obs`` (N, T, K) log emission factors (0 at missing and padded steps), ``log_init``
    (K,), ``log_trans`` (K, K) (entries may be -inf). Returns paths (N, T) (-1 on padding)
    and max_z log p(z, x) (N,) (-inf when no path is possible). ``backend``: see
    ``BACKENDS`` (on CPU "auto" runs the compiled kernel when numba is installed).
    """
    pad = None if mask is None or bool(mask.all()) else ~mask
    if _compiled(log_obs, backend, auto=True):
        from pyrobn.infer import hmm_compiled

        path, best = hmm_compiled.viterbi(
            log_obs, log_init, log_trans, None if pad is None else mask, _outer_threads()
        )
    else:
        path, best = _viterbi_chunked(log_obs, log_init, log_trans, pad)
    if offset is not None:
        best = best + _masked_sum(offset, mask)
    if pad is not None:
        path = torch.where(mask, path, torch.full_like(path, -1))
    return path, best
