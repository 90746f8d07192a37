"""Successive halving on a real Ray Tune run (Ray 2.60): PAUSE and resume of a *function* trainable
with no Tune checkpoint, with `max_concurrent_trials=1` and the sweep's Searcher (OptunaSearch on a
real SQLite study, with the RungTPESampler) proposing a fixed number of trials.

The trainable is a stand-in for distil.search.trial.run_candidate with the same restart contract:
it keeps its rungs in a file (progress.json there), and when Tune starts it again it reports its
last rung once more, then goes on with the rungs not done. It only sleeps: no Ray Train, no
distillation. 41-45 s on 2 cores (a Ray start and up to seven trial actors), hence slow."""

from __future__ import annotations

import json
import os
import time

import optuna
import pytest

from distil.search.halving import SuccessiveHalving, promoted
from distil.search.sampler import RungTPESampler
from distil.search.tuner import Searcher
from distil.store.records import BUDGET, PROXY

RUNGS, RF, N = 2, 2, 4


def _trainable(config):
    from ray import tune

    work = config["work"]
    tid = tune.get_context().get_trial_id()
    path = os.path.join(work, f"{tid}.json")
    done = json.load(open(path)) if os.path.exists(path) else []

    def log(event):
        with open(os.path.join(work, "events.jsonl"), "a") as f:
            f.write(json.dumps({"t": time.time(), "trial": tid, "event": event}) + "\n")

    log(f"start {len(done)}")
    if done:
        tune.report({PROXY: done[-1], BUDGET: RF ** (len(done) - 1), "rung": len(done) - 1})
        log("continued")
    for k in range(len(done), RUNGS):
        time.sleep(0.3)  # "distilling": a second trial running now would overlap this
        done.append(round(config["x"] * 10 + k, 6))
        with open(path, "w") as f:
            json.dump(done, f)
        log(f"rung {k}")
        tune.report({PROXY: done[-1], BUDGET: RF ** k, "rung": k})
        log("continued")
    tune.report({"macro_score": config["x"]})
    log("final")


@pytest.mark.slow
def test_tune_pauses_and_resumes_function_trials_one_at_a_time(tmp_path):
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray import tune

    work = tmp_path / "work"
    work.mkdir()
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    space = {"x": tune.uniform(0.0, 1.0)}
    sampler = RungTPESampler(Searcher.convert_search_space(space), n_startup_trials=2, seed=0)
    searcher = Searcher(space=space, metric="macro_score", mode="max", sampler=sampler, study_name="halving",
                        storage=optuna.storages.RDBStorage(url), n_startup_trials=2, sampler_name="tpe")
    scheduler = SuccessiveHalving(str(tmp_path / "results"), num_trials=N, rungs=RUNGS, reduction_factor=RF)
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR")
    try:
        grid = tune.Tuner(
            tune.with_parameters(_trainable),
            param_space={"work": str(work)},
            tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=N,
                                        max_concurrent_trials=1),
            run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), name="exp", verbose=0),
        ).fit()
    finally:
        ray.shutdown()

    assert len(grid) == N and grid.num_errors == 0
    events = [json.loads(line) for line in (work / "events.jsonl").read_text().splitlines()]
    scores = {e["trial"]: json.loads((work / f"{e['trial']}.json").read_text()) for e in events}
    rung0 = {t: s[0] for t, s in scores.items()}
    rung1 = {t: s[1] for t, s in scores.items() if len(s) > 1}
    # Decided on the whole rung: the best 2 of 4 at rung 0, the best 1 of those 2 at rung 1.
    assert set(rung1) == promoted(rung0, RF)
    (winner,) = promoted(rung1, RF)
    finals = [e["trial"] for e in events if e["event"] == "final"]
    assert finals == [winner]
    assert {r.metrics["trial_id"] for r in grid if r.metrics.get("macro_score") is not None} == {winner}

    # Every trial ran rung 0 before any trial went on to rung 1 (it was paused, not stopped or
    # continued), and the promoted ones were started again, continuing from their last rung.
    first_rung1 = min(i for i, e in enumerate(events) if e["event"] == "rung 1")
    assert sorted(e["trial"] for e in events[:first_rung1] if e["event"] == "rung 0") == sorted(scores)
    restarts = [e["trial"] for e in events if e["event"] == "start 1"]
    last_at_rung0 = [e["trial"] for e in events if e["event"] == "rung 0"][-1]  # decided the rung: no pause
    assert set(restarts) <= set(rung1) and set(rung1) - set(restarts) <= {last_at_rung0}
    starts0 = [e["trial"] for e in events if e["event"] == "start 0"]
    assert sorted(starts0) == sorted(scores)  # a resumed trial never redid rung 0

    # One at a time: a trial's work (from its start to its next report) never overlaps another's.
    busy, open_since = [], {}
    for e in events:
        if e["event"].startswith("start") or e["event"] == "continued":
            open_since[e["trial"]] = e["t"]
        elif e["trial"] in open_since:
            busy.append((open_since.pop(e["trial"]), e["t"], e["trial"]))
    busy.sort()
    for (s0, e0, t0), (s1, e1, t1) in zip(busy, busy[1:]):
        assert s1 >= e0 - 0.05 or t0 == t1, f"{t0} and {t1} ran at once"

    # The searcher proposed all N trials, one per free slot, and the study holds each rung's score
    # once (a resumed trial's repeated report is not recorded twice).
    study = optuna.load_study(study_name="halving", storage=url)
    assert len(study.trials) == N
    # Proposed while the others waited paused at rung 0: the last one by TPE on their rung-0 scores.
    assert [t.user_attrs["proposed_by"] for t in study.trials] == ["qmc (startup)"] * 2 + ["qmc (few scores)",
                                                                                          "tpe (rung 0)"]
    by_id = {t.user_attrs["tune_trial_id"]: t for t in study.trials}
    for tid, s in scores.items():
        assert list(by_id[tid].intermediate_values.values()) == s
        expected = optuna.trial.TrialState.COMPLETE if tid == winner else optuna.trial.TrialState.PRUNED
        assert by_id[tid].state == expected
