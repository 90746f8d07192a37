"""The search without a cluster: sampler settings, the searcher's study (real Optuna, real SQLite),
and the early-stopping scheduler built from the spec (distil.search.halving)."""

from types import SimpleNamespace

import optuna
import pytest
import yaml
from ray.tune.schedulers import TrialScheduler

from distil.config.spec import load_spec
from distil.search.halving import SuccessiveHalving
from distil.search.sampler import RungTPESampler
from distil.search.tuner import make_sampler, make_scheduler, make_searcher, tune_space
from distil.store.records import BUDGET, PROXY, ProxyPoint, ResultsDir, Rung
from tests.conftest import ROOT


def _spec(tmp_path, **search):
    raw = yaml.safe_load((ROOT / "sweeps" / "smoke.yaml").read_text())
    raw["search"].pop("early_stopping")  # each test says whether it wants it
    raw["search"].update(search)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_spec(path)


def test_default_startup_tries_every_layer_rule_and_leaves_the_rest_to_tpe(tmp_path):
    spec = _spec(tmp_path, num_candidates=12)  # smoke.yaml searches 4 layer rules
    sampler = make_sampler(spec)
    assert isinstance(sampler, RungTPESampler)
    assert spec.search.n_startup_trials() == 4 and sampler._n_startup == 4  # 8 of 12 from TPE
    assert _spec(tmp_path, num_candidates=4).search.n_startup_trials() == 4  # never more than the sweep
    assert _spec(tmp_path, num_candidates=40).search.n_startup_trials() == 10  # num_candidates // 4
    assert _spec(tmp_path, num_candidates=12, layer_selection="first", points_to_evaluate=[]).search \
        .n_startup_trials() == 3  # no choice list: 3, the least a model is built on
    assert load_spec(ROOT / "sweeps" / "cpu.yaml").search.n_startup_trials() == 5  # 5 rules: 3 of 8 from TPE
    assert _spec(tmp_path, sampler={"n_startup_trials": 5}).search.n_startup_trials() == 5
    assert isinstance(make_sampler(_spec(tmp_path, sampler={"name": "random"})), optuna.samplers.RandomSampler)
    assert isinstance(make_sampler(_spec(tmp_path, sampler={"name": "gp"})), optuna.samplers.GPSampler)


def test_searched_depth_is_a_dimension_of_the_space(tmp_path):
    raw = yaml.safe_load((ROOT / "sweeps" / "smoke.yaml").read_text())
    raw["search"].pop("early_stopping")  # two objectives exclude it
    raw["student"]["n_layers"] = {"choices": [2, 3]}
    raw["search"]["objectives"] = ["macro_score", "n_params"]
    raw["search"]["points_to_evaluate"][0]["n_layers"] = 3
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    spec = load_spec(path)
    assert set(tune_space(spec)) == {"alpha_ce", "alpha_mlm", "alpha_cos", "temperature", "layer_selection", "n_layers"}
    assert tune_space(spec)["n_layers"].categories == [2, 3]
    searcher = make_searcher(spec, f"sqlite:///{tmp_path / 'optuna.db'}")
    assert searcher.metric == ["macro_score", "n_params"] and searcher.mode == ["max", "min"]


