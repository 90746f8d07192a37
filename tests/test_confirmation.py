"""Does the confirmation stage keep its claims honest (issue 22, points 2, 3 and 5)? Simulated sweeps with
a known truth taken through the real code: the leaderboard's multi-bootstrap
(distil.evaluation.confidence.resampled_columns), the confirmation's statistics
(distil.evaluation.confirmation: runs as models, pooled between-run variance, max-T, A/A) and the
headline's words (distil.report.summary.confirmation_lines).

A simulated sweep (as tests/test_intervals.py's, whose latent model and per-run shifts it reuses): an
sst2-like task (872 validation examples, 400 selection rows) and an rte-like one (277 and 200), every
candidate and the paper defaults equally good (true accuracy 90 % and 65 %). The search stage scores
11 candidates once each (one distillation run, one fine-tuning seed) on the selection rows; the top
`top_k` go to the confirmation, where each finalist and the paper defaults are distilled twice (a
distillation-run shift of N(0, 0.5) points on sst2 and N(0, 1) on rte: a macro SD of ~0.56, the
"~1 point" reruns move a candidate in the issue) and fine-tuned with 3 seeds (seed shifts N(0, 1) and
N(0, 4) points), scored on the validation rows. Example i is right when
sqrt(0.45)·d_i + sqrt(0.35)·u_i + sqrt(0.2)·e_i < Phi^-1(accuracy): d the example's difficulty (shared
by every model: pairing), u the pattern of the run, half of it the configuration's own (shared by its
distillation runs, on the same rows), e the seed's.

Measured (seed 0, 500 sweeps): see the prints; the bars are the issue's: "better than the paper
defaults" in <= 5 % of sweeps with 11 equally good candidates, A/A not distinguishable in >= 95 %.
The control: the search-stage claim the headline made before the confirmation (the best of the 11 on
the validation rows, one run each, against the paper defaults' one run, plain paired interval) fires in
well over 5 %, so the check can fail.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from distil.evaluation import confidence
from distil.evaluation.confirmation import from_splits
from distil.evaluation.scores import macro_score
from distil.report.summary import confirmation_lines

VALIDATION = {"sst2": 872, "rte": 277}
SELECTION = {"sst2": 400, "rte": 200}
ACCURACY = {"sst2": 0.90, "rte": 0.65}  # every candidate's and the paper defaults' truth
SEED_SD = {"sst2": 1.0, "rte": 4.0}  # per fine-tuning run, points
RUN_SD = {"sst2": 0.5, "rte": 1.0}  # per distillation run, points
DIFFICULTY, PATTERN, OWN = 0.45, 0.35, 0.5  # latent shares; OWN: the configuration's share of a run's pattern
CANDIDATES, SEEDS, RUNS = 11, 3, 2
SWEEPS, RESAMPLES = 500, 500


def labels(n: int) -> np.ndarray:
    return (np.arange(n) % 5 < 2).astype(float)


def predictions(rng, d, u_config, runs: int, seeds: int, column: str, run_sd: dict = RUN_SD,
                seed_sd: dict = SEED_SD, drop: float = 0.0) -> np.ndarray:
    """(sweeps, runs·seeds, n) predictions of one configuration per sweep (module docstring), run-major;
    `drop`: accuracy points taken off its last run (a broken rerun)."""
    sweeps, _, n = d.shape
    u_run = rng.standard_normal((sweeps, runs, 1, n))
    u = np.sqrt(OWN) * u_config[:, None] + np.sqrt(1 - OWN) * u_run  # (sweeps, runs, 1, n)
    e = rng.standard_normal((sweeps, runs, seeds, n))
    shift = (rng.normal(0, run_sd[column] / 100, (sweeps, runs, 1, 1))
             + rng.normal(0, seed_sd[column] / 100, (sweeps, runs, seeds, 1)))
    shift[:, -1] -= drop / 100
    latent = np.sqrt(DIFFICULTY) * d[:, None] + np.sqrt(PATTERN) * u + np.sqrt(1 - DIFFICULTY - PATTERN) * e
    y = labels(n)
    accuracy = np.clip(ACCURACY[column] + shift, 0.01, 0.99)  # a shifted accuracy stays an accuracy
    return np.where(latent < norm.ppf(accuracy), y, 1 - y).reshape(sweeps, runs * seeds, n)


def selection_scores(rng, sweeps: int) -> np.ndarray:
    """(sweeps, CANDIDATES) search-stage macro of each candidate on the selection rows (one run, one seed)."""
    per_task = []
    for column, n in SELECTION.items():
        d = rng.standard_normal((sweeps, 1, n))
        right = np.stack([predictions(rng, d, rng.standard_normal((sweeps, 1, n)), 1, 1, column)[:, 0]
                          == labels(n) for _ in range(CANDIDATES)], 1)
        per_task.append(100 * right.mean(-1))
    return np.mean(per_task, 0)


def confirmations(top_k: int, rng, sweeps: int = SWEEPS, run_sd: dict = RUN_SD, seed_sd: dict = SEED_SD,
                  drop: float = 0.0) -> list:
    """The Confirmation (distil.evaluation.confirmation.from_splits, as the leaderboard makes it) of each of
    `sweeps` simulated sweeps: selection of the top_k of 11 candidates on the selection rows, then the
    finalists and the paper defaults distilled RUNS times, SEEDS seeds each; `drop`: the paper defaults'
    second run is that many accuracy points worse (a broken rerun)."""
    finalists = np.argsort(-selection_scores(rng, sweeps), 1)[:, :top_k]  # who goes on: any, they are equal
    rows = ["pd"] + [f"f{j}" for j in range(top_k)]
    preds = {}
    for column, n in VALIDATION.items():
        d = rng.standard_normal((sweeps, 1, n))
        for row in rows:
            preds[column, row] = predictions(rng, d, rng.standard_normal((sweeps, 1, n)), RUNS, SEEDS, column,
                                             run_sd, seed_sd, drop if row == "pd" else 0.0)
    out = []
    for k in range(sweeps):
        splits = {c: confidence.Split(c, np.arange(n), labels(n), {r: preds[c, r][k] for r in rows},
                                      runs={r: np.repeat(np.arange(RUNS), SEEDS) for r in rows})
                  for c, n in VALIDATION.items()}
        picked = {f"f{j}": f"candidate {finalists[k, j]}" for j in range(top_k)}
        out.append(from_splits(splits, "pd", picked, macro_score, resamples=RESAMPLES))
    return out


def rates(confirmed: list) -> tuple[float, float]:
    """(share of sweeps whose headline says "better than the paper defaults", share with the A/A pair not
    distinguishable), through the headline's words (distil.report.summary.confirmation_lines)."""
    lines = [confirmation_lines(c.to_json()) for c in confirmed]
    better = np.mean([any("better than the paper defaults" in ln for ln in ls) for ls in lines])
    return float(better), float(np.mean([not c.aa_distinguishable for c in confirmed]))


