"""Successive halving (distil.search.halving) driven directly, the way Tune drives it: trials
report rung after rung, the scheduler's PAUSE / STOP / CONTINUE is applied, paused trials are
resumed through choose_trial_to_run and a new trial is proposed only while a slot is free (what
the searcher's gate does in distil.search.tuner.Searcher). No Ray cluster, no Tuner: seconds.

The same driver runs Ray's own ASHAScheduler (what make_scheduler built before) to show that the
position test below can fail: under ASHA the first trial of a sweep always reaches the last rung."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from scipy import stats

from distil.config.spec import load_spec
from distil.search.halving import SuccessiveHalving, promoted
from distil.search.tuner import make_scheduler
from distil.store.records import BUDGET, GAIN, PROXY, ProxyPoint, ResultsDir, Rung, TrialStatus
from tests.conftest import ROOT

CPU = dict(rungs=3, reduction_factor=3)  # sweeps/cpu.yaml's early_stopping


class Gate:
    """The searcher's side of the pause protocol (Searcher.on_pause/on_unpause)."""

    def __init__(self):
        self.paused: set[str] = set()

    def on_pause(self, trial_id):
        self.paused.add(trial_id)

    def on_unpause(self, trial_id):
        self.paused.discard(trial_id)


class Controller:
    """What the scheduler sees of Tune's TuneController: the trials, stop_trial, the searcher."""

    def __init__(self, scheduler):
        self.scheduler, self.trials, self.gate = scheduler, [], Gate()
        self.search_alg = SimpleNamespace(searcher=self.gate)

    def get_trials(self):
        return self.trials

    def stop_trial(self, trial):  # TuneController.stop_trial on a PAUSED or PENDING trial
        self.scheduler.on_trial_remove(self, trial)
        trial.status = Trial.TERMINATED


def run_sweep(scheduler, scores, rf: int = 3, max_concurrent: int = 1, n: int | None = None,
              on_report=None) -> dict:
    """Run trials 0, 1, ... (proposed in that order, each when a slot is free) whose score at rung k
    is scores[i][k]; `scores` may be a function of i, called when trial i is proposed (n trials).
    `on_report(i, k, score)` hears every rung report, as the searcher does. Returns per trial the
    rungs it reported at, the trials that reached the full protocol (their final report) and how
    many times a paused trial was started again."""
    n = len(scores) if n is None else n
    table = {} if callable(scores) else dict(enumerate(scores))  # trial -> its score per rung
    ctl = Controller(scheduler)
    done = {i: [] for i in range(n)}  # rungs reported, as progress.json would hold them
    full, restarts = set(), 0
    while True:
        active = [t for t in ctl.trials if t.status in (Trial.RUNNING, Trial.PENDING)
                  and t.trial_id not in ctl.gate.paused]
        if len(ctl.trials) < n and len(active) < max_concurrent:
            trial = SimpleNamespace(trial_id=str(len(ctl.trials)), status=Trial.PENDING, config={},
                                    evaluated_params={})
            if callable(scores):
                table[len(ctl.trials)] = scores(len(ctl.trials))  # the searcher proposes it now
            ctl.trials.append(trial)
            scheduler.on_trial_add(ctl, trial)
        chosen = scheduler.choose_trial_to_run(ctl)
        if chosen is not None:
            if chosen.status == Trial.PAUSED:
                restarts += 1
            chosen.status = Trial.RUNNING
        running = [t for t in ctl.trials if t.status == Trial.RUNNING]
        if not running:
            if all(t.status == Trial.TERMINATED for t in ctl.trials) and len(ctl.trials) == n:
                break
            assert chosen is not None or len(ctl.trials) < n, "the sweep hangs: nothing can run"
            continue
        trial = running[0]
        i = int(trial.trial_id)
        # A restarted trial reports its last rung again (distil.search.trial), then goes on.
        k = done[i][-1] if done[i] and trial.__dict__.pop("resumed", False) else len(done[i])
        if k == len(table[i]):  # past the last rung: the final report, never stopped
            assert scheduler.on_trial_result(ctl, trial, {"macro_score": 1.0}) == TrialScheduler.CONTINUE
            full.add(i)
            scheduler.on_trial_complete(ctl, trial, {})
            trial.status = Trial.TERMINATED
            continue
        if k == len(done[i]):
            done[i].append(k)
        if on_report is not None:
            on_report(i, k, table[i][k])
        decision = scheduler.on_trial_result(ctl, trial, {PROXY: table[i][k], BUDGET: rf ** k, "rung": k,
                                                          "training_iteration": len(done[i])})
        if decision == TrialScheduler.STOP:
            scheduler.on_trial_complete(ctl, trial, {})
            trial.status = Trial.TERMINATED
        elif decision == TrialScheduler.PAUSE:
            trial.status, trial.resumed = Trial.PAUSED, True
        assert sum(t.status == Trial.RUNNING for t in ctl.trials) <= max_concurrent
    return {"reached": {i: len(r) for i, r in done.items()}, "full": full, "restarts": restarts}


