"""Compiled CPU kernels for HMM recursions (notes 2.1.3.4, eq. 12): Viterbi and forward.

delta_1(j) = log p(z_1 = j) + log p(x_1 | j),
delta_t(j) = log p(x_t | j) + max_i [delta_{t-1}(i) + log A_ij],  psi_t(j) = the arg-max i,
z_T = argmax_j delta_T(j),  z_{t-1} = psi_t(z_t).

Max-plus has no BLAS: in torch each step materialises (rows, K, K) and costs a few
microseconds of dispatch, so the chunked torch kernel (:func:`pyrobn.infer.hmm_ops.viterbi`)
stays near hmmlearn's C loop on CPU. This module runs the same recursion as one loop
compiled by numba: no per-step dispatch and no (K, K) intermediate, back-pointers are
stored, and the sequences of a batch run in parallel threads. (LLVM does not vectorise the
max-plus inner loop; fastmath, branch-free, batch-inner and register-blocked variants were
measured and were not faster for K >= 16.)
The arithmetic is the textbook order (hmmlearn's too), so the scores agree to the last bit
with a sequential recursion. The torch kernel remains the path on CUDA.

The scaled forward algorithm, alpha_t ∝ (alpha_{t-1} A) * b_t normalised every step,
log p(x) = sum_t log s_t, is here too, for models with few states: there the chunked torch
scan's (rows, K) @ (K, K) products are too small to pay for their dispatch (with more
states its BLAS products win).

Importing this module imports numba (about 0.3 s): :mod:`pyrobn.infer.hmm_ops` imports it
on first use. The kernel is compiled once per dtype and cached on disk.

Threads. No kernel changes a thread count the caller can see. The sequences of a batch are
dealt round-robin to ``blocks`` parallel iterations (``blocks`` = the thread budget the
caller gives, at most the number of sequences and numba's thread count as the caller left
it), so a launch never calls ``numba.set_num_threads``; with one block (one sequence, or a
budget of one thread) a serial copy of the loop runs with no parallel region at all.
Starting numba's OpenMP pool sets OpenMP's thread count, which torch reads as its own: the
pool is started once, when this module is imported, inside
:func:`pyrobn.device.preserve_threads`, and every parallel launch runs inside it too.
"""

from __future__ import annotations

import threading

import numba
import numpy as np
import torch

from pyrobn.device import preserve_threads

#: one parallel kernel at a time: numba's fallback thread pool ("workqueue") aborts the
#: process when two threads launch parallel kernels at once
_LAUNCH = threading.Lock()

__all__ = ["forward_log_prob", "viterbi"]

# start numba's thread pool now, giving torch's thread count back (see the module docstring)
with preserve_threads():
    numba.get_num_threads()


@numba.njit(cache=True, nogil=True)
def _viterbi_one(s, log_obs, log_init, log_trans, real, paths, best):  # pragma: no cover
    """The Viterbi recursion and back-track of sequence ``s``."""
    _n, length, k = log_obs.shape
    psi = np.empty((length, k), dtype=np.int32)
    delta = np.empty(k, dtype=log_obs.dtype)
    new = np.empty(k, dtype=log_obs.dtype)
    arg = np.empty(k, dtype=np.int32)
    for j in range(k):
        delta[j] = log_init[j] + log_obs[s, 0, j]
    for t in range(1, length):
        if not real[s, t]:  # padding: delta and the state carry over
            for j in range(k):
                psi[t, j] = j
            continue
        for j in range(k):
            new[j] = -np.inf
            arg[j] = 0
        for i in range(k):
            d_i = delta[i]
            for j in range(k):
                v = d_i + log_trans[i, j]
                if v > new[j]:  # strict: the first maximiser wins (as argmax)
                    new[j] = v
                    arg[j] = i
        for j in range(k):
            delta[j] = new[j] + log_obs[s, t, j]
            psi[t, j] = arg[j]
    z = 0
    top = delta[0]
    for j in range(1, k):
        if delta[j] > top:
            top = delta[j]
            z = j
    best[s] = top
    paths[s, length - 1] = z
    for t in range(length - 1, 0, -1):
        z = psi[t, z]
        paths[s, t - 1] = z


@numba.njit(parallel=True, cache=True, nogil=True)
def _viterbi_kernel(blocks, log_obs, log_init, log_trans, real, paths, best):  # pragma: no cover
    """Fills ``paths`` (N, T) and ``best`` (N,); sequence s runs in parallel block s % blocks."""
    n = log_obs.shape[0]
    for b in numba.prange(blocks):
        for s in range(b, n, blocks):
            _viterbi_one(s, log_obs, log_init, log_trans, real, paths, best)


@numba.njit(cache=True, nogil=True)
def _viterbi_serial(log_obs, log_init, log_trans, real, paths, best):  # pragma: no cover
    """:func:`_viterbi_kernel` on the calling thread alone (no parallel region)."""
    for s in range(log_obs.shape[0]):
        _viterbi_one(s, log_obs, log_init, log_trans, real, paths, best)


