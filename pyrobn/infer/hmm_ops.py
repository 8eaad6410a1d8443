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

Viterbi back-tracking is chunked the same way: each chunk back-tracks from a state guessed
by back-tracking W steps of the next chunk, and guesses are checked (exactly: states are
integers) against the path the next chunk actually took.

Conventions: ``obs`` (N, T, K) holds per-step emission factors b_t(k) = p(x_t | z_t = k)
(probability space, optionally divided by a per-step constant whose log is in ``offset``),
or their logs for Viterbi; ``mask`` (N, T) is True on real steps. Missing observations
have b = 1 (log b = 0): they are summed out. Padded steps are no-ops.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch

#: relative tolerance for a guessed chunk boundary vector to count as the true one
BOUNDARY_RTOL = 1e-12
#: absolute tolerance for guessed Viterbi boundary scores (only near-ties this close can
#: change a path; hmmlearn's own unnormalised sums carry errors of this order at T = 1e5)
VITERBI_ATOL = 1e-9
#: warm-up steps that guess a chunk's boundary: measured on random models, the normalised
#: forward vector forgets its start to 1e-12 within 24-32 steps and the max-plus one
#: (rank convergence) within 16-24; a wrong guess only costs a re-run of its chunk
WARM_UP = {"sum": 32, "max": 24, "back": 24}
#: sum-product vectors are renormalised every this many steps (and at chunk ends)
RENORMALISE_EVERY = 4
#: a renormaliser below this means the mass came near underflow: redo every step
UNDERFLOW = 1e-200
#: elements of one (rows, K, K) max-plus intermediate: small enough to stay in cache
MAXPLUS_ELEMENTS = 2**16

#: intra-op threads while a kernel runs on CPU (None: leave torch's setting). The kernels'
#: per-step operations are sized to stay in cache (about 64K elements); threading them costs
#: more in synchronisation than it gains, and collapses when cores are oversubscribed.
KERNEL_THREADS: int | None = 1

F = TypeVar("F", bound=Callable[..., Any])


