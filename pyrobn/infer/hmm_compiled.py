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


@numba.njit(parallel=True, cache=True, nogil=True)
def _viterbi_kernel(log_obs, log_init, log_trans, real, paths, best):  # pragma: no cover
    """Fills ``paths`` (N, T) and ``best`` (N,); one sequence per parallel iteration."""
    n, length, k = log_obs.shape
    for s in numba.prange(n):
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
def _forward_kernel(obs, init, trans, real, log_prob):  # pragma: no cover
    """Fills ``log_prob`` (N,) = sum_t log s_t; -inf once a step has s_t = 0."""
    n, length, k = obs.shape
    for s in numba.prange(n):
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


def _launch(kernel, n: int, threads: int | None, *args) -> None:
    """Run ``kernel(*args)`` on at most ``threads`` threads (and at most ``n``)."""
    # numba's OpenMP layer sets OpenMP's thread count when its pool starts, which torch
    # reads as its own: give torch's count back whatever numba does to it
    with _LAUNCH, preserve_threads():
        previous = numba.get_num_threads()
        wanted = numba.config.NUMBA_NUM_THREADS if threads is None else threads
        numba.set_num_threads(max(1, min(wanted, n, numba.config.NUMBA_NUM_THREADS)))
        try:
            kernel(*args)
        finally:
            numba.set_num_threads(previous)


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
    _launch(_forward_kernel, len(out), threads, *arrays, out)
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
    _launch(_viterbi_kernel, n, threads, *arrays, paths, best)
    return torch.from_numpy(paths), torch.from_numpy(best)