@numba.njit(cache=True, nogil=True)
def _forward_one(s, obs, init, trans, real, log_prob):  # pragma: no cover
    """log_prob[s] = sum_t log s_t for sequence ``s``; -inf once a step has s_t = 0."""
    _n, length, k = obs.shape
    v = np.empty(k, dtype=obs.dtype)
    new = np.empty(k, dtype=obs.dtype)
    total = 0.0
    norm = 0.0
    for j in range(k):
        v[j] = init[j] * obs[s, 0, j]
        norm += v[j]
    for t in range(length):
        if t > 0:
            if not real[s, t]:  # padding: nothing happens
                continue
            for j in range(k):
                new[j] = 0.0
            for i in range(k):
                v_i = v[i]
                for j in range(k):
                    new[j] += v_i * trans[i, j]
            norm = 0.0
            for j in range(k):
                v[j] = new[j] * obs[s, t, j]
                norm += v[j]
        if not norm > 0.0:  # an impossible observation (or a NaN)
            total = -np.inf
            break
        total += np.log(norm)
        for j in range(k):
            v[j] /= norm
    log_prob[s] = total


@numba.njit(parallel=True, cache=True, nogil=True)
def _forward_kernel(blocks, obs, init, trans, real, log_prob):  # pragma: no cover
    """Fills ``log_prob`` (N,); sequence s runs in parallel block s % blocks."""
    n = obs.shape[0]
    for b in numba.prange(blocks):
        for s in range(b, n, blocks):
            _forward_one(s, obs, init, trans, real, log_prob)


@numba.njit(cache=True, nogil=True)
def _forward_serial(obs, init, trans, real, log_prob):  # pragma: no cover
    """:func:`_forward_kernel` on the calling thread alone (no parallel region)."""
    for s in range(obs.shape[0]):
        _forward_one(s, obs, init, trans, real, log_prob)


def _launch(kernel, serial, n: int, threads: int | None, *args) -> None:
    """Run the ``n`` sequences dealt to ``blocks`` parallel iterations of ``kernel``, at most
    ``threads`` (None: numba's thread count) and at most ``n``; with one block, ``serial``
    runs them on the calling thread, without a parallel region (whose team would be
    numba's whole thread count: on a loaded machine, waking a team costs milliseconds).
    No thread count is set."""
    wanted = numba.config.NUMBA_NUM_THREADS if threads is None else threads
    blocks = max(1, min(wanted, n, numba.get_num_threads()))
    if blocks == 1:
        serial(*args)  # nogil, no thread pool: safe from several Python threads at once
        return
    with _LAUNCH, preserve_threads():
        kernel(blocks, *args)


def _arrays(
    per_step: torch.Tensor, first: torch.Tensor, table: torch.Tensor, mask: torch.Tensor | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The kernels' inputs as contiguous numpy views (no copy when already contiguous):
    (N, T, K) per-step factors, (K,) start and (K, K) transition tables in the per-step
    dtype, and the (N, T) real-step flags (all True without a mask)."""
    n, length, _k = per_step.shape
    dtype = per_step.dtype
    real = (
        np.ones((n, length), dtype=np.bool_)
        if mask is None
        else mask.detach().to(torch.bool).contiguous().numpy()
    )
    return (
        per_step.detach().contiguous().numpy(),
        first.detach().to(dtype).contiguous().numpy(),
        table.detach().to(dtype).contiguous().numpy(),
        real,
    )


def forward_log_prob(
    obs: torch.Tensor,
    init: torch.Tensor,
    trans: torch.Tensor,
    mask: torch.Tensor | None = None,
    threads: int | None = None,
) -> torch.Tensor:
    """sum_t log s_t of the scaled forward algorithm (N,) for CPU tensors: log p(x) when
    ``obs`` (N, T, K) holds the emission factors p(x_t | k) (the caller adds back any
    per-step constant divided out of them). ``mask`` (N, T) real steps (a prefix)."""
    arrays = _arrays(obs, init, trans, mask)
    out = np.empty(len(arrays[0]), dtype=arrays[0].dtype)
    _launch(_forward_kernel, _forward_serial, len(out), threads, *arrays, out)
    return torch.from_numpy(out)


def viterbi(
    log_obs: torch.Tensor,
    log_init: torch.Tensor,
    log_trans: torch.Tensor,
    mask: torch.Tensor | None = None,
    threads: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Viterbi paths (N, T) and scores max_z log p(z, x) (N,) of CPU tensors.

    ``log_obs`` (N, T, K) log emission factors, ``log_init`` (K,), ``log_trans`` (K, K),
    ``mask`` (N, T) real steps (padded steps carry delta and the state over: the caller
    marks them -1). ``threads`` bounds the threads over sequences (None: numba's default).
    """
    arrays = _arrays(log_obs, log_init, log_trans, mask)
    n, length, _k = arrays[0].shape
    paths = np.empty((n, length), dtype=np.int64)
    best = np.empty(n, dtype=arrays[0].dtype)
    _launch(_viterbi_kernel, _viterbi_serial, n, threads, *arrays, paths, best)
    return torch.from_numpy(paths), torch.from_numpy(best)
