"""Paired bootstrap: vectorised metrics against scikit-learn/scipy, intervals against cases with a
known answer, chance levels."""

import numpy as np
import pytest
from scipy import stats

from distil.evaluation import confidence
from distil.evaluation.metrics import compute


def _cases():
    rng = np.random.default_rng(1)
    n = 300
    y2 = (rng.random(n) < 0.4).astype(float)
    y3 = rng.integers(0, 3, n).astype(float)
    ys = np.round(rng.uniform(0, 5, n) * 5) / 5  # stsb-like: many ties
    # Perfect, inverse, constant, noisy.
    binary = np.stack([y2, 1 - y2, np.zeros(n), np.where(rng.random(n) < 0.3, 1 - y2, y2)])
    multi = np.stack([y3, np.zeros(n), (y3 + (rng.random(n) < 0.3)) % 3])
    floats = np.stack([ys + rng.normal(0, 1, n), np.full(n, 2.5), np.round(ys + rng.normal(0, 1, n)), -ys])
    return [("accuracy", y2, binary), ("f1", y2, binary), ("f1", np.zeros(n), np.zeros((1, n))), ("mcc", y2, binary),
            ("mcc", y3, multi), ("accuracy", y3, multi), ("pearson", ys, floats), ("spearmanr", ys, floats)]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")  # F1 with no positives: 0
@pytest.mark.parametrize("metric, labels, preds", _cases())
def test_vectorised_metrics_equal_sklearn_and_scipy(metric, labels, preds):
    n = len(labels)
    W = np.vstack([np.ones(n), confidence.resample_counts(n, 3, np.random.default_rng(0))])
    got = confidence.resampled_metric(metric, W, labels, preds)
    assert got.shape == (4, len(preds))
    for b, w in enumerate(W.astype(int)):
        take = np.repeat(np.arange(n), w)  # the resample as an index list, as a loop over resamples would draw it
        want = [compute(metric, labels[take], p[take]) for p in preds]
        np.testing.assert_allclose(got[b], want, atol=1e-9)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning", "ignore::RuntimeWarning")
@pytest.mark.parametrize("metric", ["accuracy", "f1", "mcc", "pearson", "spearmanr"])
def test_degenerate_resamples_follow_the_same_conventions(metric):
    """Resamples that draw one example only, or only tied values: constant there, so 0 on the
    correlations and MCC, exactly as distil.evaluation.metrics.compute on the drawn examples."""
    y = np.array([0.0, 1.0, 1.0, 0.0])
    preds = np.array([[0.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]])
    W = np.array([[4.0, 0, 0, 0], [0, 2, 2, 0], [1, 1, 1, 1], [0, 3, 0, 1]])
    got = confidence.resampled_metric(metric, W, y, preds)
    for b, w in enumerate(W.astype(int)):
        take = np.repeat(np.arange(4), w)
        with np.errstate(invalid="ignore"):
            want = [compute(metric, y[take], p[take]) for p in preds]
        np.testing.assert_allclose(got[b], want, atol=1e-9)  # NaN where scipy gives NaN (constant labels)


def test_resample_counts_draw_n_examples_per_resample():
    W = confidence.resample_counts(50, 200, np.random.default_rng(0))
    assert W.shape == (200, 50) and (W.sum(1) == 50).all()
    assert abs(W.mean() - 1) < 0.02 and (W == 0).mean() == pytest.approx((49 / 50) ** 50, abs=0.02)


def _split(column, labels, **preds):
    s = confidence.Split(column, np.arange(len(labels)), np.asarray(labels, dtype=float))
    s.preds = {m: np.atleast_2d(np.asarray(p, dtype=float)) for m, p in preds.items()}
    return s