def test_study_records_who_proposed_each_trial_and_each_trial_once(tmp_path):
    """The paper defaults (points_to_evaluate[0]) are no trial (a reference row of their own); trial
    0 is the next point (enqueued), the next n_startup-1 (3) are quasi-random, then more while fewer
    than n_startup trials have a score at one fidelity, then TPE's; a trial stopped early is PRUNED
    with its rung scores; the stored study lists each trial once."""
    paper = {"alpha_ce": 5.0, "alpha_mlm": 2.0, "alpha_cos": 1.0, "temperature": 2.0, "layer_selection": "every_other"}
    second = {"alpha_ce": 1.0, "alpha_mlm": 0.5, "alpha_cos": 0.5, "temperature": 3.0, "layer_selection": "first"}
    spec = _spec(tmp_path, num_candidates=6, points_to_evaluate=[paper, second])
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    searcher = make_searcher(spec, url)
    for i in range(6):
        tid = f"t{i}"
        config = searcher.suggest(tid)
        assert set(config) == set(tune_space(spec))
        if i == 3:  # rung 0 passed, stopped by ASHA on rung 1: Tune gives that result to on_trial_complete only
            searcher.on_trial_result(tid, {PROXY: 40.0, "rung": 0, BUDGET: 1, "training_iteration": 1})
            searcher.on_trial_complete(tid, {PROXY: 38.0, "rung": 1, BUDGET: 3, "training_iteration": 2})
        else:
            searcher.on_trial_complete(tid, {"macro_score": 30.0 + i})
    study = optuna.load_study(study_name=spec.name, storage=url)
    trials = study.get_trials()
    assert [t.number for t in trials] == list(range(6))
    # Trial 4: three finished and one pruned, so no fidelity has 4 scores yet; trial 5: four finished.
    assert [t.user_attrs["proposed_by"] for t in trials] == ["points_to_evaluate", "qmc (startup)", "qmc (startup)",
                                                             "qmc (startup)", "qmc (few scores)", "tpe (final)"]
    assert {t.params["layer_selection"] for t in trials[:4]} == {"every_other", "distilbert", "first", "last"}
    assert [t.user_attrs["tune_trial_id"] for t in trials] == [f"t{i}" for i in range(6)]
    assert trials[0].params == second and all(t.params["alpha_ce"] != 5.0 for t in trials)
    assert trials[3].state == optuna.trial.TrialState.PRUNED and trials[3].intermediate_values == {0: 40.0, 1: 38.0}
    assert [t.value for t in trials if t.state == optuna.trial.TrialState.COMPLETE] == [30.0, 31.0, 32.0, 34.0, 35.0]


def _trial(tid, status="RUNNING"):
    return SimpleNamespace(trial_id=tid, status=status, config={}, evaluated_params={})


def test_scheduler_stops_below_the_rung_cutoff_once_the_rung_is_full_and_relearns_rungs_after_a_restart(tmp_path):
    """The spec's early stopping builds successive halving over all num_candidates trials
    (tests/test_halving.py drives it through whole sweeps); after a driver restart a fresh
    scheduler learns the rung scores recorded before from progress.json."""
    spec = _spec(tmp_path, num_candidates=3, early_stopping={"rungs": 3, "reduction_factor": 3, "tolerance": 0.5})
    assert spec.search.early_stopping.fractions() == pytest.approx([1 / 9, 1 / 3, 1])
    sched = make_scheduler(spec, str(tmp_path))
    assert isinstance(sched, SuccessiveHalving)
    assert (sched.num_trials, sched.rungs, sched.rf, sched.tolerance) == (3, 3, 3, 0.5)
    for tid in ("a", "b", "c"):
        sched.on_trial_add(None, _trial(tid))
    # The first two wait (paused) for the third: a rung is decided on all of its trials.
    assert sched.on_trial_result(None, _trial("a"), {PROXY: 60.0, BUDGET: 1, "rung": 0}) == TrialScheduler.PAUSE
    assert sched.on_trial_result(None, _trial("b"), {PROXY: 50.0, BUDGET: 1, "rung": 0}) == TrialScheduler.PAUSE
    assert sched.on_trial_result(None, _trial("c"), {PROXY: 59.6, BUDGET: 1, "rung": 0}) == TrialScheduler.CONTINUE
    assert sched.decided[0] == {"a", "c"}  # c is 0.4 below the cutoff 60.0, within the tolerance
    # The final report (full GLUE) has no rung budget: never stopped for it.
    assert sched.on_trial_result(None, _trial("a"), {"macro_score": 40.0}) == TrialScheduler.CONTINUE

    # After a restart, a fresh scheduler learns the scores recorded before from progress.json.
    for tid, score in (("a", 60.0), ("b", 50.0)):
        rung = Rung(rung=0, fraction=1 / 9, step=2, tokens=100, distill={}, distill_seconds=1.0, rung_budget=1,
                    proxy=ProxyPoint({"sst2": score}, proxy_score=score, proxy_seconds=1.0))
        ResultsDir(tmp_path).candidate(tid).write_rungs([rung])
    fresh = make_scheduler(_spec(tmp_path, num_candidates=3, early_stopping={"rungs": 3}), str(tmp_path))
    fresh.on_trial_add(None, _trial("c"))
    assert fresh.on_trial_result(None, _trial("c"), {PROXY: 55.0, BUDGET: 1, "rung": 0}) == TrialScheduler.STOP
    assert fresh.decided[0] == {"a"}
    assert make_scheduler(_spec(tmp_path), str(tmp_path)) is None  # no early stopping: no scheduler
