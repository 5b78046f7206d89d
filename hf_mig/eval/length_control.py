"""AlpacaEval 2's length-controlled (LC) win rate and the files it reads.

The LC win rate is the benchmark's GLM (Dubois et al. 2024): a logistic model of the preference on
``tanh(std_delta_len)``, the per-instruction ``instruction_difficulty`` and a
``not_gamed_baseline`` indicator, with no intercept, fitted with L1 regularisation on the model's
annotations plus the "gamed" baselines' annotations (weight 0.1 each), then evaluated with the
length difference set to zero. Which variant was computed is always in the result
(``lc_method``):

- ``glm-weights``: the published per-model GLM coefficients (the ``baseline_gpt4_1106_preview.csv``
  shipped with alpaca_eval) and the official ``instruction_difficulty.csv``: exactly the
  leaderboard's LC win rate.
- ``glm-refit``: the GLM refitted here (numpy/scipy) from the annotations, the official
  ``instruction_difficulty.csv`` and the gamed-baseline annotations (``df_gamed.csv``).
- ``glm-weights+estimated-difficulty``: the published coefficients with the *distribution* of
  instruction difficulty estimated from other leaderboard models' published LC win rates (the
  official difficulty file is not shipped with alpaca_eval; it is downloaded from the Hub). The
  LC win rate only depends on that distribution, not on which instruction has which difficulty.
- ``reduced-glm``: no difficulty, no gamed baselines: ``tanh(std_delta_len)`` + intercept fitted on
  the model's annotations alone. A reduced variant, not the leaderboard metric.

:func:`fetch_hub_lc_inputs` gets ``instruction_difficulty.csv`` and ``df_gamed.csv`` from the Hub
dataset ``tatsu-lab/alpaca_eval`` through ``huggingface_hub``'s cache (downloaded once, read
offline afterwards), as alpaca_eval does.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "GAMED_SAMPLE_WEIGHT",
    "HUB_DIFFICULTY",
    "HUB_GAMED",
    "HUB_LC_REPO",
    "LC_CS",
    "LC_FORMULA",
    "LC_N_SPLITS",
    "N_INSTRUCTIONS",
    "WEIGHT_COLUMNS",
    "GLMWeights",
    "HubLCInputs",
    "LCResult",
    "estimate_difficulty_distribution",
    "fetch_hub_lc_inputs",
    "fit_length_controlled",
    "lc_from_weights",
    "load_gamed",
    "load_glm_weights",
    "load_instruction_difficulty",
    "load_leaderboard",
]

#: The official LC formula (patsy syntax, as in alpaca_eval's ``GLM_INFO["length_controlled_v1"]``).
LC_FORMULA = (
    "np.tanh(std_delta_len) + instruction_difficulty + not_gamed_baseline.astype(float) - 1"
)
#: Column names of the published weights CSV, in formula order.
WEIGHT_COLUMNS = (
    "np.tanh(std_delta_len)",
    "instruction_difficulty",
    "not_gamed_baseline.astype(float)",
)
#: Weight of the gamed baselines' rows relative to the model's rows (lambda = 0.2, two baselines).
GAMED_SAMPLE_WEIGHT = 0.2 / 2
#: Inverse regularisation strengths searched by the GLM's cross-validation (sklearn's Cs=10 grid).
LC_CS = np.logspace(-4, 4, 10)
LC_N_SPLITS = 5
#: Number of AlpacaEval instructions (rows of ``instruction_difficulty.csv``).
N_INSTRUCTIONS = 805
#: The Hub dataset holding the LC inputs, and their file names there.
HUB_LC_REPO = "tatsu-lab/alpaca_eval"
HUB_DIFFICULTY = "instruction_difficulty.csv"
HUB_GAMED = "df_gamed.csv"


def _as_float(p: Any) -> float:
    if p is None:
        return math.nan
    try:
        return float(p)
    except (TypeError, ValueError):
        return math.nan


def _read_csv_rows(path: str | Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        raise ValueError(f"{path}: empty CSV")
    return rows[0], rows[1:]


@dataclass(frozen=True)
class GLMWeights:
    """Published LC GLM coefficients of one model (``baseline_<name>.csv`` row)."""

    length: float
    difficulty: float
    not_gamed: float


def load_glm_weights(path: str | Path) -> dict[str, GLMWeights]:
    """Read alpaca_eval's GLM weights CSV (index = model, columns = :data:`WEIGHT_COLUMNS`).

    A model listed twice keeps its last row (as alpaca_eval does when it saves weights).
    """
    header, rows = _read_csv_rows(path)
    try:
        cols = [header.index(c) for c in WEIGHT_COLUMNS]
    except ValueError as err:
        raise ValueError(f"{path}: expected columns {WEIGHT_COLUMNS}, got {header}") from err
    out: dict[str, GLMWeights] = {}
    for row in rows:
        if row:
            out[row[0]] = GLMWeights(*(float(row[c]) for c in cols))
    return out


def load_leaderboard(path: str | Path) -> dict[str, dict[str, float | str]]:
    """Read an AlpacaEval leaderboard CSV into ``{model: {column: value}}`` (numbers as floats,
    empty cells as NaN, text columns such as ``mode`` kept as strings)."""
    header, rows = _read_csv_rows(path)
    out: dict[str, dict[str, float | str]] = {}
    for row in rows:
        if not row:
            continue
        rec: dict[str, float | str] = {}
        for name, value in zip(header[1:], row[1:]):
            try:
                rec[name] = float(value) if value != "" else math.nan
            except ValueError:
                rec[name] = value
        out[row[0]] = rec
    return out


def load_instruction_difficulty(path: str | Path) -> np.ndarray:
    """Read the official ``instruction_difficulty.csv`` (index, value), in instruction order."""
    _, rows = _read_csv_rows(path)
    pairs = sorted((int(float(r[0])), float(r[-1])) for r in rows if r)
    idx = [p[0] for p in pairs]
    if idx != list(range(len(idx))):
        raise ValueError(f"{path}: index must be 0..n-1, got {idx[:5]}...")
    return np.array([p[1] for p in pairs], dtype=float)


# --------------------------------------------------------------------------------------------
# length-controlled win rate


@dataclass
class LCResult:
    """A length-controlled win rate and how it was computed."""

    length_controlled_winrate: float
    lc_standard_error: float
    lc_method: str
    note: str
    weights: dict[str, float] = field(default_factory=dict)


def _logistic(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -x))


def lc_from_weights(
    model: GLMWeights,
    difficulty: np.ndarray,
    baseline: GLMWeights | None = None,
    *,
    probabilities: np.ndarray | None = None,
) -> tuple[float, float]:
    """LC win rate (and its standard error) from published GLM coefficients.

    ``p_i = logistic(dw_not_gamed + dw_difficulty * d_i)`` with ``dw = model - baseline``
    (the baseline's row is all zeros for the leaderboard's own baseline); the LC win rate is
    ``100 * mean_i p_i`` (alpaca_eval's ``predict_winrate``). ``difficulty`` is one value per
    instruction, or the support of a distribution whose weights are ``probabilities``.
    """
    base = baseline or GLMWeights(0.0, 0.0, 0.0)
    d_ng = model.not_gamed - base.not_gamed
    d_id = model.difficulty - base.difficulty
    p = _logistic(d_ng + d_id * np.asarray(difficulty, dtype=float))
    if probabilities is None:
        sem = float(np.std(p, ddof=1) / math.sqrt(len(p))) if len(p) > 1 else math.nan
        return float(np.mean(p) * 100), sem * 100
    w = np.asarray(probabilities, dtype=float)
    return float(np.dot(w, p) * 100), math.nan


def estimate_difficulty_distribution(
    weights: dict[str, GLMWeights],
    leaderboard: dict[str, dict[str, float | str]],
    *,
    exclude: Sequence[str] = (),
    grid: np.ndarray | None = None,
    outlier_tol: float = 5e-4,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Estimate the distribution of instruction difficulty from published LC win rates.

    For every model in both tables (minus ``exclude``), the leaderboard's LC win rate is
    ``mean_i logistic(a_m + b_m d_i)`` with the model's published coefficients ``a_m, b_m``. A
    discrete distribution over ``grid`` (default 401 points in [-5, 5]) is fitted to those
    equations by non-negative least squares with a sum-to-one constraint; models whose published
    value the fit cannot match within ``outlier_tol`` (a fraction, 5e-4 = 0.05 points) are dropped
    twice and the fit redone (a few leaderboard rows were computed with other weights).
    Returns ``(grid, probabilities, models_used)``. This is an *estimate*: the official
    per-instruction difficulties are a separate download.
    """
    from scipy.optimize import nnls

    grid = np.linspace(-5.0, 5.0, 401) if grid is None else np.asarray(grid, dtype=float)
    models = []
    for name, w in weights.items():
        if name in exclude or name not in leaderboard:
            continue
        lc = leaderboard[name].get("length_controlled_winrate", math.nan)
        if isinstance(lc, float) and not math.isnan(lc):
            models.append((name, w, lc / 100.0))
    if len(models) < 10:
        raise ValueError(f"need >= 10 models with weights and a published LC, got {len(models)}")
    a = np.array([m[1].not_gamed for m in models])
    b = np.array([m[1].difficulty for m in models])
    y = np.array([m[2] for m in models])
    keep = np.arange(len(models))
    probs = np.zeros(len(grid))
    for it in range(3):
        design = _logistic(a[keep, None] + b[keep, None] * grid[None, :])
        big = 1e3
        aug = np.vstack([design, big * np.ones(len(grid))])
        target = np.concatenate([y[keep], [big]])
        probs, _ = nnls(aug, target)
        if it < 2:
            resid = np.abs(design @ probs - y[keep])
            keep = keep[resid < outlier_tol]
    probs = probs / probs.sum()
    return grid, probs, [models[i][0] for i in keep]


def _soft_logloss_terms(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    # -[y log s(z) + (1-y) log(1-s(z))], computed stably
    return y * np.logaddexp(0.0, -z) + (1.0 - y) * np.logaddexp(0.0, z)


def _fit_l1_logistic(x: np.ndarray, y: np.ndarray, sw: np.ndarray, c: float | None) -> np.ndarray:
    """Minimise ``||w||_1 + c * sum_i sw_i CE(y_i, logistic(x_i w))`` (liblinear's L1 objective
    with soft labels y in [0, 1]); ``c=None`` fits without penalty. Returns ``w``.

    Proximal Newton: each step minimises the quadratic model of the smooth part plus the L1 term
    by coordinate descent, then backtracks on the true objective (few features, so every step
    costs O(n)). Converges to the unique optimum when the design has full column rank.
    """
    n, d = x.shape
    lam = 0.0 if c is None else 1.0 / float(c)  # objective divided by c

    def objective(w: np.ndarray) -> float:
        return float(np.sum(sw * _soft_logloss_terms(x @ w, y)) + lam * np.sum(np.abs(w)))

    w = np.zeros(d)
    f = objective(w)
    for _ in range(200):
        p = _logistic(x @ w)
        g = x.T @ (sw * (p - y))
        h = (x * (sw * p * (1 - p))[:, None]).T @ x + 1e-10 * np.eye(d)
        u = w.copy()
        for _sweep in range(200):
            u_old = u.copy()
            for j in range(d):
                r = g[j] + h[j] @ (u - w) - h[j, j] * (u[j] - w[j])
                b = w[j] - r / h[j, j]
                u[j] = np.sign(b) * max(abs(b) - lam / h[j, j], 0.0)
            if np.max(np.abs(u - u_old)) < 1e-13:
                break
        step = u - w
        if np.max(np.abs(step)) < 1e-11:
            break
        decrease = float(g @ step + lam * (np.sum(np.abs(u)) - np.sum(np.abs(w))))
        t = 1.0
        while True:
            cand = w + t * step
            f_new = objective(cand)
            if f_new <= f + 1e-4 * t * decrease or t < 1e-10:
                break
            t *= 0.5
        if f - f_new < 1e-15 * max(1.0, abs(f)):
            w = cand if f_new <= f else w
            break
        w, f = cand, f_new
    return w


def _fit_l1_logistic_cv(
    x: np.ndarray,
    y: np.ndarray,
    sw: np.ndarray,
    *,
    cs: np.ndarray = LC_CS,
    n_splits: int = LC_N_SPLITS,
) -> tuple[np.ndarray, float]:
    """Pick ``C`` from ``cs`` by ``n_splits``-fold CV on the weighted soft log loss, refit on all
    rows. Folds are ``row % n_splits`` (alpaca_eval uses sklearn's GroupKFold over rows)."""
    if len(y) < 2:
        return _fit_l1_logistic(x, y, sw, float(cs[-1])), float(cs[-1])
    n_splits = max(2, min(n_splits, len(y)))
    folds = np.arange(len(y)) % n_splits
    best_c, best_loss = float(cs[0]), math.inf
    for c in cs:
        losses = []
        for k in range(n_splits):
            tr, te = folds != k, folds == k
            w = _fit_l1_logistic(x[tr], y[tr], sw[tr], float(c))
            losses.append(float(np.mean(sw[te] * _soft_logloss_terms(x[te] @ w, y[te]))))
        loss = float(np.mean(losses))
        if loss < best_loss - 1e-12:
            best_c, best_loss = float(c), loss
    return _fit_l1_logistic(x, y, sw, best_c), best_c


def _length_features(records: Sequence[dict[str, Any]]) -> np.ndarray:
    len_1 = np.array([len(r.get("output_1") or "") for r in records], dtype=float)
    len_2 = np.array([len(r.get("output_2") or "") for r in records], dtype=float)
    delta = len_1 - len_2
    sd = float(np.std(delta, ddof=1)) if len(delta) > 1 else 0.0
    return delta / sd if sd > 0 else np.zeros_like(delta)


def fit_length_controlled(
    records: Sequence[dict[str, Any]],
    *,
    instruction_difficulty: np.ndarray | None = None,
    gamed: Sequence[dict[str, float]] | None = None,
) -> LCResult:
    """Fit the LC GLM on ``records`` (AlpacaEval annotations) and predict at zero length difference.

    With ``instruction_difficulty`` (one value per record, in record order) and ``gamed`` (rows
    with ``preference`` in [0, 1], ``std_delta_len``, ``instruction_difficulty``, from
    ``df_gamed.csv``) this is the official ``length_controlled_v1`` protocol (``glm-refit``):
    L1 logistic regression without intercept on ``tanh(std_delta_len)``, difficulty and
    ``not_gamed_baseline``, gamed rows weighted 0.1, C chosen by 5-fold CV. Without them it is the
    ``reduced-glm`` variant (``tanh(std_delta_len)`` + intercept, the model's rows only). Records
    whose preference is invalid are left out of the fit but predicted (as alpaca_eval does).
    """
    pref = np.array([_as_float(r.get("preference")) for r in records], dtype=float)
    pref[pref == 0] = 1.5
    y = pref - 1.0
    t = np.tanh(_length_features(records))
    n = len(records)
    if instruction_difficulty is not None:
        diff = np.asarray(instruction_difficulty, dtype=float)
        if len(diff) != n:
            raise ValueError(f"instruction_difficulty has {len(diff)} values for {n} annotations")
        x = np.column_stack([t, diff, np.ones(n)])
        x_test = np.column_stack([np.zeros(n), diff, np.ones(n)])
        sw = np.ones(n)
        method = "glm-refit"
        note = "official length_controlled_v1 GLM refitted with numpy/scipy"
        if gamed is not None:
            g = list(gamed)
            xg = np.column_stack(
                [
                    np.tanh([float(r["std_delta_len"]) for r in g]),
                    [float(r["instruction_difficulty"]) for r in g],
                    np.zeros(len(g)),
                ]
            )
            yg = np.array([float(r["preference"]) for r in g])
            x = np.vstack([x, xg])
            y = np.concatenate([y, yg])
            sw = np.concatenate([sw, np.full(len(g), GAMED_SAMPLE_WEIGHT)])
        else:
            method = "glm-refit-no-gamed"
            note = "LC GLM with official difficulty but without gamed-baseline regularisation"
    else:
        x = np.column_stack([t, np.ones(n)])
        x_test = np.column_stack([np.zeros(n), np.ones(n)])
        sw = np.ones(n)
        method = "reduced-glm"
        note = (
            "REDUCED variant: tanh(std_delta_len) + intercept on this model's annotations only; "
            "no instruction difficulty, no gamed baselines (not the leaderboard's LC)"
        )
    ok = (y >= 0) & (y <= 1)
    w, c = _fit_l1_logistic_cv(x[ok], y[ok], sw[ok])
    p = _logistic(x_test @ w)
    names = ["tanh_std_delta_len", "instruction_difficulty", "not_gamed_baseline"]
    if instruction_difficulty is None:
        names = ["tanh_std_delta_len", "intercept"]
    weights = {k: float(v) for k, v in zip(names, w)}
    weights["C"] = c
    sem = float(np.std(p, ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return LCResult(float(np.mean(p) * 100), sem * 100, method, note, weights)


def load_gamed(path: str | Path) -> list[dict[str, float]]:
    """Read alpaca_eval's ``df_gamed.csv`` (columns include ``preference``, ``std_delta_len``,
    ``instruction_difficulty``). Preferences already in [0, 1] are kept; ones in [1, 2] shifted."""
    header, rows = _read_csv_rows(path)
    need = ["preference", "std_delta_len", "instruction_difficulty"]
    missing = [c for c in need if c not in header]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}")
    idx = {c: header.index(c) for c in need}
    out = []
    for row in rows:
        if not row:
            continue
        pref = _as_float(row[idx["preference"]])
        if pref == 0:
            pref = 1.5
        if pref > 1:
            pref -= 1
        out.append(
            {
                "preference": pref,
                "std_delta_len": float(row[idx["std_delta_len"]]),
                "instruction_difficulty": float(row[idx["instruction_difficulty"]]),
            }
        )
    return out


# --------------------------------------------------------------------------------------------
# the LC inputs from the Hub


@dataclass
class HubLCInputs:
    """What :func:`fetch_hub_lc_inputs` got: the loaded files (``None`` when not asked for or not
    fetched) and, when something asked for was not fetched, ``reason`` (one line)."""

    instruction_difficulty: np.ndarray | None = None
    gamed: list[dict[str, float]] | None = None
    reason: str = ""


def _hub_file(filename: str) -> tuple[Path | None, str]:
    """``(path, "")`` from the Hub cache (downloading when online), or ``(None, why)``."""
    from huggingface_hub import constants, hf_hub_download

    try:
        return Path(hf_hub_download(HUB_LC_REPO, filename, repo_type="dataset")), ""
    except Exception as err:  # offline, unreachable, not cached: a reason, not a traceback
        if constants.HF_HUB_OFFLINE:
            why = "HF_HUB_OFFLINE=1 and it is not in the Hub cache"
        else:
            first = (str(err).strip().splitlines() or [""])[0][:200]
            why = f"{type(err).__name__}: {first}" if first else type(err).__name__
        return None, f"{filename} of the Hub dataset {HUB_LC_REPO} not fetched ({why})"


def _checked(filename: str, path: Path, loader: Any, need: Sequence[str]) -> Any:
    """``loader(path)`` for a fetched file; ``ValueError`` naming the file when it has not the
    ``need`` columns, cannot be read, or (the difficulty) has not :data:`N_INSTRUCTIONS` rows."""
    try:
        header, _ = _read_csv_rows(path)
        missing = [c for c in need if c not in header]
        if missing:
            raise ValueError(f"missing columns {missing}, got {header}")
        value = loader(path)
        if filename == HUB_DIFFICULTY and len(value) != N_INSTRUCTIONS:
            raise ValueError(f"{len(value)} rows, expected {N_INSTRUCTIONS}")
    except (ValueError, IndexError, UnicodeDecodeError) as err:
        raise ValueError(
            f"{filename} of the Hub dataset {HUB_LC_REPO} ({path}) is not in alpaca_eval's "
            f"format: {err}"
        ) from None
    return value


def fetch_hub_lc_inputs(*, difficulty: bool, gamed: bool) -> HubLCInputs:
    """Get ``instruction_difficulty.csv`` (when ``difficulty``) and ``df_gamed.csv`` (when
    ``gamed``) of the Hub dataset :data:`HUB_LC_REPO` via ``huggingface_hub.hf_hub_download``
    (its cache, ``HF_ENDPOINT``, token and ``HF_HUB_OFFLINE`` handling).

    A file that cannot be fetched (offline and not cached, Hub unreachable, HTTP error) is left
    ``None`` and ``reason`` says why; once one fails the other is not tried. A fetched file not in
    alpaca_eval's format (difficulty: ``instruction_difficulty`` column, indices 0..804; gamed:
    the columns :func:`load_gamed` reads) raises ``ValueError`` naming the file.
    """
    out = HubLCInputs()
    if difficulty:
        path, out.reason = _hub_file(HUB_DIFFICULTY)
        if path is None:
            return out
        out.instruction_difficulty = _checked(
            HUB_DIFFICULTY, path, load_instruction_difficulty, ["instruction_difficulty"]
        )
    if gamed:
        path, out.reason = _hub_file(HUB_GAMED)
        if path is not None:
            out.gamed = _checked(
                HUB_GAMED,
                path,
                load_gamed,
                ["preference", "std_delta_len", "instruction_difficulty"],
            )
    return out
