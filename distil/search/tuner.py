"""The search: Optuna proposes candidates through Ray Tune, successive halving stops weak ones early, and the
study lives in a database so that a killed sweep resumes.

* Sampler (spec `search.sampler`): by default distil.search.sampler.RungTPESampler: its first
  `n_startup_trials` trials (points_to_evaluate after the first included) are quasi-random and
  try every layer rule; then TPE proposes, modelling the proxy scores at the highest rung with
  enough of them (stopped trials included). Each Optuna trial records who proposed it in the user
  attr `proposed_by`.
* Study: Optuna RDB storage, by default `sqlite:///<results>/optuna.db`, named after the sweep;
  `optuna-dashboard sqlite:///results/<sweep>/optuna.db` shows it. A trial stopped early is
  told to the study as PRUNED, with its proxy scores as intermediate values (step = rung).
* Early stopping (`search.early_stopping`): each trial reports `proxy_score` at the end of every
  rung with `rung_budget` = rf^k (1, 3, 9, ...); synchronous successive halving
  (distil.search.halving) pauses it until every trial that can reach that rung has a score there,
  then keeps the best max(1, floor(n / rf)) and stops the rest, whatever order they ran in.
* The paper defaults (points_to_evaluate[0]) are not a trial: they run in full as the reference row
  `paper_defaults` (distil.search.references), so no position in the search order decides them.
* Files, not Tune's tables, are the record (candidates/<trial>/...; see distil.store.records). The
  `Janitor` callback marks stopped and failed trials there and keeps the disk budget.
"""

from __future__ import annotations

import os
import shutil
import time

import optuna
from ray import tune
from ray.tune.search.optuna import OptunaSearch

from distil.config.layers import layer_key
from distil.config.objectives import direction
from distil.config.spec import Choice, FloatRange, SweepSpec
from distil.search.halving import SuccessiveHalving
from distil.search.sampler import RungTPESampler
from distil.store import storage
from distil.store.records import (GAIN, PROXY, TUNE_DIR, CandidateDir, ResultsDir, TrialStatus, read_json,
                                  train_run_name)

# Tune checks that every result carries the searcher's and the scheduler's metrics; a rung result
# has no macro_score yet and the final result no rung budget, on purpose.
os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
# Tune's classic status table takes the columns we choose (the new output shows no metrics
# unless Tune itself owns the metric, which our searcher and scheduler do).
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")


def objectives(spec: SweepSpec) -> tuple[list[str], list[str]]:
    """(metric names, Tune modes) of the search: the quality score first (max; perplexity min), a cost second
    (min); the modes from distil.config.objectives.direction."""
    names = list(spec.search.objectives)
    return names, [direction(n) for n in names]


