"""Early stopping that does not favour early trials: synchronous successive halving on Ray Tune.

Each trial reports its proxy score after every rung (`proxy_score`, `rung_budget` = rf^k, `rung` =
k; distil.search.trial) and its gain over the undistilled student of its own layer rule
(`proxy_gain_over_init`), which is what a rung decides on (`rung_score`). A rung is *decided* once
every trial that can reach it has reported there or ended: rung 0 waits for all `num_trials`
candidates of the sweep, rung k+1 for the trials rung k promoted. The decision keeps the best max(1,
floor(n / rf)) of the n scores at the rung (Jamieson & Talwalkar 2016, "Non-stochastic Best Arm
Identification and Hyperparameter Optimization"; the successive-halving step of Li et al. 2018,
"Hyperband"), plus every trial less than `tolerance` points below the last of them; the others are
stopped. Until its rung is decided a trial is PAUSED (its actor ends; it holds no CPU), and the
trials that rung promotes are resumed one slot at a time.

Why this and not ASHA (Li et al. 2020) with a deferred decision: ASHA decides each trial against
the scores recorded *so far* at its rung. With trials run one at a time the first trial at a rung
meets an empty rung and always continues, so the paper defaults (trial 0) reached the full protocol
in every simulated sweep. Waiting until a rung holds rf scores still decides the first rf trials
among themselves and later ones against a fuller rung, so the odds still depend on position.
Deciding once, on the whole rung, is the only rule whose outcome is a function of the set of
scores alone: under exchangeable scores every position has the same chance, and a resumed sweep
re-derives every past decision exactly from the scores on disk. What it costs: no trial goes past
rung 0 before every candidate has been proposed, so the sampler learns from rung-0 scores
(distil.search.sampler models them) and a paused trial keeps its Train checkpoint on disk until
its rung is decided.

Mechanics on Tune (read in ray/tune/execution/tune_controller.py and schedulers/hyperband.py, Ray
2.60; checked by tests/test_halving_tune.py): PAUSE ends a function trainable's actor; resumed, the
trainable starts again from the top, reports its last recorded rung once more (so the scheduler
decides on it) and continues its Ray Train run from the Train checkpoint. Losers waiting PAUSED are
ended with `stop_trial`, as Tune's HyperBandScheduler does. The searcher hears of pauses
(`on_pause`/`on_unpause`, the protocol of Tune's BOHB) so that a paused trial frees its slot under
`max_concurrent` for the next proposal. The scheduler keeps no state across a driver restart
(Tune does not save it): it re-learns the rung scores and ended trials from the results dir.
"""

from __future__ import annotations

import math

from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from distil.store.records import BUDGET, GAIN, PROXY, ResultsDir


def rung_score(proxy_score: float, gain_over_init: float | None) -> float:
    """What a rung decides on: the proxy score's gain over the undistilled student of the trial's
    own layer rule, so that a rule is not stopped for where it starts (issue 21, point 3: at rung 0
    the raw proxy mostly ranks the inits); the raw proxy score where the gain is unknown."""
    return proxy_score if gain_over_init is None else gain_over_init