@pytest.mark.parametrize("top_k", [pytest.param(1, marks=pytest.mark.slow), 2])
def test_eleven_equal_candidates_are_rarely_confirmed_better_and_a_a_pairs_rarely_differ(top_k):
    """The issue's bars: 11 equally good candidates, selection then confirmation of the top_k: the headline
    says "better than the paper defaults" in <= 5 % of sweeps; the paper defaults' A/A pair is not
    distinguishable in >= 95 %. top_k 2 (the fast tier) exercises the max-T critical value."""
    confirmed = confirmations(top_k, np.random.default_rng(top_k))
    better, aa_same = rates(confirmed)
    print(f"top_k {top_k}: 'better than the paper defaults' in {better:.1%} of {SWEEPS} sweeps; A/A not "
          f"distinguishable in {aa_same:.1%}; mean pooled sigma_run {np.mean([c.sigma_run for c in confirmed]):.2f} "
          f"(true shift SD ~0.56); mean max-T critical {np.nanmean([c.critical for c in confirmed]):.2f}")
    assert better <= 0.05, better
    assert aa_same >= 0.95, aa_same


@pytest.mark.slow
def test_when_distillation_reruns_dominate_the_noise_the_claim_still_holds_its_rate():
    """The regime where a full GLUE macro sits (large validation sets, little example noise): run shifts of
    4 / 8 points against seed shifts of 1 / 4. The run variance then has few degrees of freedom (3 rows x 1),
    which the Satterthwaite t widening must make up for: "better" in <= 5 % with top_k 2 (9 % with normal
    critical values, as a review measured before the widening). The A/A, judged by 2 degrees of freedom
    (the finalists' reruns), is not distinguishable in ~92 % here, below its 95 %: Satterthwaite's plug-in
    nu grows when the run variance happens to be estimated low, so the interval is too narrow exactly then
    (a known small-sample bias); the bar here is 90 %, and the docs say so."""
    confirmed = confirmations(2, np.random.default_rng(11), sweeps=300, run_sd={"sst2": 4.0, "rte": 8.0},
                              seed_sd={"sst2": 1.0, "rte": 4.0})
    better, aa_same = rates(confirmed)
    print(f"run-dominated, top_k 2: 'better' in {better:.1%} of 300 sweeps; A/A not distinguishable in {aa_same:.1%}")
    assert better <= 0.05, better
    assert aa_same >= 0.90, aa_same