def make_sampler(spec: SweepSpec) -> optuna.samplers.BaseSampler:
    """The Optuna sampler of `search.sampler`, seeded with `search.seed`: for `tpe` the
    RungTPESampler (distil.search.sampler: quasi-random startup, then TPE on the highest rung with
    enough scores), else Optuna's own."""
    s, seed, startup = spec.search.sampler, spec.search.seed, spec.search.n_startup_trials()
    if s.name == "tpe":
        return RungTPESampler(OptunaSearch.convert_search_space(tune_space(spec)), n_startup_trials=startup,
                              seed=seed, multivariate=s.multivariate, group=s.multivariate and s.group)
    if s.name == "gp":
        return optuna.samplers.GPSampler(n_startup_trials=startup, seed=seed)
    if s.name == "cmaes":
        return optuna.samplers.CmaEsSampler(n_startup_trials=startup, seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def tune_space(spec: SweepSpec) -> dict:
    """Tune domains of the searched parameters (layer lists as canonical string keys)."""
    def domain(p):
        if isinstance(p, FloatRange):
            return tune.loguniform(p.low, p.high) if p.log else tune.uniform(p.low, p.high)
        assert isinstance(p, Choice)
        return tune.choice([layer_key(c) if isinstance(c, list) else c for c in p.choices])

    return {name: domain(p) for name, p in spec.space().items()}


def encoded_points(spec: SweepSpec) -> list[dict]:
    """The points the search enqueues as its first trials: points_to_evaluate after the first (the
    paper defaults, a reference row of their own: distil.search.references), layer lists as
    canonical keys (as the space has them)."""
    return spec.search.encoded_points()[1:]


class Searcher(OptunaSearch):
    """OptunaSearch that (1) tells the study each trial's proxy score per rung as an intermediate
    value (Tune's OptunaSearch expects the final metric in every result; minus it, ln PPL, in a study
    that minimises perplexity) and (2) records in the
    user attr `proposed_by` whether a trial was enqueued, random startup, or the sampler's own."""

    def __init__(self, *args, n_startup_trials: int, sampler_name: str, **kwargs):
        super().__init__(*args, **kwargs)
        self._n_startup, self._sampler_name = n_startup_trials, sampler_name
        self._max_concurrent: int | None = None
        self._paused: set[str] = set()

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        # Tune's ConcurrencyLimiter (TuneConfig.max_concurrent_trials) would count a PAUSED trial as
        # live and propose nothing while one waits for its rung's decision: with one trial at a
        # time the sweep would hang. Returning True makes it hand the limit to us (below).
        self._max_concurrent = max_concurrent
        return True

    def on_pause(self, trial_id: str) -> None:
        """The scheduler paused the trial (distil.search.halving): its slot is free for a proposal."""
        self._paused.add(trial_id)

    def on_unpause(self, trial_id: str) -> None:
        """The scheduler resumes the trial: it holds a slot again."""
        self._paused.discard(trial_id)

    def restore(self, checkpoint_path: str):
        super().restore(checkpoint_path)
        self._paused = set()  # Tune restarts every unfinished trial on resume: none is paused

    def suggest(self, trial_id: str):
        known = trial_id in self._ot_trials
        live = len(set(self._ot_trials) - self._completed_trials - self._paused)
        if not known and self._max_concurrent is not None and live >= self._max_concurrent:
            return None  # every slot is taken by a running trial; Tune asks again later
        config = super().suggest(trial_id)
        if config is not None and not known:
            ot_trial = self._ot_trials[trial_id]
            # GP/CMA-ES sample at random until n_startup_trials trials are COMPLETE or PRUNED
            # (optuna.samplers.TPESampler._sample_relative); enqueued points are fixed params.
            trials = self._ot_study.get_trials(deepcopy=False)
            ended = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
            finished = sum(t.state in ended for t in trials)
            proposals = getattr(self._sampler, "proposals", {})  # RungTPESampler says who proposed what
            if "fixed_params" in trials[ot_trial.number].system_attrs:
                who = "points_to_evaluate"
            elif ot_trial.number in proposals:
                who = proposals[ot_trial.number]
            elif self._sampler_name == "random" or finished < self._n_startup:
                who = "random (startup)" if self._sampler_name != "random" else "random"
            else:
                who = self._sampler_name
            ot_trial.set_user_attr("proposed_by", who)
            ot_trial.set_user_attr("tune_trial_id", trial_id)
        return config

    def on_trial_result(self, trial_id: str, result: dict):
        if PROXY in result and not isinstance(self.metric, list) and trial_id in self._ot_trials:
            ot_trial, rung = self._ot_trials[trial_id], int(result["rung"])
            # A resumed trial reports its last rung again (distil.search.trial): recorded once.
            if rung not in self._ot_study._storage.get_trial(ot_trial._trial_id).intermediate_values:
                # proxy_score is higher-is-better; a minimised objective's study (perplexity: a causal teacher's
                # sweep, whose proxy_score is −ln PPL) is told ln PPL (nats per token), so that the sampler's rung
                # model and a pruned trial's value point the study's way.
                score = float(result[PROXY])
                ot_trial.report(score if self._mode == "max" else -score, step=rung)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        # A trial that the scheduler stops on a rung's result reaches the searcher only here (Tune calls
        # on_trial_complete with that result, not on_trial_result): record its last rung first, so
        # the pruned trial carries the score it was stopped on (TPE ranks pruned trials by it).
        if result and not error and result.get(self.metric if isinstance(self.metric, str) else None) is None:
            self.on_trial_result(trial_id, result)
        self._paused.discard(trial_id)
        super().on_trial_complete(trial_id, result=result, error=error)


def make_scheduler(spec: SweepSpec, results_dir: str) -> SuccessiveHalving | None:
    """Synchronous successive halving over the rungs of `search.early_stopping` for the sweep's
    `num_candidates` trials (distil.search.halving), or None without early stopping."""
    es = spec.search.early_stopping
    if es is None:
        return None
    return SuccessiveHalving(results_dir, num_trials=spec.search.num_candidates, rungs=es.rungs,
                             reduction_factor=es.reduction_factor, tolerance=es.tolerance,
                             max_concurrent=spec.search.max_concurrent)


def make_searcher(spec: SweepSpec, storage_url: str) -> Searcher | None:
    """The Optuna searcher on an RDB-stored study named after the sweep (None: nothing searched)."""
    space = tune_space(spec)
    if not space:
        return None
    names, modes = objectives(spec)
    multi = len(names) > 1
    return Searcher(
        space=space, metric=names if multi else names[0], mode=modes if multi else modes[0],
        points_to_evaluate=encoded_points(spec) or None, sampler=make_sampler(spec),
        study_name=spec.name, storage=optuna.storages.RDBStorage(storage_url),
        n_startup_trials=spec.search.n_startup_trials(), sampler_name=spec.search.sampler.name,
    )


def storage_url(spec: SweepSpec, results_dir: str | os.PathLike) -> str:
    """The study's SQLAlchemy URL: `search.storage`, else sqlite in the results dir."""
    return spec.search.storage or ResultsDir(results_dir).optuna_url()


class Janitor(tune.Callback):
    """Keeps the candidates' files honest and the disk bounded, on the driver, as trials end:

    * a trial that ended without result.json was stopped by the scheduler: status.json says
      `stopped` with its last rung and proxy score; its student weights are pruned;
    * a trial that raised: status.json says `failed` with the first line of the error;
    * every ended trial's Ray Train checkpoints (weights + optimizer state) are deleted once the
      student is copied out; only the `keep_students` best finished students by their selection
      scores (ResultsDir.by_selection, the ranking the leaderboard's best student and best_student/
      come from) keep their weights (the others keep config, scores and predictions).
    """

    def __init__(self, results_dir: str, train_storage: str, keep_students: int, metric: str = "macro_score"):
        self.out, self.train, self.keep, self.metric = ResultsDir(results_dir), train_storage, keep_students, metric

    def on_trial_complete(self, iteration, trials, trial, **info):
        cand = self.out.candidate(trial.trial_id)
        if not cand.has_result():
            rungs = cand.read_rungs()
            last = rungs[-1] if rungs else None
            # What the rung decided on (distil.search.halving.rung_score): the gain where it is known.
            on = "proxy_score" if last is None or last.gain_over_init is None else f"{GAIN} {last.gain_over_init:.2f}"
            cand.write_status(TrialStatus("stopped", f"stopped early by successive halving on {on}",
                                          rung=last and last.rung, proxy_score=last and last.proxy_score,
                                          step=last and last.step))
            _prune_student(cand, "stopped early")
        self._drop_checkpoints(trial.trial_id)
        self._keep_best_students()

    def on_trial_error(self, iteration, trials, trial, **info):
        cand = self.out.candidate(trial.trial_id)
        if not cand.has_status():  # the trial writes its own reason when it can
            cand.write_status(TrialStatus("failed", _first_line(trial)))
        self._drop_checkpoints(trial.trial_id)

    def _drop_checkpoints(self, trial_id: str) -> None:
        storage.remove_tree(storage.join(self.train, train_run_name(trial_id)))  # a local dir or a URI

    def _keep_best_students(self) -> None:
        ranked = [name for name, _ in self.out.by_selection(self.metric)]  # the leaderboard's best student first
        for name in ranked[self.keep:]:
            _prune_student(self.out.candidate(name), f"not among the best {self.keep} finished students "
                                                     "(search.keep_students)")


def _prune_student(cand: CandidateDir, why: str) -> None:
    """Delete a candidate's student weights (keeps config, scores, predictions); say why."""
    if cand.student_dir.exists():
        shutil.rmtree(cand.student_dir)
        cand.pruned_file.write_text(why + "\n")


def _first_line(trial) -> str:
    """The line of a failed trial's error text that names the root cause (the last
    "SomeError: message" line of a chained traceback), at most 300 characters."""
    try:
        text = trial.get_error() or ""
    except Exception:  # the error file may be missing when the trial's actor died
        text = ""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    context = ("File ", "Traceback", "The above", "During handling")
    causes = [ln for ln in lines if ":" in ln and not ln.startswith(context)]
    return (causes[-1] if causes else lines[-1] if lines else "the trial's process died without an error message")[:300]


class EventLog(tune.Callback):
    """One console line per event that matters: a trial started (its parameters), reached a rung
    (proxy score), finished (its objectives), was stopped early, failed (the reason)."""

    def __init__(self, results_dir: str, every_s: float = 60.0):
        self.out, self.every_s, self._last_poll, self._shown = ResultsDir(results_dir), every_s, 0.0, {}
        self._rungs_said: dict[str, set] = {}

    def on_step_begin(self, iteration, trials, **info):
        """Every `every_s` seconds: each running trial's distillation step, loss and tokens/s, from
        the file its Train run's rank 0 writes at each checkpoint (distil.search.train._report)."""
        if time.time() - self._last_poll < self.every_s:
            return
        self._last_poll = time.time()
        for trial in trials:
            live = self.out.live_file(train_run_name(trial.trial_id))
            if trial.status == "RUNNING" and live.exists():
                try:
                    m = read_json(live)
                except (OSError, ValueError):
                    continue  # being replaced right now
                if self._shown.get(trial.trial_id) != m.get("step"):
                    self._shown[trial.trial_id] = m.get("step")
                    self._say(trial, f"distilling: step {m.get('step')}/{m.get('total_steps')}, "
                                     f"loss {_fmt(m.get('loss'))}, "
                                     f"{_fmt(m.get('tokens_per_s'))} tokens/s")

    def _say(self, trial, what: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] trial {trial.trial_id}: {what}", flush=True)

    def on_trial_start(self, iteration, trials, trial, **info):
        rungs = self.out.candidate(trial.trial_id).read_rungs()
        if rungs:  # resumed after its rung's decision (or a restart): it goes on from there
            self._say(trial, f"resumed after rung {rungs[-1].rung}")
            return
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(trial.config.items()))
        self._say(trial, f"started ({params})")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        # A resumed trial reports its last rung again (for the scheduler): said once.
        said = self._rungs_said.setdefault(trial.trial_id, set())
        if PROXY in result and result["rung"] not in said:
            said.add(result["rung"])
            self._say(trial, f"rung {int(result['rung'])} at step {result.get('step')}: "
                             f"proxy_score {result[PROXY]:.2f}")

    def on_trial_complete(self, iteration, trials, trial, **info):
        cand = self.out.candidate(trial.trial_id)
        if cand.has_result():
            scores = cand.read_result().objectives or {}
            self._say(trial, "done: " + ", ".join(f"{k} {_fmt(v)}" for k, v in scores.items()))
        else:
            rungs = cand.read_rungs()
            last_rung, last_score = (rungs[-1].rung, rungs[-1].proxy_score) if rungs else (None, None)
            self._say(trial, f"stopped early after rung {last_rung} (proxy_score {_fmt(last_score)})")

    def on_trial_error(self, iteration, trials, trial, **info):
        status = self.out.candidate(trial.trial_id).read_status()
        reason = status.reason if status else _first_line(trial)
        self._say(trial, f"FAILED: {reason}")