def test_difference_interval_matches_the_binomial_answer():
    """A is right on all 1000 examples, B wrong on a known 100: on a resample the accuracy
    difference is 100·K/N with K ~ Binomial(1000, 0.1) draws from those 100, so the 95 % interval
    is 100·[binom.ppf(0.025), binom.ppf(0.975)]/N = [8.2, 11.9] (normal approx. 10 ± 1.86)."""
    n, k = 1000, 100
    y = np.arange(n) % 2
    b = y.copy()
    b[:k] = 1 - b[:k]
    split = _split("sst2", y, a=y, b=b)
    scores = confidence.resampled_columns({"sst2": split}, resamples=4000, seed=0)
    lo, hi = confidence.paired_interval(scores["a"]["sst2"], scores["b"]["sst2"])
    want_lo, want_hi = 100 * stats.binom.ppf([0.025, 0.975], n, k / n) / n
    assert lo == pytest.approx(want_lo, abs=0.25) and hi == pytest.approx(want_hi, abs=0.25)
    full = confidence.resampled_columns({"sst2": split}, resamples=0)
    assert full["a"]["sst2"][0] - full["b"]["sst2"][0] == pytest.approx(10.0)
    # The same seed gives the same resamples: the interval is reproducible.
    again = confidence.resampled_columns({"sst2": split}, resamples=4000, seed=0)
    assert np.array_equal(again["b"]["sst2"], scores["b"]["sst2"])


def test_spearman_interval_agrees_with_scipy_bootstrap():
    rng = np.random.default_rng(3)
    y = np.round(rng.uniform(0, 5, 400) * 5) / 5
    p = y + rng.normal(0, 1.5, 400)
    split = _split("stsb", y, m=p)

    def spearman(y, p, axis):  # stsb's score: (Pearson + Spearman) / 2, batched over resamples
        ry, rp = stats.rankdata(y, axis=axis), stats.rankdata(p, axis=axis)
        def corr(a, b):
            da, db = a - a.mean(axis, keepdims=True), b - b.mean(axis, keepdims=True)
            return (da * db).sum(axis) / np.sqrt((da ** 2).sum(axis) * (db ** 2).sum(axis))

        return 50 * (corr(y, p) + corr(ry, rp))

    ref = stats.bootstrap((y, p), spearman, paired=True, vectorized=True, n_resamples=4000, method="percentile",
                          confidence_level=0.95, random_state=np.random.default_rng(0)).confidence_interval
    lo, hi = confidence.interval(confidence.resampled_columns({"stsb": split}, 4000, seed=0)["m"]["stsb"])
    width = ref.high - ref.low
    assert lo == pytest.approx(ref.low, abs=0.1 * width) and hi == pytest.approx(ref.high, abs=0.1 * width)


def test_identical_models_have_a_zero_interval_and_share_p_best():
    y = np.arange(200) % 2
    p = np.where(np.arange(200) % 7 == 0, 1 - y, y)
    scores = confidence.resampled_columns({"rte": _split("rte", y, a=p, b=p)}, 500, seed=0)
    assert confidence.paired_interval(scores["a"]["rte"], scores["b"]["rte"]) == (0.0, 0.0)
    np.testing.assert_allclose(confidence.p_best(np.stack([scores["a"]["rte"], scores["b"]["rte"]], 1)), [0.5, 0.5])


def test_p_best_counts_first_places_and_splits_ties():
    macros = np.array([[3.0, 1.0, 2.0], [1.0, 3.0, 2.0], [3.0, 3.0, 0.0], [1.0, 0.0, 2.0]])
    np.testing.assert_allclose(confidence.p_best(macros), [(1 + 0.5) / 4, (1 + 0.5) / 4, 1 / 4])


def test_seeds_are_drawn_within_a_resample_and_their_spread_scaled_to_the_unbiased_variance():
    """Seed 0 perfect, seed 1 always wrong: the full sample is their mean, 50. A resample draws the two
    seeds with replacement (both 0, one each, both 1: probability 1/4, 1/2, 1/4) and scales the drawn
    mean's deviation from 50 by sqrt(2/1): 50 - 50·sqrt(2), 50, 50 + 50·sqrt(2), whatever examples are
    drawn; the variance of the drawn means is then s²/n = 1250, not the plug-in (n-1)/n · s²/n."""
    y = np.arange(100) % 2
    split = _split("rte", y, m=np.stack([y, 1 - y]))
    assert confidence.resampled_columns({"rte": split}, resamples=0)["m"]["rte"] == pytest.approx([50.0])
    scores = confidence.resampled_columns({"rte": split}, 4000, seed=0)["m"]["rte"]
    levels = 50 + 50 * np.sqrt(2) * np.array([-1, 0, 1])
    nearest = np.abs(scores[:, None] - levels).argmin(1)
    np.testing.assert_allclose(scores, levels[nearest], atol=1e-9)
    np.testing.assert_allclose(np.bincount(nearest, minlength=3) / 4000, [0.25, 0.5, 0.25], atol=0.025)
    assert scores.var() == pytest.approx(np.var([100, 0], ddof=1) / 2, rel=0.06)