@contextlib.contextmanager
def kernel_threads(device: torch.device) -> Iterator[None]:
    """Run the block with ``KERNEL_THREADS`` intra-op threads when ``device`` is a CPU."""
    if KERNEL_THREADS is None or device.type != "cpu" or torch.get_num_threads() == KERNEL_THREADS:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(KERNEL_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _threaded(fn: F) -> F:
    """Run ``fn`` with ``KERNEL_THREADS`` intra-op threads (its first argument's device)."""

    @functools.wraps(fn)
    def wrapper(first: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        with kernel_threads(first.device):
            return fn(first, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


RowRun = Callable[[torch.Tensor | None, torch.Tensor], tuple[torch.Tensor, list[torch.Tensor]]]


# ----------------------------------------------------------------------------- chunk layout
def chunk_length(n_seq: int, length: int, n_states: int, kind: str) -> int:
    """The chunk length L for ``n_seq`` sequences of ``length`` steps.

    Rows (chunks run side by side) are sized so one step's work fills the machine without
    leaving the cache: sum-product steps are (rows, K) @ (K, K) products; max-plus steps
    materialise (rows, K, K), so they use fewer rows for larger K.
    """
    if kind == "sum":
        target_rows = 4096 if n_states <= 8 else (2048 if n_states <= 32 else 1024)
    elif kind == "max":
        target_rows = int(min(4096, max(16, MAXPLUS_ELEMENTS // n_states**2)))
    else:  # back-tracking: (rows, K) gathers
        target_rows = int(min(4096, max(256, 2**18 // n_states)))
    chunks = max(1, math.ceil(target_rows / max(n_seq, 1)))
    min_len = WARM_UP["sum"]
    chunks = max(1, min(chunks, length // min_len))
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


def _warm_slab(chunks: torch.Tensor, width: int) -> torch.Tensor:
    """The last ``width`` steps of the previous chunk of every chunk: (N, C, W, ...).

    Chunk 0 has no previous chunk; its slab is a copy of its own tail and is never used.
    """
    tails = chunks[:, :, chunks.shape[2] - width :]
    return torch.cat([tails[:, :1], tails[:, :-1]], dim=1)


def _speculative(
    run: RowRun,
    starts: torch.Tensor,
    n_chunks: int,
    same: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    link: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor], int]:
    """Run all rows from guessed ``starts``, then re-run rows whose guess was wrong.

    Rows are chunks, row r = n * C + c; row r's true start is ``link(end of row r - 1, r)``
    for c >= 1 (``link`` defaults to the end itself) and rows with c = 0 start exactly.
    ``run(rows, starts)`` runs the given rows (None = all) and returns their ends and
    per-row outputs. Returns the ends, the outputs and the number of rounds.
    """
    ends, outputs = run(None, starts)
    n_rows = starts.shape[0]
    device = starts.device
    candidates = torch.arange(n_rows, device=device).reshape(-1, n_chunks)[:, 1:].reshape(-1)
    rounds = 1
    while candidates.numel():
        previous_ends = ends[candidates - 1]
        proposed = previous_ends if link is None else link(previous_ends, candidates)
        wrong = ~same(starts[candidates], proposed)
        rows = candidates[wrong]
        if not rows.numel():
            break
        starts[rows] = proposed[wrong]
        new_ends, new_outputs = run(rows, starts[rows])
        ends[rows] = new_ends
        for stored, new in zip(outputs, new_outputs):
            stored[rows] = new
        rounds += 1
        successors = rows + 1
        candidates = successors[(successors % n_chunks) != 0]
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
        width = min(chunk, WARM_UP["sum"])
        warm = _warm_slab(chunks, width).reshape(n * n_chunks, width, k)
        v = starts
        for t, b_t in enumerate(warm.unbind(1)):
            v = (v @ trans) * b_t
            if (t + 1) % every == 0 or t + 1 == width:
                v = v / v.sum(-1, keepdim=True)
        starts = v
    _, outputs, rounds = _speculative(run, starts, n_chunks, _same_distribution)
    norms = outputs[0].reshape(n, -1)
    positive = norms[norms > 0]
    if every > 1 and positive.numel() and bool(positive.min() < UNDERFLOW):
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
) -> torch.Tensor:
    """log p(x) by the scaled forward algorithm (eq. 12 summed over z), one per sequence.

    ``obs`` (N, T, K) emission factors (padded and missing steps = 1), ``init`` (K,),
    ``trans`` (K, K) row-stochastic, ``mask`` (N, T) real steps, ``offset`` (N, T) the log
    of a per-step constant divided out of ``obs``. Returns (N,).
    """
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
def _maxplus_scan(
    log_obs: torch.Tensor, log_init: torch.Tensor, log_trans: torch.Tensor, pad: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """d_t = log_obs_t + max_i [d_{t-1}(i) + log A_i.], chunked.

    Padded steps (``pad`` True) copy d_{t-1}. Returns d_t (N, T, K) up to a constant per
    chunk (each chunk starts from a vector with max 0), the gains max_k d (N, C) at the
    chunks' ends (so max_z log p(z, x) = the gains of all chunks but the last, plus
    max_k d_{T-1}) and the number of rounds.
    """
    n, length, k = log_obs.shape
    chunk = chunk_length(n, length, k, "max")
    chunks = _to_chunks(log_obs, chunk, 0.0)
    n_chunks = chunks.shape[1]
    rows_obs = chunks.reshape(n * n_chunks, chunk, k)
    pad_rows = None
    if pad is not None:
        pad_rows = _to_chunks(pad, chunk, True).reshape(n * n_chunks, chunk)
    is_first = (torch.arange(n * n_chunks, device=log_obs.device) % n_chunks) == 0
    # states-first layout: a vector is (K, rows), so max_i runs over contiguous slabs
    log_trans_3d = log_trans.unsqueeze(-1)  # [i, j, 1]
    log_init_col = log_init.unsqueeze(-1)

    def propagate(v: torch.Tensor) -> torch.Tensor:
        # max_i [v(i) + log A_ij] for v (K, rows), in blocks of targets j that stay in cache
        block = max(1, MAXPLUS_ELEMENTS // (v.shape[1] * k))
        v = v.unsqueeze(1)
        if block >= k:
            return (v + log_trans_3d).amax(0)
        parts = [(v + log_trans_3d[:, j : j + block]).amax(0) for j in range(0, k, block)]
        return torch.cat(parts, 0)

    def time_major(x: torch.Tensor) -> torch.Tensor:
        return x.permute(1, 2, 0).contiguous()  # (rows, L, K) -> (L, K, rows)

    def run(rows: torch.Tensor | None, starts: torch.Tensor):
        # unnormalised within a chunk (logs only drift; float64 keeps 1e-12 absolute at
        # |delta| ~ 1e4): the chunk's start has max 0, so max(end) is its gain in log p
        steps = time_major(rows_obs if rows is None else rows_obs[rows])
        first_rows = is_first if rows is None else is_first[rows]
        pads = None
        if pad_rows is not None:
            pads = (pad_rows if rows is None else pad_rows[rows]).T.unbind(0)
        starts = starts.T
        v = torch.where(first_rows, log_init_col, propagate(starts))
        vectors = []
        for t, lb_t in enumerate(steps.unbind(0)):
            if pads is None:
                v = v + lb_t if t == 0 else propagate(v) + lb_t
            else:
                previous = starts if t == 0 else v
                new = v + lb_t if t == 0 else propagate(v) + lb_t
                v = torch.where(pads[t], previous, new)
            vectors.append(v)
        gain = v.amax(0)
        return (v - gain).T, [gain[:, None], torch.stack(vectors, 0).permute(2, 0, 1)]

    starts = log_obs.new_zeros((n * n_chunks, k))
    if n_chunks > 1:
        width = min(chunk, WARM_UP["max"])
        warm = time_major(_warm_slab(chunks, width).reshape(n * n_chunks, width, k))
        warm_pad = None
        if pad_rows is not None:
            warm_pad = _warm_slab(pad_rows.reshape(n, n_chunks, chunk), width)
            warm_pad = warm_pad.reshape(n * n_chunks, width).T.unbind(0)
        v = starts.T
        for t, lb_t in enumerate(warm.unbind(0)):
            new = propagate(v) + lb_t
            v = new if warm_pad is None else torch.where(warm_pad[t], v, new)
        starts = (v - v.amax(0)).T.contiguous()
    _, outputs, rounds = _speculative(run, starts, n_chunks, _same_log_vector)
    gains = outputs[0].reshape(n, n_chunks)
    vectors = _from_chunks(outputs[1].reshape(n, n_chunks, chunk, k), length)
    return vectors, gains, rounds


def _backtrack(
    deltas: torch.Tensor, log_trans: torch.Tensor, pad: torch.Tensor | None
) -> tuple[torch.Tensor, int]:
    """The arg-max path from the normalised Viterbi vectors, chunked and checked.

    z_T = argmax d_T; z_{t-1} = argmax_i [d_{t-1}(i) + log A_{i, z_t}] (or z_t if step t is
    padding). Chunks run from the last to the first; each guesses its end state by
    back-tracking W steps of the chunk after it, and guesses are compared with the states
    the later chunk really took.
    """
    n, length, k = deltas.shape
    chunk = chunk_length(n, length, k, "back")
    # reverse time so "the previous chunk" of the scan driver is the later chunk in time
    rev = _to_chunks(deltas.flip(1), chunk, 0.0)  # (N, C, L, K), time reversed
    n_chunks = rev.shape[1]
    rows = rev.reshape(n * n_chunks, chunk, k)
    # reversed step s is time T' - 1 - s; its padding flag says the transition *into* it
    # (forward in time) is a no-op; back-tracking from s to s + 1 uses the flag of s.
    pad_rows = None
    if pad is not None:
        pad_rows = _to_chunks(pad.flip(1), chunk, True).reshape(n * n_chunks, chunk)
    log_trans_t = log_trans.T.contiguous()

    def back(z: torch.Tensor, d_prev: torch.Tensor, pad_now: torch.Tensor | None) -> torch.Tensor:
        new = (d_prev + log_trans_t[z]).argmax(-1)
        return new if pad_now is None else torch.where(pad_now, z, new)

    def run(selected: torch.Tensor | None, starts: torch.Tensor):
        data = rows if selected is None else rows[selected]
        pads = None
        if pad_rows is not None:
            pads = pad_rows if selected is None else pad_rows[selected]
        z = starts
        path = [z]
        steps = data.unbind(1)
        for s in range(1, chunk):
            z = back(z, steps[s], None if pads is None else pads[:, s - 1])
            path.append(z)
        return z, [torch.stack(path, 1)]

    # the link from a later chunk's first state (in time) to this chunk's last state
    last_pad = None if pad_rows is None else pad_rows[:, chunk - 1]

    def link(later_ends: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        pads = None if last_pad is None else last_pad[targets - 1]
        return back(later_ends, rows[targets, 0], pads)

    starts = rows[:, 0].argmax(-1)
    if n_chunks > 1:
        width = min(chunk, WARM_UP["back"])
        later = torch.cat([rows[:1], rows[:-1]], 0)  # row r - 1 = the later chunk in time
        later_pads = None
        if pad_rows is not None:
            later_pads = torch.cat([pad_rows[:1], pad_rows[:-1]], 0)
        z = later[:, chunk - width].argmax(-1)
        for s in range(chunk - width + 1, chunk):
            z = back(z, later[:, s], None if later_pads is None else later_pads[:, s - 1])
        guessed = back(z, rows[:, 0], None if later_pads is None else later_pads[:, chunk - 1])
        is_first = (torch.arange(n * n_chunks, device=deltas.device) % n_chunks) == 0
        starts = torch.where(is_first, starts, guessed)
    _, outputs, rounds = _speculative(run, starts, n_chunks, torch.eq, link)
    path = _from_chunks(outputs[0].reshape(n, n_chunks, chunk), length).flip(1)
    return path, rounds


@_threaded
def viterbi(
    log_obs: torch.Tensor,
    log_init: torch.Tensor,
    log_trans: torch.Tensor,
    mask: torch.Tensor | None = None,
    offset: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The most probable state path argmax_z p(z, x) (max-product on eq. 12) and its log.

    ``log_obs`` (N, T, K) log emission factors (0 at missing and padded steps), ``log_init``
    (K,), ``log_trans`` (K, K) (entries may be -inf). Returns paths (N, T) (-1 on padding)
    and max_z log p(z, x) (N,) (-inf when no path is possible).
    """
    pad = None if mask is None else ~mask
    deltas, gains, _ = _maxplus_scan(log_obs, log_init, log_trans, pad)
    # the last chunk may run past T on filler steps: read its gain at step T - 1
    best = gains[:, :-1].sum(-1) + deltas[:, -1].amax(-1)
    if offset is not None:
        best = best + _masked_sum(offset, mask)
    path, _ = _backtrack(deltas, log_trans, pad)
    if mask is not None:
        path = torch.where(mask, path, torch.full_like(path, -1))
    return path, best