def promoted(scores: dict[str, float], reduction_factor: int, tolerance: float = 0.0) -> set[str]:
    """The trials one successive-halving decision keeps, from `scores` (trial id -> proxy score,
    higher is better) of every trial at a rung: the best max(1, floor(n / rf)) and every trial
    less than `tolerance` score points below the last of them (ties with it are kept). NaN
    scores rank last. Empty `scores` keep nothing. Depends on the set of scores only, never on the
    order they arrived in."""
    if not scores:
        return set()
    clean = {t: (s if s is not None and not math.isnan(s) else -math.inf) for t, s in scores.items()}
    keep = max(1, len(clean) // reduction_factor)
    cutoff = sorted(clean.values(), reverse=True)[keep - 1]
    return {t for t, s in clean.items() if s >= cutoff or cutoff - s < tolerance}


class SuccessiveHalving(TrialScheduler):
    """Synchronous successive halving over `rungs` rungs for a sweep of `num_trials` trials, at
    most `max_concurrent` of them running (see the module docstring for the rule and why).

    results_dir: where the trials' progress files are (re-read once after a driver restart).
    reduction_factor: rf; a rung keeps max(1, floor(n / rf)) of its n trials.
    tolerance: score points; a trial less than this below a rung's cutoff is kept too.
    A result without `rung_budget` (a trial's final report) is never stopped."""

    # A trial must be decided on each rung's result on its own, not on a batch of them.
    _supports_buffered_results = False

    def __init__(self, results_dir: str, num_trials: int, rungs: int, reduction_factor: int,
                 tolerance: float = 0.0, max_concurrent: int = 1):
        super().__init__()
        self._metric = PROXY
        self._results, self.num_trials, self.rungs, self.rf = results_dir, num_trials, rungs, reduction_factor
        self.tolerance, self.max_concurrent = tolerance, max_concurrent
        self.scores: list[dict[str, float]] = [{} for _ in range(rungs)]  # rung -> trial id -> proxy score
        self.decided: list[set[str] | None] = [None] * rungs  # rung -> the trials it promoted, once decided
        self.ended: set[str] = set()  # trials that will report nothing more
        self._trials: dict[str, Trial] = {}
        self._paused: set[str] = set()  # told to pause and not resumed since (Tune may still show RUNNING)
        self._learned = False

    # ------------------------------------------------------------------ the rule
    def verdict(self, trial_id: str, rung: int) -> bool | None:
        """Whether `trial_id` passed `rung`: True (promoted), False (stopped), None (undecided)."""
        kept = self.decided[rung]
        return None if kept is None else trial_id in kept

    def fate(self, trial_id: str) -> bool | None:
        """Where a trial stands: False once a rung it reached stopped it, else the verdict of the
        highest rung it has a score at (True: it may go on), None with no score or undecided."""
        reached = [k for k in range(self.rungs) if trial_id in self.scores[k]]
        if not reached:
            return None
        if any(self.verdict(trial_id, k) is False for k in reached):
            return False
        return self.verdict(trial_id, reached[-1])

    def _decidable(self, rung: int) -> bool:
        if self.decided[rung] is not None:
            return False
        if rung == 0:  # every candidate of the sweep has a score here or will never report one
            return len(self.scores[0]) + len(self.ended - set(self.scores[0])) >= self.num_trials
        expected = self.decided[rung - 1]
        return expected is not None and all(t in self.scores[rung] or t in self.ended for t in expected)

    def settle(self, controller=None, current: Trial | None = None) -> None:
        """Decide every rung that can be decided now, in order; with a Tune `controller`, end the
        losers that wait PAUSED (the `current` trial gets its verdict from on_trial_result)."""
        for rung in range(self.rungs):
            if self._decidable(rung):
                self.decided[rung] = promoted(self.scores[rung], self.rf, self.tolerance)
        if controller is None:
            return
        # A loser waiting PAUSED (or restored PENDING after a driver restart) is ended here; the
        # trial reporting now gets its STOP from on_trial_result.
        now = current.trial_id if current is not None else None
        for tid, trial in list(self._trials.items()):
            if (tid != now and tid not in self.ended and trial.status in (Trial.PAUSED, Trial.PENDING)
                    and self.fate(tid) is False):
                # Marked first: Tune's stop_trial calls on_trial_remove (and so this) before the
                # trial's status changes.
                self.ended.add(tid)
                self._paused.discard(tid)
                controller.stop_trial(trial)

    def record(self, trial_id: str, rung: int, score: float) -> None:
        """Record a trial's proxy score at a rung (the first score recorded there stays)."""
        self.scores[rung].setdefault(trial_id, score)

    def _relearn(self) -> None:
        """After a driver restart: the scores and ended trials recorded before it, from the results
        dir (a trial with result.json finished; status.json `stopped` or `failed` ended)."""
        if self._learned:
            return
        self._learned = True
        for cand in ResultsDir(self._results).candidates():
            for rung in cand.read_rungs():
                if rung.proxy_score is not None and rung.rung < self.rungs:
                    self.record(cand.name, rung.rung, rung_score(rung.proxy_score, rung.gain_over_init))
            if cand.ended():
                self.ended.add(cand.name)
        self.settle()

    # ------------------------------------------------------------------ Tune's hooks
    def on_trial_add(self, controller, trial: Trial) -> None:
        self._relearn()
        self._trials[trial.trial_id] = trial

    def on_trial_result(self, controller, trial: Trial, result: dict) -> str:
        self._relearn()
        if BUDGET not in result or result.get(PROXY) is None:
            return TrialScheduler.CONTINUE  # the final report (full protocol) or no early-stopping report
        rung = int(result["rung"])
        self.record(trial.trial_id, rung, float(rung_score(result.get(PROXY), result.get(GAIN))))
        self.settle(controller, current=trial)
        fate = self.fate(trial.trial_id)  # a replayed trial (distil.search.trial) may report a rung it passed
        if fate is False:
            return TrialScheduler.STOP
        if fate and self._active(but=trial) < self.max_concurrent:
            self._unpause(controller, trial)
            return TrialScheduler.CONTINUE
        self._paused.add(trial.trial_id)  # undecided, or promoted while every slot is taken
        _tell_searcher(controller, "on_pause", trial.trial_id)
        return TrialScheduler.PAUSE

    def _ended(self, controller, trial: Trial) -> None:
        self.ended.add(trial.trial_id)
        self._paused.discard(trial.trial_id)
        self.settle(controller, current=trial)

    def on_trial_complete(self, controller, trial: Trial, result: dict) -> None:
        self._ended(controller, trial)

    def on_trial_error(self, controller, trial: Trial) -> None:
        self._ended(controller, trial)

    def on_trial_remove(self, controller, trial: Trial) -> None:
        self._ended(controller, trial)

    def _active(self, but: Trial | None = None) -> int:
        """Trials holding a slot: running or about to start, not told to pause."""
        skip = but.trial_id if but is not None else None
        return sum(tid != skip and t.status in (Trial.RUNNING, Trial.PENDING) and tid not in self._paused
                   for tid, t in self._trials.items())

    def _unpause(self, controller, trial: Trial) -> None:
        if trial.trial_id in self._paused:
            self._paused.discard(trial.trial_id)
            _tell_searcher(controller, "on_unpause", trial.trial_id)

    def choose_trial_to_run(self, controller) -> Trial | None:
        """A PENDING trial first (Tune starts those anyway); else, while a slot is free, the promoted
        PAUSED trial at the lowest rung, best score first."""
        trials = controller.get_trials()
        for trial in trials:
            if trial.status == Trial.PENDING:
                return trial
        if self._active() >= self.max_concurrent:
            return None
        waiting = [t for t in trials if t.status == Trial.PAUSED and self.fate(t.trial_id) is True]
        if not waiting:
            return None

        def order(t):
            rung = max(k for k in range(self.rungs) if t.trial_id in self.scores[k])
            return rung, -self.scores[rung][t.trial_id], t.trial_id

        chosen = min(waiting, key=order)
        self._unpause(controller, chosen)
        return chosen

    def debug_string(self) -> str:
        parts = []
        for k in range(self.rungs):
            kept = self.decided[k]
            parts.append(f"rung {k}: {len(self.scores[k])} scored, "
                         + ("undecided" if kept is None else f"{len(kept)} promoted"))
        return "Successive halving (rf=%d): " % self.rf + "; ".join(parts)


def _tell_searcher(controller, event: str, trial_id: str) -> None:
    """Call the searcher's on_pause/on_unpause (through Tune's SearchGenerator and its
    ConcurrencyLimiter, as Tune's HyperBandForBOHB does), if it has one."""
    searcher = getattr(getattr(controller, "search_alg", None), "searcher", None)
    hook = getattr(searcher, event, None)
    if hook is not None:
        hook(trial_id)