def _halving(tmp_path, n, **kw):
    return SuccessiveHalving(str(tmp_path), num_trials=n, **{**CPU, **kw})


def _asha(tmp_path, n):  # what make_scheduler built before: ASHA, one bracket, rungs at budget 1, 3, 9
    return ASHAScheduler(time_attr=BUDGET, metric=PROXY, mode="max", grace_period=1, reduction_factor=3,
                         max_t=27, brackets=1)


def _positions(make, tmp_path, sweeps=300, n=8, seed=0):
    """Per start position: in how many of `sweeps` pure-noise sweeps the trial proposed there
    reached the last rung, and the full protocol (its final report)."""
    rng = np.random.default_rng(seed)
    last, full = np.zeros(n, int), np.zeros(n, int)
    for _ in range(sweeps):
        out = run_sweep(make(tmp_path, n), rng.normal(size=(n, CPU["rungs"])).tolist())
        for i in range(n):
            last[i] += out["reached"][i] == CPU["rungs"]
            full[i] += i in out["full"]
    return last, full


def test_every_start_position_has_the_same_chance_to_reach_the_last_rung(tmp_path):
    """cpu.yaml's rungs (3, rf 3), 8 candidates, one at a time, pure-noise proxy scores over 300
    sweeps: the count per position of trials reaching the last rung (and the full protocol) fits a
    uniform multinomial (chi-square), and each position is within a 99.9 % binomial bound. Under
    ASHA the same test fails: trial 0 reaches the last rung in every sweep."""
    sweeps, n = 300, 8
    last, full = _positions(_halving, tmp_path, sweeps, n)
    assert (last == full).all()  # here the last rung decides one trial: it alone goes on to GLUE
    assert last.sum() == sweeps  # 8 -> 2 -> 1 -> 1: one per sweep
    assert stats.chisquare(last).pvalue > 0.001, last
    lo, hi = stats.binom.ppf([0.0005, 0.9995], sweeps, last.sum() / (sweeps * n))
    assert ((lo <= last) & (last <= hi)).all(), (last, lo, hi)

    asha_last, asha_full = _positions(_asha, tmp_path, sweeps, n)
    assert asha_full[0] == sweeps and stats.chisquare(asha_full).pvalue < 1e-6, asha_full


def test_a_trial_far_below_its_peers_never_reaches_the_last_rung(tmp_path):
    rng = np.random.default_rng(1)
    for _ in range(100):
        scores = rng.normal(size=(8, 3))
        weak = rng.integers(8)
        scores[weak] -= 10
        out = run_sweep(_halving(tmp_path, 8), scores.tolist())
        assert out["reached"][weak] == 1 and weak not in out["full"]


