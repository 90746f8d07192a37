"""The confirmation stage's runner (distil.search.confirm) on hand-made results dirs: which candidates
are the finalists, and what a confirmation row's result.json holds. The stage itself runs in the
tiny sweep (tests/test_end_to_end.py)."""

import pytest

from distil.config.spec import SweepSpec
from distil.evaluation import scores
from distil.search.confirm import confirmation_result, finalists
from distil.search.context import SweepContext
from distil.search.train import CandidateParams, DistillJob
from distil.store.records import ConfirmationRun, ResultsDir
from tests.handmade import write_json, write_result


def _spec(top_k: int, objectives=("macro_score",)) -> SweepSpec:
    return SweepSpec.model_validate({
        "name": "confirm", "corpus": {"path": "unused"}, "glue": {"tasks": ["sst2", "wnli"]},
        "search": {"num_candidates": 8, "alpha_ce": {"low": 0.0, "high": 5.0}, "objectives": list(objectives),
                   "points_to_evaluate": [{"alpha_ce": 5.0}], "confirm": {"top_k": top_k}}})


def test_finalists_are_the_best_finished_candidates_by_the_first_objective_ties_by_trial_id(tmp_path):
    results = ResultsDir(tmp_path)
    # macro_score: the selection score the search ranked on; sst2 only to tell the objectives apart.
    for trial, macro, sst2 in [("t1", 50.0, 90.0), ("t2", 60.0, 10.0), ("t0", 60.0, 20.0), ("t3", 55.0, None)]:
        write_result(results.candidate(trial), {"kind": "student", "params": {},
                                                "objectives": {"macro_score": macro, "sst2": sst2}})
    write_json(results.candidate("t4").status_file, {"status": "stopped", "rung": 0, "proxy_score": 99.0})
    write_result(results.candidate("t5"), {"kind": "student", "params": {}, "objectives": {"macro_score": None}})
    results.candidate("t6").path.mkdir(parents=True)
    results.candidate("t6").result_file.write_text("{not json")  # corrupt: the leaderboard says so, not this
    results.candidate("t7").path.mkdir(parents=True)  # started, nothing written yet
    assert finalists(tmp_path, _spec(1)) == ["t0"]
    assert finalists(tmp_path, _spec(3)) == ["t0", "t2", "t3"]
    assert finalists(tmp_path, _spec(8)) == ["t0", "t2", "t3", "t1"]  # fewer than top_k finished
    assert finalists(tmp_path, _spec(2, objectives=("sst2",))) == ["t1", "t0"]
    assert finalists(tmp_path / "empty", _spec(2)) == []


def _runs(seeds_by_task: dict, shift: float) -> tuple:
    """finetune_and_evaluate-like dicts: accuracy = 50 + shift + seed, one per (task, seed)."""
    return tuple({"task": task, "seed": s, "scores": {"": {"accuracy": 50.0 + shift + s}}, "subset_splits": [],
                  "seconds": 2.0} for task, seeds in seeds_by_task.items() for s in seeds)


def test_a_confirmation_row_holds_every_run_and_scores_as_the_mean_over_runs_of_the_mean_over_seeds(tmp_path):
    spec = _spec(1)
    job = DistillJob(teacher_dir="t", corpus_dir="c", distill=spec.distill, storage=str(tmp_path / "train"))
    ctx = SweepContext(spec=spec, out=str(tmp_path), job=job, n_layers=3, profiles={"student-3L": {"size_mb": 1.0}},
                       provenance={"git": "abc"})
    seeds = {"sst2": [0, 1], "wnli": [0, 1, 2]}  # a large task on 2 seeds, a small one on 3
    runs = [ConfirmationRun(run=0, distill_seed=1, glue=_runs(seeds, 0.0), distill={"loss": 3.0, "step": 4},
                            distill_seconds=10.0, n_params=1000),
            ConfirmationRun(run=1, distill_seed=2, glue=_runs(seeds, 4.0), distill={"loss": 5.0, "step": 4},
                            distill_seconds=12.0, n_params=1000)]
    params = CandidateParams.from_values({**spec.search.fixed(), "alpha_ce": 5.0, "n_layers": 3})
    result = confirmation_result(ctx, "t0", params, runs)
    ctx.results.confirmation("t0").write_result(result)
    written = ctx.results.confirmations()[0].read_result().to_json()
    assert written["kind"] == "confirmation" and [r.name for r in ctx.results.confirmations()] == ["t0"]
    assert written["params"] == {**params.to_json(), "of": "t0", "distill_seeds": [1, 2], "seeds": [0, 1, 2]}
    assert [(r["run"], r["task"], r["seed"]) for r in written["glue"]] == [
        (d, t, s) for d in (0, 1) for t, ss in seeds.items() for s in ss]
    assert written["distill"] == {"loss": 4.0, "runs": [{"loss": 3.0, "step": 4}, {"loss": 5.0, "step": 4}]}
    assert (written["distill_seconds"], written["finetune_seconds"], written["n_params"]) == (22.0, 20.0, 1000)
    assert written["profile"] == {"size_mb": 1.0} and written["provenance"] == {"git": "abc"}
    # The leaderboard's reading of it (the extra "run" key changes nothing): run means 50.5 and 54.5 on
    # sst2, 51 and 55 on wnli.
    row = scores.row_from_result(written)
    assert row["sst2"] == pytest.approx((50.5 + 54.5) / 2) and row["wnli"] == pytest.approx((51 + 55) / 2)
    assert row["seeds"] == "0,1,2" and row["distill_loss"] == 4.0 and row["alpha_ce"] == 5.0