def test_a_task_run_on_one_seed_adds_no_seed_noise():
    """One seed: its weight is 1 on every resample, so only the examples move the score; three
    identical seeds: the seeds add nothing either. Both give the example-only interval."""
    y = np.arange(300) % 2
    p = np.where(np.arange(300) % 7 == 0, 1 - y, y)
    one = confidence.resampled_columns({"rte": _split("rte", y, m=p)}, 500, seed=0)["m"]["rte"]
    three = confidence.resampled_columns({"rte": _split("rte", y, m=np.stack([p, p, p]))}, 500, seed=0)["m"]["rte"]
    np.testing.assert_allclose(three, one, atol=1e-9)
    assert one.std() > 1  # the examples still move it


def _rngs(i: int):
    return np.random.default_rng([9, i]), np.random.default_rng([10, i])


@pytest.mark.parametrize("seeds", [2, 3, 5])
def test_seed_weights_give_the_unbiased_variance_of_a_mean_over_seeds(seeds):
    """With one run, w @ x over many resamples has mean x̄ and variance s²/n (s² with ddof 1):
    the sqrt(n/(n-1)) scaling undoes the bootstrap's (n-1)/n (Hesterberg 2015). Rows sum to 1."""
    x = np.array([3.0, 11.0, 4.0, 8.0, 1.0])[:seeds]
    w = confidence.seed_weights(np.zeros(seeds, dtype=int), x, 40_000, *_rngs(seeds))
    np.testing.assert_allclose(w.sum(1), 1.0)
    assert (w @ x).mean() == pytest.approx(x.mean(), abs=0.05)
    assert (w @ x).var() == pytest.approx(x.var(ddof=1) / seeds, rel=0.03)


def test_two_stage_weights_give_the_anova_variance_of_a_mean_over_runs():
    """3 distillation runs of 2 seeds each: runs drawn first, then seeds within each drawn run. The
    bootstrap variance of w @ x is the unbiased one of the mean over runs, sigma_run²/R + S_W²·mean(1/n)/R
    (one-way ANOVA: sigma_run² = S_B² - S_W²·mean(1/n)), not the plain two-stage bootstrap's, which
    counts the within-run variance twice. When the run means vary less than their seeds explain, the
    run stage adds nothing."""
    runs = np.array([0, 0, 1, 1, 2, 2])
    x = np.array([1.0, 2.0, 5.0, 6.0, 10.0, 12.0])
    means, within = np.array([1.5, 5.5, 11.0]), np.mean([0.5, 0.5, 2.0])
    want = (means.var(ddof=1) - within / 2) / 3 + within / 2 / 3
    w = confidence.seed_weights(runs, x, 100_000, *_rngs(0))
    np.testing.assert_allclose(w.sum(1), 1.0)
    assert (w @ x).mean() == pytest.approx(x.mean(), abs=0.05)
    assert (w @ x).var() == pytest.approx(want, rel=0.03)
    plain = np.array([1.0, 9.0, 2.0, 8.0, 3.0, 7.0])  # run means 5, 5, 5: no run effect at all
    w = confidence.seed_weights(runs, plain, 100_000, *_rngs(1))
    assert (w @ plain).var() == pytest.approx(np.mean([32.0, 18.0, 8.0]) / 2 / 3, rel=0.03)