def test_a_broken_rerun_of_the_paper_defaults_is_caught_by_the_a_a_check():
    """The A/A check can fire: the paper defaults' second distillation run 12 accuracy points worse on both
    tasks (a rerun that went wrong) comes out distinguishable in most sweeps, judged by the finalists'
    reruns, and then no finalist is called better: the headline says the protocol is too noisy to rank."""
    confirmed = confirmations(2, np.random.default_rng(5), sweeps=100, drop=12.0)
    caught = [c for c in confirmed if c.aa_distinguishable]
    print(f"broken rerun: A/A distinguishable in {len(caught)} of 100 sweeps")
    assert len(caught) >= 80
    for c in caught:
        text = " ".join(confirmation_lines(c.to_json()))
        assert "too noisy to rank" in text and "better than the paper defaults" not in text


def test_the_search_stage_claim_without_a_confirmation_fires_too_often():
    """The control that shows what the confirmation replaces: the best of 11 equally good candidates picked on
    the same validation rows it is then compared on (one run and seed each, the plain paired interval: the
    headline before the confirmation stage) is 'better at 95 %' than the paper defaults in far more than 5 %."""
    rng = np.random.default_rng(7)
    sweeps = 200
    models = ["pd"] + [f"c{j}" for j in range(CANDIDATES)]
    splits = {}
    for column, n in VALIDATION.items():
        d = rng.standard_normal((sweeps, 1, n))
        preds = {}
        for m in models:
            p = predictions(rng, d, rng.standard_normal((sweeps, 1, n)), 1, 1, column)
            preds.update({f"{k}/{m}": p[k] for k in range(sweeps)})
        splits[column] = confidence.Split(column, np.arange(n), labels(n), preds)
    resampled = confidence.resampled_columns(splits, RESAMPLES)
    full = confidence.resampled_columns(splits, 0)
    fired = 0
    for k in range(sweeps):
        best = max(models[1:], key=lambda m: float(macro_score(full[f"{k}/{m}"])[0]))
        lo, _ = confidence.paired_interval(macro_score(resampled[f"{k}/{best}"]), macro_score(resampled[f"{k}/pd"]))
        fired += lo > 0
    print(f"search-stage claim: 'better at 95 %' in {fired / sweeps:.1%} of {sweeps} sweeps")
    assert fired / sweeps > 0.08