def _fmt(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


class SyncResults(tune.Callback):
    """Mirror the results dir to remote storage (distil.store.storage) after every trial event, so a
    sweep killed at any point leaves its record, the Optuna study included, at the URI."""

    def __init__(self, results_dir: str, uri: str):
        self.out, self.uri = results_dir, uri

    def _push(self, **_):
        storage.Mirror.of(self.out, self.uri).push()

    on_trial_start = on_trial_result = on_trial_complete = on_trial_error = _push


def build_tuner(spec: SweepSpec, trainable, results_dir: str, train_storage: str,
                remote: str | None = None) -> tune.Tuner:
    """A new Tuner for the sweep: searcher, scheduler, janitor, event lines, max_concurrent trials.

    remote: the URI the results go to (`--output s3://...`): Tune keeps its experiment at
    `<remote>/tune` and the results dir is mirrored there (SyncResults); None: all under results_dir."""
    searcher = make_searcher(spec, storage_url(spec, results_dir))
    return tune.Tuner(
        trainable,
        param_space=tune_space(spec) if searcher is None else {},
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=make_scheduler(spec, results_dir),
                                    num_samples=spec.search.num_candidates,
                                    max_concurrent_trials=spec.search.max_concurrent),
        run_config=tune.RunConfig(
            name=TUNE_DIR, storage_path=remote or results_dir,
            # A trial whose process dies (a lost node) or raises is restarted up to max_failures
            # times; it continues from its progress.json and its Train run's last checkpoint.
            failure_config=tune.FailureConfig(max_failures=spec.distill.max_failures),
            progress_reporter=status_table(spec), verbose=1,
            callbacks=[Janitor(results_dir, train_storage, spec.search.keep_students, spec.search.objectives[0]),
                       EventLog(results_dir)] + ([SyncResults(results_dir, remote)] if remote else [])),
    )