def test_runs_are_drawn_once_per_resample_for_every_task_of_a_model():
    """A model's runs are one checkpoint each, used for every task: the run draw is shared by its
    tasks (run_rng keyed by the model only); its seeds are drawn per task."""
    rte, sst2 = confidence.task_columns()["rte"], confidence.task_columns()["sst2"]
    runs = np.array([0, 0, 1, 1])
    x = np.array([0.0, 0.0, 10.0, 10.0])  # seeds equal within a run: only the run draw moves w @ x
    a = confidence.seed_weights(runs, x, 1000, *confidence.draw_generators(0, "m", rte)) @ x
    b = confidence.seed_weights(runs, x, 1000, *confidence.draw_generators(0, "m", sst2)) @ x
    other = confidence.seed_weights(runs, x, 1000, *confidence.draw_generators(0, "n", rte)) @ x
    np.testing.assert_allclose(a, b)
    assert a.std() > 1 and not np.allclose(a, other)


def test_a_folder_per_distillation_run_is_read_as_that_run(tmp_path):
    """predictions/run<r>/<column>-seed<s>.parquet: one run per folder (flat files are one more run);
    the full-sample score is the mean over runs of each run's mean over seeds."""
    import pandas as pd

    y = np.arange(50) % 2
    wrong = lambda k: np.where(np.arange(50) < k, 1 - y, y)  # noqa: E731 - k examples wrong
    files = {"run0/rte-seed0": wrong(0), "run0/rte-seed1": wrong(10), "run1/rte-seed0": wrong(20),
             "run1/sst2-seed0": wrong(5), "run0/sst2-seed0": wrong(5)}
    for name, pred in files.items():
        (tmp_path / "m" / "predictions" / name).parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"idx": np.arange(50), "label": y, "prediction": pred}).to_parquet(
            tmp_path / "m" / "predictions" / f"{name}.parquet")
    splits, problems = confidence.load_splits({"m": tmp_path / "m"})
    assert problems == {} and list(splits["rte"].runs["m"]) == [0, 0, 1]
    assert splits["rte"].preds["m"].shape == (3, 50)
    full = confidence.resampled_columns(splits, resamples=0)["m"]
    assert full["rte"][0] == pytest.approx(((100 + 80) / 2 + 60) / 2)  # not (100 + 80 + 60) / 3
    assert full["sst2"][0] == pytest.approx(90.0)


def test_chance_is_the_majority_class_score_and_0_for_stsb():
    y = np.array([1, 1, 1, 0, 0])  # mrpc: always 1 -> F1 = 2·3/(2·3+2) = 75, accuracy 60
    splits = {"mrpc": _split("mrpc", y), "cola": _split("cola", y), "stsb": _split("stsb", [0.0, 1.5, 3.0, 4.5, 5.0]),
              "qqp": _split("qqp", 1 - y)}  # qqp: majority 0 -> accuracy 60, F1 0
    chance = confidence.chance_scores(splits)
    assert chance["mrpc"] == pytest.approx((75 + 60) / 2) and chance["cola"] == 0.0 and chance["stsb"] == 0.0
    assert chance["qqp"] == pytest.approx(30.0)