# ---------------------------------------------------------------- the leaderboard reads a confirmation stage
def _confirmation_row(out, name: str, wrong: list[float], seed: int) -> None:
    """confirmation/<name>/ as the stage writes it: one predictions/run<r>/ per distillation run (error rate
    wrong[r] on every split, 3 seeds on the small tasks), result.json with every run's fine-tuning dicts."""
    import json
    import shutil

    from tests.handmade import DEFAULT_PARAMS, labels_for, noisy, write_json, write_row
    from tests.test_leaderboard import SIZES, SMALL

    data = {c: labels_for(c, n) for c, n in SIZES.items()}
    row, glue = out / "confirmation" / name, []
    for r, w in enumerate(wrong):
        scratch = out.parent / f"scratch-{name}-{r}"
        seeds = {c: [0, 1, 2] if c in SMALL else [0, 1] for c in data}
        preds = {c: {s: noisy(y, w, seed=seed + 100 * r + 10 * s + len(c)) for s in seeds[c]}
                 for c, (_, y) in data.items()}
        write_row(scratch, "confirmation", preds, data, DEFAULT_PARAMS)
        (row / "predictions").mkdir(parents=True, exist_ok=True)
        shutil.move(scratch / "predictions", row / "predictions" / f"run{r}")
        glue += [{**g, "run": r} for g in json.loads((scratch / "result.json").read_text())["glue"]]
    write_json(row / "result.json", {"kind": "confirmation", "params": {**DEFAULT_PARAMS, "of": name}, "glue": glue})


def test_the_leaderboard_makes_the_claim_on_the_confirmation_and_labels_the_search_as_selection(tmp_path):
    """A hand-made sweep with a confirmation stage: c-good rerun twice (error 5 % on every split) against
    the paper defaults rerun twice (20 %): the confirmation rows are on the board with the mean over their
    runs, their delta_vs_default is the confirmation's (simultaneous) comparison, the headline makes the
    claim on them, shows the A/A line, and calls the search's numbers selection scores."""
    from distil.report import leaderboard
    from distil.report.summary import headline
    from tests.test_leaderboard import QUALITY, _sweep

    out = _sweep(tmp_path / "sweep", QUALITY)
    _confirmation_row(out, "paper_defaults", [0.20, 0.20], seed=7)
    _confirmation_row(out, "c-good", [0.05, 0.06], seed=9)
    board = leaderboard.load(out, resamples=300)
    rows = board.frame.set_index("model")
    assert rows.loc["confirm-c-good", "kind"] == "confirmation" and board.bootstrap["excluded"] == {}
    conf = board.confirmation
    (only,) = conf["comparisons"]
    assert only["model"] == "confirm-c-good" and only["of"] == "c-good" and only["verdict"] == "better"
    assert rows.loc["confirm-c-good", "delta_vs_default"] == pytest.approx(only["delta"])
    assert rows.loc["confirm-c-good", "delta_vs_default_lo"] == pytest.approx(only["lo"])
    assert only["delta"] == pytest.approx(rows.loc["confirm-c-good", "macro_score"]
                                          - rows.loc["confirm-paper_defaults", "macro_score"])
    assert conf["runs"] == {"confirm-paper_defaults": 2, "confirm-c-good": 2} and conf["aa"] is not None
    text = headline(board)
    assert "`confirm-c-good` (c-good)" in text and "better than the paper defaults at 95 %" in text
    assert "A/A: the paper defaults' distillation run 0 − run 1" in text
    assert "search stage (selection scores): best student" in text
    assert text.index("confirmation (") < text.index("search stage")
    assert board.best_student()["model"] == "c-good"  # the search's best: confirmation rows are not candidates


def test_without_a_confirmation_a_search_stage_win_says_it_is_not_confirmed(tmp_path):
    """No confirmation stage: a best student 'better at 95 %' than the paper defaults on the search's own
    rows is marked as not confirmed, and the headline never says 'better than the paper defaults'."""
    from distil.report import leaderboard
    from distil.report.summary import headline
    from tests.test_leaderboard import _sweep

    board = leaderboard.load(_sweep(tmp_path, {"teacher": 0.1, "paper_defaults": 0.25, "c-good": 0.05}), resamples=300)
    text = headline(board)
    assert "better at 95 %" in text and "not confirmed" in text and "better than the paper defaults" not in text
    assert board.confirmation == {}