def status_table(spec: SweepSpec) -> tune.CLIReporter:
    """Tune's status table, with the searched parameters and the live metrics: distillation step
    and loss, rung and proxy score while a trial distils, its objectives when it is done."""
    names, _ = objectives(spec)
    metrics = {"step": "step", "loss": "loss", "tokens_per_s": "tok/s", "rung": "rung", PROXY: "proxy",
               **{n: n for n in names}}
    params = {n: n.replace("alpha_", "a_").replace("layer_selection", "layers").replace("temperature", "T")
              for n in spec.space()}
    return tune.CLIReporter(metric_columns=metrics, parameter_columns=params, max_report_frequency=60,
                            sort_by_metric=False, max_progress_rows=30)


def restore_tuner(experiment: str, trainable) -> tune.Tuner:
    """The sweep's Tuner restored after a crash from its experiment dir (`<results>/tune`, or
    `<uri>/tune` on remote storage): finished trials stay finished, unfinished ones continue (each
    from its last Train checkpoint), failed ones stay failed; the searcher resumes with its study."""
    return tune.Tuner.restore(experiment, trainable=trainable, resume_unfinished=True,
                              resume_errored=False, restart_errored=False)


def ended_early(spec: SweepSpec, results_dir: str) -> bool:
    """Whether `Tuner.fit()` returned before the sweep ended (Ctrl-C: Tune saved its state and
    returned); `resume` continues it. Read from the study: once the sweep ends, every one of its
    `num_candidates` trials is finished there (complete, pruned or failed); without a searched space
    (no study), from the results dir's own records (result.json, or status.json stopped or failed).

    Tune's own record cannot tell (Ray 2.60): on SIGINT its controller marks every running trial
    TERMINATED in memory as it stops the actor (TuneController._cleanup_trials), and the experiment
    state it saves last still shows a trial stopped while PAUSED as PAUSED."""
    n = spec.search.num_candidates
    if not tune_space(spec):
        return sum(c.ended() for c in ResultsDir(results_dir).candidates()) < n
    study = optuna.load_study(study_name=spec.name, storage=storage_url(spec, results_dir))
    return sum(t.state.is_finished() for t in study.get_trials(deepcopy=False)) < n