# ---------------------------------------------------------------- the user's own tasks
def _multi_label_case(n=300, labels=8, seed=2):
    """(N, L) truth with rare labels (one never on, one on in every row) and three score sets:
    informative, random, and rounded to 0.1 (many ties)."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, labels)) < np.linspace(0.01, 0.4, labels)).astype(float)
    y[:, 0], y[:, -1] = 0.0, 1.0
    good = np.clip(0.6 * y + 0.5 * rng.random((n, labels)), 0, 1)
    return y, np.stack([good, rng.random((n, labels)), np.round(good, 1)])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")
@pytest.mark.parametrize("metric", ["micro_f1", "macro_f1", "roc_auc"])
def test_vectorised_multi_label_metrics_equal_sklearn(metric):
    """micro-F1 and macro-F1 on the probabilities thresholded at 0.5 and the mean per-label ROC AUC
    on the probabilities, as distil.evaluation.metrics.compute (scikit-learn) on every resample, including
    resamples where rare labels are absent (left out of macro-F1 and ROC AUC)."""
    y, scores = _multi_label_case()
    n = len(y)
    W = np.vstack([np.ones(n), confidence.resample_counts(n, 4, np.random.default_rng(0)), np.r_[n, np.zeros(n - 1)]])
    got = confidence.resampled_metric(metric, W, y, scores, threshold=0.5)
    for b, w in enumerate(W.astype(int)):
        take = np.repeat(np.arange(n), w)
        want = [compute(metric, y[take], s[take] if metric == "roc_auc" else (s[take] >= 0.5).astype(int))
                for s in scores]
        np.testing.assert_allclose(got[b], want, atol=1e-9)  # NaN for ROC AUC on one example: no label has both classes


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")
def test_vectorised_multi_class_macro_f1_equals_sklearn():
    """Macro-F1 over the classes present in the resample; a prediction of a class absent from the
    labels (5) still costs its true class recall."""
    rng = np.random.default_rng(4)
    y = rng.choice(4, 300, p=[0.5, 0.3, 0.15, 0.05]).astype(float)
    preds = np.stack([y, np.where(rng.random(300) < 0.3, rng.integers(0, 4, 300), y), np.zeros(300), np.full(300, 5.0)])
    W = np.vstack([np.ones(300), confidence.resample_counts(300, 4, np.random.default_rng(1))])
    got = confidence.resampled_metric("macro_f1", W, y, preds)
    for b, w in enumerate(W.astype(int)):
        take = np.repeat(np.arange(300), w)
        np.testing.assert_allclose(got[b], [compute("macro_f1", y[take], p[take]) for p in preds], atol=1e-9)


def test_multi_label_micro_f1_interval_matches_the_binomial_answer():
    """Every example has one true label; A finds it always, B misses it (predicts nothing) on a
    known 100 of 1000. On a resample with K of those drawn, B's micro-F1 is 2(N-K)/(2N-K) and A's
    100, so the difference 100·K/(2N-K) is increasing in K ~ Binomial(1000, 0.1): its 95 %
    interval is that function of binom.ppf(0.025) and binom.ppf(0.975)."""
    from distil.config.tasks import Task

    n, k, labels = 1000, 100, 28
    task = Task(name="emo", data="x", problem_type="multi_label_classification", num_labels=labels,
                metrics=("micro_f1",))
    y = np.eye(labels)[np.arange(n) % labels]
    a = 0.9 * y + 0.05
    b = a.copy()
    b[:k] = 0.05  # nothing above the 0.5 threshold
    split = confidence.Split("emo", np.arange(n), y, {"a": a[None], "b": b[None]}, task=task, position=11)
    W_full = np.ones((1, n))
    assert confidence.resampled_metric("micro_f1", W_full, y, b[None])[0, 0] == pytest.approx(100 * 2 * 900 / 1900)
    scores = confidence.resampled_columns({"emo": split}, resamples=4000, seed=0)
    lo, hi = confidence.paired_interval(scores["a"]["emo"], scores["b"]["emo"])

    def f(K):
        return 100 * K / (2 * n - K)

    want_lo, want_hi = f(stats.binom.ppf([0.025, 0.975], n, k / n))
    assert lo == pytest.approx(want_lo, abs=0.15) and hi == pytest.approx(want_hi, abs=0.15)


def test_chance_of_a_multi_label_split_is_all_negative_when_no_label_is_in_half_the_rows():
    from distil.config.tasks import Task

    task = Task(name="emo", data="x", problem_type="multi_label_classification", num_labels=3)
    y = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 1], [0, 0, 1]], dtype=float)
    split = confidence.Split("emo", np.arange(4), y, task=task, position=11)
    assert confidence.chance_scores({"emo": split})["emo"] == pytest.approx(50 / 3)  # F1s 0, ROC AUC 50
    assert confidence.chance_rule(split).startswith("all-negative")
    y[:, 0] = [1, 1, 1, 0]  # label 0 now on in 3 of 4 rows: its majority is "on"
    split = confidence.Split("emo", np.arange(4), y, task=task, position=11)
    assert confidence.chance_rule(split) == "each label's majority: labels 0 always on, the rest off"
    micro = 100 * 2 * 3 / (4 + 6)  # predicted 4 positives, 6 true ones, 3 of them right
    assert confidence.chance_scores({"emo": split})["emo"] == pytest.approx((micro + 100 * (2 * 3 / 7) / 3 + 50) / 3)
