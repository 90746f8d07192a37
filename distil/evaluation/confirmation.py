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
* **several finalists**: the claim "better than the paper defaults" is made for any of K finalists,
  so the intervals of the K differences are simultaneous: max-T over the resamples (Westfall & Young
  1993, ch. 2; as in Romano & Wolf 2005): t_k^b = |d_k^b - d_k| / se_k, c = the `level` quantile of
  max_k t_k^b, interval d_k -/+ c·se_k. With one finalist c is about 1.96 and the interval the usual
  one;
* **A/A**: the paper defaults' run 0 against its run 1 (the same configuration distilled twice):
  the difference of their resampled scores plus a normal term of variance 2·sigma_run^2. Its interval
  is made as the finalists' are, so an A/A pair that comes out "distinguishable" says the protocol
  cannot tell a configuration from itself: the headline then says the protocol is too noisy to rank.

What is not in the intervals: the noise of the sigma_run^2 estimate itself (few degrees of freedom:
K + 1 rows of R - 1 each); a task fine-tuned on a single seed adds no seed noise.
Tests: tests/test_confirmation.py (11 equally good candidates through selection and confirmation,
A/A pairs, on simulated predictions).
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass, field

import numpy as np

from distil.evaluation.confidence import LEVEL, Split, cell_scores

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
        num += (len(runs) - 1) * (means.var(ddof=1) - seed_var.mean())
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

    @property
    def aa_distinguishable(self) -> bool:
        return self.aa is not None and (self.aa[1] > 0 or self.aa[2] < 0)

    def better(self) -> list[Comparison]:
        """The finalists better than the paper defaults (simultaneous interval above 0)."""
        return [c for c in self.comparisons if c.verdict == "better"]

    def to_json(self) -> dict:
        out = asdict(self)
        out["comparisons"] = [{**asdict(c), "verdict": c.verdict} for c in self.comparisons]
        out["aa_distinguishable"] = self.aa_distinguishable
        return out


def confirm(run_scores: dict[str, dict[int, np.ndarray]], full_runs: dict[str, dict[int, float]], paper_defaults: str,
            finalists: dict[str, str], sigma2_run: float, run_dof: int, metric: str = "macro_score",
            level: float = LEVEL, seed: int = 0) -> Confirmation:
    """The confirmation's comparisons (module docstring).

    run_scores: {row: {run: (B,) resampled macro of that run alone}} of the paper defaults' row and
    each finalist's (the same example draws for all: paired); full_runs: {row: {run: its full-sample
    macro}} (a row's score is the mean over its runs); finalists: {confirmation row: the candidate it
    confirms}; sigma2_run: the pooled
    between-run variance (`between_run_variance`). The normal run terms are seeded by `seed` and the
    row's name, so a row's draws do not depend on which other rows are confirmed.

    Raises:
        KeyError: the paper defaults or a finalist has no run_scores.
    """
    def resampled(row: str) -> np.ndarray:
        runs = run_scores[row]
        mean = np.mean([runs[r] for r in sorted(runs)], axis=0)
        rng = np.random.default_rng([seed, 3, zlib.crc32(row.encode())])
        return mean + np.sqrt(sigma2_run / len(runs)) * rng.standard_normal(len(mean))

    full = {row: float(np.mean(list(runs.values()))) for row, runs in full_runs.items()}
    pd_b = resampled(paper_defaults)
    deltas = {m: resampled(m) - pd_b for m in finalists}
    point = {m: full[m] - full[paper_defaults] for m in finalists}
    se = {m: float(np.std(d, ddof=1)) for m, d in deltas.items()}
    if deltas:
        t = np.max([np.abs(deltas[m] - point[m]) / (se[m] or np.inf) for m in deltas], axis=0)
        critical = float(np.quantile(t, level))
    else:
        critical = float("nan")
    comparisons = sorted((Comparison(m, of, full[m], full[paper_defaults], point[m], point[m] - critical * se[m],
                                     point[m] + critical * se[m]) for m, of in finalists.items()),
                         key=lambda c: -c.score)
    aa = None
    pd_runs = run_scores[paper_defaults]
    if len(pd_runs) >= 2:
        r0, r1 = sorted(pd_runs)[:2]
        rng = np.random.default_rng([seed, 4, zlib.crc32(paper_defaults.encode())])
        d = pd_runs[r0] - pd_runs[r1] + np.sqrt(2 * sigma2_run) * rng.standard_normal(len(pd_runs[r0]))
        lo, hi = np.quantile(d, [(1 - level) / 2, (1 + level) / 2])
        aa = (full_runs[paper_defaults][r0] - full_runs[paper_defaults][r1], float(lo), float(hi))
    return Confirmation(paper_defaults=paper_defaults, comparisons=tuple(comparisons), critical=critical, aa=aa,
                        sigma_run=float(np.sqrt(sigma2_run)), run_dof=run_dof,
                        runs={m: len(run_scores[m]) for m in [paper_defaults, *finalists]}, metric=metric,
                        level=level, resamples=len(pd_b))
