"""Stochastic greedy maximisation of E(S) (Mirzasoleiman et al. 2015, "Lazier than lazy greedy").

At each of the ``k`` steps, ``s = ceil((n / k) * ln(1 / epsilon))`` rows are drawn uniformly
without replacement from the rows not yet picked, and the one with the largest gain among them
is picked (ties go to the lowest row index). Gains are those of
:func:`hf_mig.core.greedy.greedy_select` for the same ``gain`` kind, over the same sparse model,
evaluated at the current selection. With phi concave (E monotone submodular) the expected E(S)
is within ``1 - 1/e - epsilon`` of the best ``k`` rows, after about ``n * ln(1 / epsilon)``
gain evaluations in all, whatever ``k``. When ``s`` covers every remaining row the step is the
full scan's, so with ``s >= n`` the picks equal ``greedy_select``'s (full scan order).

The draws come from ``numpy.random.default_rng(seed)``: a fixed seed gives the same picks, with
or without numba.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from hf_mig.core._jit import njit as _njit
from hf_mig.core._jit import resolve_compiled
from hf_mig.core.encoding import check_k
from hf_mig.core.greedy import (
    _EVALS,
    _STEP,
    GAIN_KINDS,
    GreedyResult,
    _gain,
    _initial_state,
    _record,
    chunk_steps,
)
from hf_mig.core.inputs import check_inputs
from hf_mig.core.objective import Objective

__all__ = ["check_epsilon", "sample_size", "stochastic_select"]


def check_epsilon(epsilon: object) -> float:
    """``epsilon`` as a ``float`` once it is a real number with ``0 < epsilon < 1``."""
    number = isinstance(epsilon, (int, float, np.integer, np.floating)) and not isinstance(
        epsilon, bool
    )
    if not (number and 0.0 < float(epsilon) < 1.0):
        raise ValueError(
            f"epsilon must be a number with 0 < epsilon < 1 (e.g. 0.01), got {epsilon!r}"
        )
    return float(epsilon)


def sample_size(n: int, k: int, epsilon: float) -> int:
    """Rows drawn per step: ``ceil((n / k) * ln(1 / epsilon))``, at least 1 and at most ``n``."""
    if k <= 0 or n <= 0:
        return 0
    s = math.ceil((n / k) * math.log(1.0 / check_epsilon(epsilon)))
    return int(min(max(s, 1), n))


@_njit
def _stochastic_steps(
    steps, s, uniforms, pool, prop, state, work, exact, phi, rest, istate, fstate, out
):
    """Run up to ``steps`` picks; ``rest[:n - step]`` holds the unpicked rows.

    Each step draws ``min(s, remaining)`` of them by a partial Fisher-Yates shuffle of ``rest``
    (one uniform per draw, taken in order from ``uniforms``), evaluates their gains and picks
    the best (lowest row index on ties); the pick leaves ``rest`` by a swap with its last row.
    """
    u = 0
    for _ in range(steps):
        m = rest.size - istate[_STEP]
        if m <= 0:
            break
        draws = min(s, m)
        best_pos = -1
        best = -1
        best_gain = 0.0
        for j in range(draws):
            r = j + np.int64(uniforms[u] * (m - j))
            u += 1
            if r > m - 1:
                r = m - 1
            tmp = rest[j]
            rest[j] = rest[r]
            rest[r] = tmp
            i = rest[j]
            gi = _gain(i, pool, prop, state, work, exact, phi)
            if best < 0 or gi > best_gain or (gi == best_gain and i < best):
                best_pos = j
                best = i
                best_gain = gi
        istate[_EVALS] += draws
        rest[best_pos] = rest[m - 1]
        rest[m - 1] = best
        _record(best, best_gain, pool, prop, state, work, phi, istate, fstate, out)
    return istate[_STEP]


def stochastic_select(
    indptr: np.ndarray,
    label_ids: np.ndarray,
    weights: np.ndarray,
    propagation: sp.spmatrix,
    k: int,
    objective: Objective | None = None,
    *,
    epsilon: float = 0.01,
    seed: int = 0,
    gain: str = "gradient",
    compiled: bool | None = None,
    chunk_size: int = 10_000,
    progress: bool | None = None,
) -> GreedyResult:
    """Pick ``k`` samples by stochastic greedy; see the module docstring.

    The pool, P, ``objective``, ``gain`` and ``compiled`` are as in
    :func:`hf_mig.core.greedy.greedy_select`; ``epsilon`` (``0 < epsilon < 1``) sets the sample
    size per step, ``seed`` the draws. ``stats`` holds ``engine="stochastic"``, ``epsilon``,
    ``seed``, ``sample_size``, ``evaluations`` and ``objective`` (the final E(S)).
    """
    objective = objective or Objective()
    if gain not in GAIN_KINDS:
        raise ValueError(f"gain must be one of {GAIN_KINDS}, got {gain!r}")
    epsilon = check_epsilon(epsilon)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    pool, prop, _ = check_inputs(indptr, label_ids, weights, propagation, objective)
    n = pool[2].size
    k = check_k(k, n)
    compiled = resolve_compiled(compiled)
    s = sample_size(n, k, epsilon)
    phi = objective.kernel_args
    num_labels = prop[0].size - 1
    state, work, istate, fstate, out = _initial_state(prop, phi, k)
    initial = float(fstate[0])
    rest = np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(int(seed))
    steps_fn = _stochastic_steps if compiled else _stochastic_steps.py_func
    show = progress if progress is not None else n > 2_000_000
    done = 0
    with tqdm(total=k, desc="MIG greedy (stochastic)", unit="pick", disable=not show) as bar:
        while done < k:
            step = min(chunk_steps(chunk_size, compiled), k - done)
            draws = int(np.minimum(s, n - np.arange(done, done + step)).sum())
            uniforms = rng.random(draws)
            new_done = int(
                steps_fn(step, s, uniforms, pool, prop, state, work, gain == "exact", phi, rest,
                         istate, fstate, out)
            )  # fmt: skip
            bar.update(new_done - done)
            done = new_done
    stats = {
        "engine": "stochastic",
        "compiled": bool(compiled),
        "gain": gain,
        "epsilon": epsilon,
        "seed": int(seed),
        "sample_size": s,
        "evaluations": int(istate[_EVALS]),
        "objective": float(fstate[0]),
        "pool_size": n,
        "num_labels": num_labels,
    }
    return GreedyResult(out[0], out[1], out[2], initial, stats)