def test_every_rung_promotes_at_least_one_trial_and_each_rung_is_decided_once_on_all_its_scores(tmp_path):
    rng = np.random.default_rng(2)
    for n in (1, 2, 3, 5, 8, 12):
        sched = _halving(tmp_path, n)
        out = run_sweep(sched, rng.normal(size=(n, 3)).tolist())
        expected = n
        for k in range(3):
            assert len(sched.scores[k]) == expected  # decided on every trial that could reach the rung
            assert len(sched.decided[k]) == max(1, expected // 3)
            expected = len(sched.decided[k])
        assert len(out["full"]) == expected >= 1


@pytest.mark.parametrize("max_concurrent", [1, 2, 3])
def test_the_outcome_does_not_depend_on_the_order_nor_on_concurrency(tmp_path, max_concurrent):
    rng = np.random.default_rng(3)
    scores = rng.normal(size=(9, 3))
    first = run_sweep(_halving(tmp_path, 9, max_concurrent=max_concurrent), scores.tolist(),
                      max_concurrent=max_concurrent)
    order = rng.permutation(9)
    shuffled = run_sweep(_halving(tmp_path, 9, max_concurrent=max_concurrent), scores[order].tolist(),
                         max_concurrent=max_concurrent)
    assert {int(order[i]) for i in shuffled["full"]} == first["full"]
    assert {int(order[i]): r for i, r in shuffled["reached"].items()} == first["reached"]


def test_promoted_keeps_the_best_floor_n_over_rf_and_those_within_tolerance():
    scores = {"a": 60.0, "b": 59.5, "c": 50.0, "d": 49.0, "e": float("nan"), "f": 58.0}
    assert promoted(scores, 3) == {"a", "b"}  # floor(6/3) = 2
    assert promoted(scores, 3, tolerance=1.6) == {"a", "b", "f"}  # 58.0 is 1.5 below the cutoff 59.5
    assert promoted(scores, 3, tolerance=1.5) == {"a", "b"}  # "less than tolerance below" only
    assert promoted({"a": 1.0, "b": 1.0, "c": 0.0}, 3) == {"a", "b"}  # a tie with the cutoff is kept
    assert promoted({"x": float("nan")}, 3) == {"x"}  # at least one, whatever it scored
    assert promoted({}, 3) == set()


def test_a_tolerance_keeps_a_trial_within_it_of_the_cutoff(tmp_path):
    # 6 trials: rung 0 keeps 2 (the cutoff is 5.0); trial 2 is 0.4 below it
    scores = [[9, 3, 0], [5.0, 2, 0], [4.6, 1, 0], [1, 0, 0], [0, 0, 0], [-1, 0, 0]]
    assert run_sweep(_halving(tmp_path, 6), scores)["reached"][2] == 1
    sched = _halving(tmp_path, 6, tolerance=0.5)
    assert run_sweep(sched, scores)["reached"][2] == 2 and sched.decided[0] == {"0", "1", "2"}


def _rung(k, score):
    return Rung(rung=k, fraction=3.0 ** (k - 1), step=2 * (k + 1), tokens=100, distill={}, distill_seconds=1.0,
                rung_budget=3 ** k, proxy=ProxyPoint({"sst2": score}, proxy_score=score, proxy_seconds=1.0))


def test_a_restarted_scheduler_relearns_scores_and_ended_trials_from_the_results_dir(tmp_path):
    """Before the crash: a and b scored at rung 0 and waited; d was stopped, e failed before any
    rung. After it, a fresh scheduler (Tune keeps none) reads that and decides rung 0 when c
    reports: it keeps max(1, floor(4/3)) = 1 trial, a; c is stopped at once, and so are the
    restored b (PENDING) and, when it reports its rung again, nothing else."""
    out = ResultsDir(tmp_path)
    out.candidate("a").write_rungs([_rung(0, 60.0)])
    out.candidate("b").write_rungs([_rung(0, 50.0)])
    out.candidate("d").write_rungs([_rung(0, 40.0)])
    out.candidate("d").write_status(TrialStatus("stopped", "stopped early", rung=0, proxy_score=40.0))
    out.candidate("e").write_status(TrialStatus("failed", "RuntimeError: boom"))
    sched = SuccessiveHalving(str(tmp_path), num_trials=5, rungs=2, reduction_factor=3)
    ctl = Controller(sched)
    for tid in "abc":  # Tune restores a and b as PENDING, then the searcher proposes c
        ctl.trials.append(SimpleNamespace(trial_id=tid, status=Trial.PENDING))
        sched.on_trial_add(ctl, ctl.trials[-1])
    assert sched.scores[0] == {"a": 60.0, "b": 50.0, "d": 40.0} and sched.ended == {"d", "e"}
    assert sched.decided[0] is None  # c is still to come
    a, b, c = ctl.trials
    a.status = Trial.RUNNING  # a re-reports its rung (distil.search.trial): undecided, so it waits
    assert sched.on_trial_result(ctl, a, {PROXY: 60.0, BUDGET: 1, "rung": 0}) == TrialScheduler.PAUSE
    a.status = Trial.PAUSED
    c.status = Trial.RUNNING
    assert sched.on_trial_result(ctl, c, {PROXY: 55.0, BUDGET: 1, "rung": 0}) == TrialScheduler.STOP
    assert sched.decided[0] == {"a"} and b.status == Trial.TERMINATED  # b, still PENDING, was ended
    assert sched.choose_trial_to_run(ctl) is None  # c holds the slot until Tune has ended it
    sched.on_trial_complete(ctl, c, {})
    c.status = Trial.TERMINATED
    assert sched.choose_trial_to_run(ctl) is a and "a" not in ctl.gate.paused
    # a resumed: its rung again (continue), then rung 1, where it is alone: on to the full protocol
    a.status = Trial.RUNNING
    assert sched.on_trial_result(ctl, a, {PROXY: 60.0, BUDGET: 1, "rung": 0}) == TrialScheduler.CONTINUE
    assert sched.on_trial_result(ctl, a, {PROXY: 61.0, BUDGET: 3, "rung": 1}) == TrialScheduler.CONTINUE
    assert sched.on_trial_result(ctl, a, {"macro_score": 40.0}) == TrialScheduler.CONTINUE

    # A stopped trial that Tune restarts replays its rungs from disk: it is stopped again at once.
    replay = SuccessiveHalving(str(tmp_path), num_trials=5, rungs=2, reduction_factor=3)
    out.candidate("c").write_rungs([_rung(0, 55.0)])
    d = SimpleNamespace(trial_id="d", status=Trial.RUNNING)
    replay.on_trial_add(Controller(replay), d)
    assert replay.decided[0] == {"a"}  # every rung-0 score (a, b, c, d) and e's failure are on disk
    assert replay.on_trial_result(Controller(replay), d, {PROXY: 40.0, BUDGET: 1, "rung": 0}) == TrialScheduler.STOP


def test_a_rung_decides_on_the_gain_over_the_trials_own_init_live_and_after_a_restart(tmp_path):
    """Issue 21, point 3: a rule that starts low is judged on what distillation added. `first`
    starts at 20 and reaches 30 (+10); `every_other` starts at 33 and reaches 35 (+2): on the raw
    proxy the second would win, on the gain the first does, and a restarted scheduler agrees."""
    out = ResultsDir(tmp_path)
    sched = SuccessiveHalving(str(tmp_path), num_trials=2, rungs=2, reduction_factor=3)
    ctl = Controller(sched)
    for tid, raw, gain in (("low", 30.0, 10.0), ("high", 35.0, 2.0)):
        trial = SimpleNamespace(trial_id=tid, status=Trial.RUNNING)
        ctl.trials.append(trial)
        sched.on_trial_add(ctl, trial)
        decision = sched.on_trial_result(ctl, trial, {PROXY: raw, GAIN: gain, BUDGET: 1, "rung": 0})
        trial.status = Trial.PAUSED if decision == TrialScheduler.PAUSE else trial.status
        out.candidate(tid).write_rungs([replace(_rung(0, raw), init_proxy_score=raw - gain)])
    assert sched.decided[0] == {"low"} and decision == TrialScheduler.STOP  # "high" reported last: stopped
    restarted = SuccessiveHalving(str(tmp_path), num_trials=2, rungs=2, reduction_factor=3)
    restarted.on_trial_add(Controller(restarted), SimpleNamespace(trial_id="low", status=Trial.PENDING))
    assert restarted.scores[0] == {"low": 10.0, "high": 2.0} and restarted.decided[0] == {"low"}
    assert Rung.from_json(_rung(0, 30.0).to_json()).gain_over_init is None  # older rungs: the raw score


def test_cpu_yaml_sends_one_candidate_of_eight_to_the_full_protocol(tmp_path):
    """sweeps/cpu.yaml (8 candidates, 3 rungs, rf 3, tolerance 5.4: its proxy's noise): with scores
    further apart than the tolerance, 8 at rung 0 -> 2 at rung 1 -> 1 at rung 2 -> 1 fine-tuned on
    GLUE; trials within the tolerance of a rung's cutoff go on with it."""
    spec = load_spec(ROOT / "sweeps" / "cpu.yaml")
    sched = make_scheduler(spec, str(tmp_path))
    assert (sched.num_trials, sched.rungs, sched.rf, sched.tolerance) == (8, 3, 3, 5.4)
    rng = np.random.default_rng(4)
    apart = np.stack([rng.permutation(8) * 10.0 for _ in range(3)], axis=1)  # 10 points apart at each rung
    out = run_sweep(sched, apart.tolist())
    assert sorted(out["reached"].values()) == [1] * 6 + [2, 3] and len(out["full"]) == 1
    close = apart.copy()
    close[:, 0] = [50, 51, 52, 53, 54, 55, 56, 60]  # rung 0: the cutoff is 56; 51-55 are within 5.4 of it
    out = run_sweep(make_scheduler(spec, str(tmp_path / "close")), close.tolist())
    assert sum(r >= 2 for r in out["reached"].values()) == 7 and len(out["full"]) >= 1
