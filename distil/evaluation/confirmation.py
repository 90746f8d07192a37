"""The confirmation stage's statistics: is a finalist really better than the paper defaults?

The search picks its finalists on the held-out selection slice of the train splits; the confirmation
stage (distil.search.confirm) then distils each finalist and the paper defaults again, R >= 2 times
with fresh distillation seeds, fine-tunes every run with several seeds and scores them on the
validation splits, which the search never ranked on. Fresh runs on fresh rows remove the winner's
curse of the search-stage numbers; what is left to get right is the noise of a single confirmation:

* **examples and fine-tuning seeds**: each (row, run) is resampled as its own model by the leaderboard's
  multi-bootstrap (distil.evaluation.confidence.resampled_columns: examples paired across every model,
  seeds of each run drawn with replacement with the small-sample scaling); a row's score on a
  resample is the mean of its runs' scores;
* **distillation runs**: one row's R = 2 runs estimate their own between-run variance with one degree
  of freedom, too few for an interval. The between-run variance component is therefore pooled over
  every confirmed row (one-way ANOVA: the variance of a row's run means minus the part its fine-tuning
  seeds explain, weighted by R - 1, floored at 0: `between_run_variance`) and added to each row's
  resampled score as an independent normal term of variance sigma_run^2 / R (seeded). The finalists
  and the paper defaults are different configurations, so their run noises are independent;
  The estimate has few degrees of freedom (K + 1 rows of R - 1 each), so every interval that uses it
  is widened by t_nu / z, nu Satterthwaite's effective degrees of freedom of its variance (the
  bootstrap part counted as known: `critical_scale`);
* **several finalists**: the claim "better than the paper defaults" is made for any of K finalists,
  so the intervals of the K differences are simultaneous: max-T over the resamples (Westfall & Young
  1993, ch. 2; as in Romano & Wolf 2005): t_k^b = |d_k^b - d_k| / se_k (the run terms drawn as
  normals), c = the `level` quantile of max_k t_k^b, interval d_k -/+ c·(t_nu/z)·se_k. With one
  finalist c is about 1.96;
* **A/A**: the paper defaults' run 0 against its run 1 (the same configuration distilled twice):
  the difference of their resampled scores, with the run variance pooled over the OTHER confirmed
  rows (the pair must not be judged by its own difference, which would bound it: leave-one-out), so
  a pair that differs more than the other rows' reruns and its seeds and examples explain comes out
  "distinguishable": the protocol cannot tell a configuration from itself, and the headline says it
  is too noisy to rank. With no other row distilled twice, only seeds and examples judge it.

Conservative on purpose: the pooled sigma_run^2 also holds the run-to-run change of a student's
pattern over these particular examples, which the example draws cover again (in the simulation of
tests/test_confirmation.py: estimated 0.65-0.78 against a true run SD of 0.56); mnli_m and mnli_mm
share seeds, which v_r ignores; every row's run d uses the same distillation seed, which correlates
their run noise (pairing by seed would use it). What is not in the intervals: a task fine-tuned on a
single seed adds no seed noise.
Tests: tests/test_confirmation.py (11 equally good candidates through selection and confirmation,
A/A pairs, on simulated predictions).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.stats import norm
from scipy.stats import t as t_dist

from distil.evaluation.confidence import LEVEL, Split, cell_scores, resampled_columns

RUN_SEP = "#run"  # the name of one distillation run of a row as a model of its own: "<row>#run<r>"


def run_model(row: str, run: int) -> str:
    """The model name of run `run` of confirmed row `row` among the resampled models."""
    return f"{row}{RUN_SEP}{run}"


def runs_apart(splits: dict[str, Split], rows) -> dict[str, Split]:
    """The same splits with each run of each row in `rows` added as a model of its own
    (`run_model(row, r)`, one distillation run: its seeds only). Rows without predictions on a split
    are skipped there; the row itself stays."""
    out = {}
    for column, s in splits.items():
        preds, runs = dict(s.preds), dict(s.runs)
        for row in rows:
            if row not in s.preds:
                continue
            of_row = s.runs_of(row)
            for r in np.unique(of_row):
                name = run_model(row, int(r))
                preds[name] = s.preds[row][of_row == r]
                runs[name] = np.zeros(int((of_row == r).sum()), dtype=int)
        out[column] = Split(s.column, s.idx, s.labels, preds, s.task, s.position, runs)
    return out


def macro_weights(macro, columns) -> dict[str, float]:
    """{column: a_c} such that macro(scores) = sum_c a_c·scores[c] over `columns` (the macro is a
    mean of task means of split columns, so it is linear): read off by evaluating it on unit vectors."""
    base = macro({c: 0.0 for c in columns})
    return {c: float(macro({k: float(k == c) for k in columns}) - base) for c in columns}


def between_run_variance(splits: dict[str, Split], rows, macro) -> tuple[float, int]:
    """(sigma_run^2, degrees of freedom): the between-distillation-run variance component of a row's
    macro (points^2), pooled over `rows` with 2 or more runs.

    Per row with R runs of n_rc seeds on column c: the full-sample score of each run's seeds on the
    column (distil.evaluation.confidence.cell_scores), the run's macro m_r = sum_c a_c·mean(x_rc)
    (`macro_weights`), and the variance its seeds put in m_r, v_r = sum_c a_c^2·s_rc^2 / n_rc (s_rc^2
    the seeds' sample variance; 0 for one seed). Between runs: S_B^2 = var(m_r, ddof=1), whose
    expectation is sigma_run^2 + mean(v_r) (one-way random-effects ANOVA: Searle, Casella & McCulloch
    1992, ch. 3). Pooled: sum over rows of (R - 1)·(S_B^2 - mean v_r) / sum (R - 1), floored at 0.
    `macro`: the leaderboard's macro over a {column: score} dict (distil.evaluation.scores)."""
    num, dof = 0.0, 0
    for row in rows:
        present = {c: s for c, s in splits.items() if row in s.preds}
        if not present:
            continue
        a = macro_weights(macro, list(present))
        runs = sorted({int(r) for s in present.values() for r in np.unique(s.runs_of(row))})
        if len(runs) < 2:
            continue
        means, seed_var = np.zeros(len(runs)), np.zeros(len(runs))
        for column, s in present.items():
            x = cell_scores(Split(s.column, s.idx, s.labels, {row: s.preds[row]}, s.task, s.position),
                            np.ones((1, len(s.idx))))[row][0]
            of_row = s.runs_of(row)
            for i, r in enumerate(runs):
                xr = x[of_row == r]
                means[i] += a[column] * xr.mean()
                seed_var[i] += a[column] ** 2 * (xr.var(ddof=1) / len(xr) if len(xr) > 1 else 0.0)
        component = means.var(ddof=1) - seed_var.mean()
        if not np.isfinite(component):  # a NaN score (a constant regression column): no estimate from this row
            continue
        num += (len(runs) - 1) * component
        dof += len(runs) - 1
    return (max(num / dof, 0.0) if dof else 0.0), dof


@dataclass(frozen=True)
class Comparison:
    """One finalist against the paper defaults on the confirmation: its score, the paper defaults',
    the difference (points) with its simultaneous interval and the verdict."""

    model: str  # the confirmation row, e.g. confirm-1a2b3c4d
    of: str  # the candidate it confirms
    score: float
    paper_defaults: float
    delta: float
    lo: float
    hi: float

    @property
    def verdict(self) -> str:
        return "better" if self.lo > 0 else "worse" if self.hi < 0 else "not distinguishable"


@dataclass(frozen=True)
class Confirmation:
    """What the confirmation stage shows (Board.confirmation as a dict: `to_json`).

    comparisons: each finalist vs the paper defaults, best score first; critical: the max-T
    critical value c of the simultaneous intervals; aa: the paper defaults' run 0 - run 1 (delta,
    lo, hi) or None with fewer than 2 runs; sigma_run / run_dof: the pooled SD between distillation
    runs (points of the macro) and its degrees of freedom; runs: distillation runs per row;
    metric: the macro compared; level; resamples."""

    paper_defaults: str
    comparisons: tuple[Comparison, ...]
    critical: float
    aa: tuple[float, float, float] | None
    sigma_run: float
    run_dof: int
    runs: dict = field(default_factory=dict)
    metric: str = "macro_score"
    level: float = LEVEL
    resamples: int = 0
    aa_run_dof: int | None = None  # degrees of freedom of the run variance the A/A is judged with

    @property
    def aa_distinguishable(self) -> bool:
        return self.aa is not None and bool(self.aa[1] > 0 or self.aa[2] < 0)  # NaN bounds: False

    def better(self) -> list[Comparison]:
        """The finalists better than the paper defaults (simultaneous interval above 0)."""
        return [c for c in self.comparisons if c.verdict == "better"]

    def to_json(self) -> dict:
        out = asdict(self)
        out["comparisons"] = [{**asdict(c), "verdict": c.verdict} for c in self.comparisons]
        out["aa_distinguishable"] = self.aa_distinguishable
        return out


def critical_scale(boot_var: float, run_var: float, run_dof: int, level: float = LEVEL) -> float:
    """t_nu / z at the two-sided `level`: how much wider an interval gets because its run variance
    `run_var` is estimated with `run_dof` degrees of freedom while the bootstrap part `boot_var` is
    treated as known. nu is Satterthwaite's (1946) effective degrees of freedom,
    (boot_var + run_var)^2 / (run_var^2 / run_dof); 1 when run_var is 0 or run_dof is 0 (nothing
    estimated)."""
    if run_var <= 0 or run_dof <= 0:
        return 1.0
    nu = (boot_var + run_var) ** 2 / (run_var ** 2 / run_dof)
    q = (1 + level) / 2
    return float(t_dist.ppf(q, nu) / norm.ppf(q))


def confirm(run_scores: dict[str, dict[int, np.ndarray]], full_runs: dict[str, dict[int, float]], paper_defaults: str,
            finalists: dict[str, str], sigma2_run: float, run_dof: int, sigma2_aa: float | None = None,
            aa_dof: int | None = None, metric: str = "macro_score", level: float = LEVEL,
            seed: int = 0) -> Confirmation:
    """The confirmation's comparisons (module docstring).

    run_scores: {row: {run: (B,) resampled macro of that run alone}} of the paper defaults' row and
    each finalist's (the same example draws for all: paired); full_runs: {row: {run: its full-sample
    macro}} (a row's score is the mean over its runs); finalists: {confirmation row: the candidate it
    confirms}; sigma2_run, run_dof: the between-run variance pooled over every confirmed row and its
    degrees of freedom (`between_run_variance`); sigma2_aa, aa_dof: the same pooled over the rows other
    than the paper defaults (default: sigma2_run, run_dof), for the A/A pair, which must not judge
    itself by its own difference.

    Each finalist's difference d_k to the paper defaults has se_k^2 = (the resampled variance of the
    runs' means) + sigma2_run·(1/R_k + 1/R_pd); the max-T critical value c comes from the resamples with
    the run terms drawn as normals, and is widened by `critical_scale` (Satterthwaite's t for the few
    degrees of freedom of sigma2_run): interval d_k -/+ c·scale_k·se_k. The A/A: d = run 0 - run 1 of
    the paper defaults, se^2 = its resampled variance + 2·sigma2_aa, interval d -/+ z·scale·se. An
    interval with se 0 (no variation to measure) is NaN: "not distinguishable". The normal run terms
    are seeded by `seed` and the row's name.

    Raises:
        KeyError: the paper defaults or a finalist has no run_scores.
    """
    if sigma2_aa is None:
        sigma2_aa, aa_dof = sigma2_run, run_dof

    def mean_of_runs(row: str) -> np.ndarray:
        runs = run_scores[row]
        return np.mean([runs[r] for r in sorted(runs)], axis=0)

    def run_noise(row: str) -> np.ndarray:
        """(B,) the row's distillation-run term: normal, variance sigma2_run / R, seeded by its name."""
        runs = run_scores[row]
        rng = np.random.default_rng([seed, 3, zlib.crc32(row.encode())])
        return np.sqrt(sigma2_run / len(runs)) * rng.standard_normal(len(next(iter(runs.values()))))

    full = {row: float(np.mean(list(runs.values()))) for row, runs in full_runs.items()}
    pd_b = mean_of_runs(paper_defaults)
    r_pd = len(run_scores[paper_defaults])
    point = {m: full[m] - full[paper_defaults] for m in finalists}
    boot_var = {m: float(np.var(mean_of_runs(m) - pd_b, ddof=1)) for m in finalists}
    run_var = {m: sigma2_run * (1 / len(run_scores[m]) + 1 / r_pd) for m in finalists}
    se = {m: float(np.sqrt(boot_var[m] + run_var[m])) for m in finalists}
    noisy_pd = pd_b + run_noise(paper_defaults)
    studentized = [np.abs(mean_of_runs(m) + run_noise(m) - noisy_pd - point[m]) / se[m]
                   for m in finalists if se[m] > 0 and np.isfinite(se[m])]
    critical = float(np.quantile(np.max(studentized, axis=0), level)) if studentized else float("nan")
    comparisons = []
    for m, of in finalists.items():
        half = critical * critical_scale(boot_var[m], run_var[m], run_dof, level) * se[m]
        lo, hi = (point[m] - half, point[m] + half) if se[m] > 0 and np.isfinite(half) else (math.nan, math.nan)
        comparisons.append(Comparison(m, of, full[m], full[paper_defaults], point[m], lo, hi))
    comparisons.sort(key=lambda c: -c.score)
    aa = None
    pd_runs = run_scores[paper_defaults]
    if len(pd_runs) >= 2:
        r0, r1 = sorted(pd_runs)[:2]
        d = full_runs[paper_defaults][r0] - full_runs[paper_defaults][r1]
        b_var, r_var = float(np.var(pd_runs[r0] - pd_runs[r1], ddof=1)), 2 * sigma2_aa
        half = norm.ppf((1 + level) / 2) * critical_scale(b_var, r_var, aa_dof, level) * np.sqrt(b_var + r_var)
        aa = (d, d - half, d + half) if half > 0 and np.isfinite(half) else (d, math.nan, math.nan)
    return Confirmation(paper_defaults=paper_defaults, comparisons=tuple(comparisons), critical=critical, aa=aa,
                        sigma_run=float(np.sqrt(sigma2_run)), run_dof=run_dof,
                        runs={m: len(run_scores[m]) for m in [paper_defaults, *finalists]}, metric=metric,
                        level=level, resamples=len(pd_b), aa_run_dof=aa_dof)


def from_splits(splits: dict[str, Split], paper_defaults: str, finalists: dict[str, str], macro,
                metric: str = "macro_score", resamples: int = 1000, seed: int = 0) -> Confirmation | None:
    """The Confirmation of confirmed rows whose predictions are in `splits` (the leaderboard's, with
    each row's distillation runs in Split.runs): every run resampled as its own model
    (`runs_apart`, distil.evaluation.confidence.resampled_columns: the same example draws as every
    other row of the leaderboard, since they are seeded by split position), `macro` of each run,
    the between-run variance pooled over all the rows and over the rows other than the paper
    defaults (the A/A's), then `confirm`. finalists: {row: the candidate it confirms}; rows without a
    finite score are left out. None when the paper defaults have no finite score."""
    rows = [paper_defaults, *finalists]
    only = {c: Split(s.column, s.idx, s.labels, {m: s.preds[m] for m in rows if m in s.preds}, s.task, s.position,
                     {m: s.runs[m] for m in rows if m in s.runs})
            for c, s in splits.items()}
    apart = runs_apart(only, rows)
    for s in apart.values():  # the runs as models only
        for m in rows:
            s.preds.pop(m, None)
            s.runs.pop(m, None)
    resampled, full = resampled_columns(apart, resamples, seed), resampled_columns(apart, 0)
    run_scores, full_runs = {}, {}
    for name, cols in resampled.items():
        row, run = name.rsplit(RUN_SEP, 1)
        value = macro(cols)
        if isinstance(value, np.ndarray) and np.isfinite(value).all():
            run_scores.setdefault(row, {})[int(run)] = value
            full_runs.setdefault(row, {})[int(run)] = float(macro(full[name])[0])
    if paper_defaults not in run_scores:
        return None
    sigma2, dof = between_run_variance(only, list(run_scores), macro)
    sigma2_aa, aa_dof = between_run_variance(only, [r for r in run_scores if r != paper_defaults], macro)
    kept = {m: of for m, of in finalists.items() if m in run_scores}
    return confirm(run_scores, full_runs, paper_defaults, kept, sigma2, dof, sigma2_aa, aa_dof, metric, seed=seed)
