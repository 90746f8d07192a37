"""Do the leaderboard's intervals hold (issue 22, points 1 and 5)? Simulated sweeps with a known truth
taken through the real bootstrap (distil.evaluation.confidence.resampled_columns: examples and
fine-tuning seeds drawn, every metric recomputed), the leaderboard's macro (distil.evaluation.scores
.macro_score) and its interval (confidence.paired_interval); the headline calls a difference "not
distinguishable" when its interval contains 0 (distil.report.summary._verdict).

The simulated sweep: two models a and b fine-tuned on an sst2-like task (872 validation examples,
true accuracy 91 vs 90 %) and an rte-like one (277 examples, 68 vs 65 %), so the true macro difference
is 2 points (0 for the A/A pair), every task run on the same number of seeds. Each (model, seed) run
gets its own accuracy shift, N(0, 1 point) on sst2 and N(0, 4 points) on rte (the issue's "realistic
per-run shifts"). Example i is predicted right when sqrt(0.45)·d_i + sqrt(0.35)·u_mi + sqrt(0.2)·e_msi
< Phi^-1(accuracy of the run): d the example's difficulty (shared by every model: the pairing), u the
model's own pattern (shared by its seeds), e the seed's. Two seeds of a model then disagree on ~8 % of
sst2 and ~19 % of rte examples, a and b on ~13 % and ~32 %, and a model's accuracy has a seed SD of 1.2
and 4.4 points. Each sweep draws new d, u, e and shifts; the truth is a model's accuracy in
expectation over examples and seeds. (How much seeds disagree matters: the seed-by-example part of the
noise is in both stages of the bootstrap, so the interval is calibrated when seeds rarely disagree
and conservative when they often do; measured with 1,000 resamples at 6 % / 14 % disagreement: 95.0 to
95.5 % coverage with 3 and 5 seeds; at 11 % / 26 %: about 97 %.)

Vectorised: the sweeps of a test are models of one Split per task (a sweep's two models share its
d; the sweeps share only the labels and the example draws W). Each model's interval is exactly what it
would get alone in a results dir with that W (a draw independent of every sweep's data) and its own seed
draws (keyed by its name), so the share of sweeps covered estimates the coverage. 500 resamples instead
of the leaderboard's 1,000 halve the time; np.quantile then puts the 2.5 % endpoint at the 2.69 % point
of the resamples in expectation instead of 2.59 %, so coverage reads ~0.25 points lower than the
leaderboard's (measured 0.2-0.3): a conservative check. Monte-Carlo error at 500 sweeps: ~1 point.

Measured (these tests, seed 0; in brackets the mean over seeds 0-5): 3 seeds cover the truth in 97.2 %
(95.9) of 500 sweeps, while the interval before issue 22 (examples only, seeds averaged) covers it in
81.5 % (79.2) of 200; 5 seeds in 94.0 % (95.9); an A/A pair is not distinguishable in 95.4 % (95.5)
with 3 seeds and 96.2 % (96.4) with 5.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

from distil.evaluation import confidence
from distil.evaluation.scores import macro_score

SIZES = {"sst2": 872, "rte": 277}  # the GLUE validation splits' sizes
SHIFT_SD = {"sst2": 1.0, "rte": 4.0}  # per-(model, seed) accuracy shift, points
TRUTH = {"sst2": (0.91, 0.90), "rte": (0.68, 0.65)}  # true accuracy of a and b: macro difference 2 points
SAME = {c: (b, b) for c, (_, b) in TRUTH.items()}  # an A/A pair
DIFFICULTY, PATTERN = 0.45, 0.35  # shares of the latent variance: the example's, the model's; the seed's is the rest


def simulated_sweeps(prefix: str, sweeps: int, seeds: int, truth: dict, rng: np.random.Generator,
                     per_seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """{column: {model: (seeds, N) predictions}} of `sweeps` simulated sweeps (module docstring):
    models `<prefix><k>a` and `<prefix><k>b`; per_seed: the first `per_seed` sweeps also as one-seed
    models `<prefix><k>a/<s>` (the same predictions)."""
    out = {}
    for column, n in SIZES.items():
        labels = LABELS[column]
        d = rng.standard_normal((sweeps, 1, n))
        preds = out[column] = {}
        for name, accuracy in zip("ab", truth[column]):
            u = rng.standard_normal((sweeps, 1, n))
            e = rng.standard_normal((sweeps, seeds, n))
            shift = rng.normal(0, SHIFT_SD[column] / 100, (sweeps, seeds, 1))
            right = (np.sqrt(DIFFICULTY) * d + np.sqrt(PATTERN) * u + np.sqrt(1 - DIFFICULTY - PATTERN) * e
                     < norm.ppf(accuracy + shift))
            predictions = np.where(right, labels, 1 - labels)  # (sweeps, seeds, n)
            for k in range(sweeps):
                preds[f"{prefix}{k}{name}"] = predictions[k]
                if k < per_seed:
                    preds.update({f"{prefix}{k}{name}/{s}": predictions[k, s][None] for s in range(seeds)})
    return out


LABELS = {c: (np.arange(n) % 5 < 2).astype(float) for c, n in SIZES.items()}  # 40 % positives


def bootstrap(*groups: dict) -> dict[str, dict[str, np.ndarray]]:
    """The leaderboard's resampled split scores {model: {column: (RESAMPLES,)}} of every simulated
    model in `groups` (simulated_sweeps' outputs), one Split per column: one pass for all sweeps."""
    splits = {c: confidence.Split(c, np.arange(n), LABELS[c], {m: p for g in groups for m, p in g[c].items()})
              for c, n in SIZES.items()}
    return confidence.resampled_columns(splits, RESAMPLES)


def intervals(resampled: dict, prefix: str, sweeps: int, seeds: int | None = None) -> np.ndarray:
    """(sweeps, 2) 95 % interval of the macro difference a - b of each sweep, as the leaderboard makes
    delta_vs_default's; seeds: from the one-seed models `<model>/<s>`, each model's macro from the
    mean of its seeds' resampled scores (the interval before issue 22: seeds averaged, never drawn)."""
    def macro(model: str) -> np.ndarray:
        if seeds is None:
            return macro_score(resampled[model])
        return macro_score({c: np.mean([resampled[f"{model}/{s}"][c] for s in range(seeds)], 0) for c in SIZES})

    return np.array([confidence.paired_interval(macro(f"{prefix}{k}a"), macro(f"{prefix}{k}b"))
                     for k in range(sweeps)])


def covered(bounds: np.ndarray, truth: float) -> float:
    """Share of the intervals (sweeps, 2) that contain `truth`."""
    return float(np.mean((bounds[:, 0] <= truth) & (truth <= bounds[:, 1])))


DELTA = 100 * np.mean([a - b for a, b in TRUTH.values()])  # 2 points
SWEEPS, OLD = 500, 200  # simulated sweeps per check; of them, scored the old way too (3 seeds)
RESAMPLES = 500  # see the module docstring


def test_three_seeds_cover_a_known_difference_and_an_a_a_pair_is_rarely_distinguishable():
    """The issue's bar with 3 seeds on every task: the known difference covered in >= 90 % of sweeps.
    The first sweeps' example-only interval (the one before issue 22) falls well short of it, so the
    check can fail. A/A: "not distinguishable" in 95.5 % on average over Monte-Carlo seeds (module
    docstring): the interval is calibrated, not conservative, at 3 seeds, so the bound is 94 % (1.5
    Monte-Carlo errors below the mean), not 95."""
    rng = np.random.default_rng(0)
    resampled = bootstrap(simulated_sweeps("d", SWEEPS, 3, TRUTH, rng, per_seed=OLD),
                          simulated_sweeps("s", SWEEPS, 3, SAME, rng))
    multi, old = covered(intervals(resampled, "d", SWEEPS), DELTA), covered(intervals(resampled, "d", OLD, 3), DELTA)
    same = covered(intervals(resampled, "s", SWEEPS), 0.0)
    print(f"3 seeds: covered in {multi:.1%} of {SWEEPS} sweeps (example-only interval: {old:.1%} of {OLD}); "
          f"A/A not distinguishable in {same:.1%}")
    assert multi >= 0.90, multi
    assert old < 0.85, old
    assert same >= 0.94, same


def test_five_seeds_cover_a_known_difference_in_95_plus_minus_3_percent_and_a_a_in_95_percent():
    """The issue's bars with 5 seeds: coverage 95 ± 3 %, an A/A pair not distinguishable in >= 95 %."""
    rng = np.random.default_rng(0)
    resampled = bootstrap(simulated_sweeps("d", SWEEPS, 5, TRUTH, rng), simulated_sweeps("s", SWEEPS, 5, SAME, rng))
    share, same = covered(intervals(resampled, "d", SWEEPS), DELTA), covered(intervals(resampled, "s", SWEEPS), 0.0)
    print(f"5 seeds: covered in {share:.1%} of {SWEEPS} sweeps; A/A not distinguishable in {same:.1%}")
    assert 0.92 <= share <= 0.98, share
    assert same >= 0.95, same
