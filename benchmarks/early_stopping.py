"""Does the proxy rank what the full protocol ranks? Early stopping's benchmark (issue 21, point 5).

    python benchmarks/early_stopping.py             # run the full arm of bench-early-stopping.yaml, analyse it
    python benchmarks/early_stopping.py --from results/bench-early-stopping     # analyse a full arm already run
    python benchmarks/early_stopping.py --from DIR --write-page docs/measurements/DATE-early-stopping.md

**The full arm** is one real sweep of the spec (`run_sweep.py run`) with
`search.early_stopping.tolerance` set to 1e9: successive halving then keeps every trial at every rung,
so every candidate records its proxy score after every rung (progress.json) and gets the full GLUE
protocol (result.json). Nothing else in the spec changes: the same seeds, the same sampler, the
same candidates as a sweep of the spec as written (successive halving decides no rung before every
candidate has been proposed, whatever its tolerance, so the sampler sees the same rung-0 scores).

**The analysis** reads that results dir (distil.store.records) and prints, as Markdown:

1. the recorded trials: proxy score and gain over init at each rung, final macro, busy core-seconds;
2. Kendall's tau (scipy.stats.kendalltau, tau-b) between each rung's score, raw `proxy_score` and
   `proxy_gain_over_init`, and the final `macro_score` (validation splits, distil.evaluation.scores),
   with a 95 % percentile bootstrap interval over trials;
3. each stopping rule replayed over `--orders` seeded shuffles of the recorded trials: the rule's
   scheduler object is driven with the recorded rung scores in that order, as Tune drives it
   (`replay`, tests/test_halving.py's driver). Rules: successive halving (make_scheduler of
   distil.search.tuner) on the gain over init with the spec's tolerance, the same on the raw proxy score,
   the same on the gain with tolerance 0, and Ray's ASHAScheduler on the raw proxy score (the rule
   before it). For each: how often the true best and the true top 2 (by final macro) reach the full
   protocol, the macro points lost, and the compute saved (see `arm_cost` for exactly what counts).

The replay is exact for what a rule decides from the scores. It does not replay the proxy's own
noise: each trial's rung scores are the ones the full arm recorded once.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import yaml
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ray.tune.experiment import Trial as TuneTrial  # noqa: E402
from ray.tune.schedulers import ASHAScheduler, TrialScheduler  # noqa: E402

from distil.config.spec import SpecError, SweepSpec, load_spec  # noqa: E402
from distil.evaluation import scores  # noqa: E402
from distil.report.board import first_objective  # noqa: E402
from distil.search.halving import rung_score  # noqa: E402
from distil.search.tuner import make_scheduler  # noqa: E402
from distil.store.records import BUDGET, PROXY, ResultsDir, init_only_name  # noqa: E402

FULL_ARM_TOLERANCE = 1e9  # proxy points: every trial is within it of every cutoff, so every rung keeps all


def shown(path: str | Path) -> str:
    """A path as a page shows it: relative to the repository inside it, else its name only (the
    measurement pages name no machine's directories: tests/test_docs.py)."""
    path = Path(path).expanduser().resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else f"{path.name} (outside the repository)"


# ---------------------------------------------------------------- the full arm
def run_full_arm(spec_path: str | Path, out: Path, cache_dir: str | None) -> float:
    """Run the full arm: `run_sweep.py run` on the spec at `spec_path` with
    search.early_stopping.tolerance = FULL_ARM_TOLERANCE, into the results dir `out` (new or empty);
    the spec run is written beside it as `<out>.yaml`. Returns the sweep's wall seconds."""
    raw = yaml.safe_load(Path(spec_path).read_text())
    raw["search"]["early_stopping"]["tolerance"] = FULL_ARM_TOLERANCE
    out.parent.mkdir(parents=True, exist_ok=True)
    spec_file = out.with_suffix(".yaml")
    spec_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    cmd = [sys.executable, str(ROOT / "run_sweep.py"), "run", str(spec_file), "--output", str(out)]
    t0 = time.time()
    subprocess.run(cmd + (["--cache-dir", cache_dir] if cache_dir else []), cwd=ROOT, check=True)
    return time.time() - t0


# ---------------------------------------------------------------- the recorded trials
@dataclass(frozen=True)
class Trial:
    """One candidate of the full arm as its files record it. Scores are x100 (proxy points, macro
    points); costs are busy core-seconds (see `arm_cost`)."""

    name: str  # trial id
    rule: str  # its layer rule (params.layer_selection)
    raw: tuple[float, ...]  # proxy_score after each rung (progress.json)
    gain: tuple[float | None, ...]  # proxy_score - init_proxy_score after each rung; None where not recorded
    macro: float  # final macro_score on the validation splits (result.json through distil.evaluation.scores)
    distill: tuple[float, ...]  # each rung's distillation: its Train run's distill.run_seconds x distill.num_workers
    proxy: tuple[float, ...]  # each rung's proxy fine-tuning seconds (proxy_seconds: 1-core Ray tasks, summed)
    glue: float  # the full protocol's fine-tuning seconds (result.json finetune_seconds: 1-core Ray tasks, summed)
    init: str  # the undistilled student its gain is measured from: `init_only-<rule>/<n>L`
    selection: float | None = None  # the full protocol's score on held-out training rows (result.json
    #                                 objectives: the spec's first objective, what the search ranks by)

    def scores(self, kind: str) -> list[float]:
        """Its rung scores as a rule deciding on `kind` sees them: "raw" (proxy_score) or "gain"
        (distil.search.halving.rung_score: the gain, the raw score where the gain is unknown)."""
        return list(self.raw) if kind == "raw" else [rung_score(r, g) for r, g in zip(self.raw, self.gain)]


@dataclass(frozen=True)
class FullArm:
    """What the analysis reads from a full arm's results dir."""

    trials: list[Trial]  # those with every rung scored and result.json, by trial id
    init: dict[str, float]  # `init_only-<rule>/<n>L` -> proxy seconds of that undistilled student
    steps: list[int | None]  # the distillation step at the end of each rung
    unbusy_seconds: float  # wall seconds of the rungs' distillation outside the Train loop (not counted)
    notes: list[str]  # what was left out, or read another way, and why


def load_full_arm(results_dir: str | Path, spec: SweepSpec) -> FullArm:
    """Read a full arm's candidates through distil.store.records (progress.json, result.json,
    config.json, references/init_only-*/proxy-<n>L.json). A trial without result.json or without a
    proxy score at every one of the spec's rungs is left out (said in `notes`). A rung whose
    distill metrics lack `run_seconds` (sweeps before the Train runs reported it) is counted at
    its wall `distill_seconds` instead, and said."""
    es, workers = spec.search.early_stopping, spec.distill.num_workers
    out = ResultsDir(results_dir)
    notes, trials, init, steps, unbusy, walled = [], [], {}, [None] * es.rungs, 0.0, 0
    written = out.read_spec() or {}
    objective = first_objective(written)
    tol = ((written.get("search") or {}).get("early_stopping") or {}).get("tolerance")
    if tol is not None and tol < FULL_ARM_TOLERANCE:
        notes.append(f"{shown(out.path)} was run with tolerance {tol}, not as a full arm: "
                     "its stopped trials are left out")
    for cand in out.candidates():
        rungs = [r for r in cand.read_rungs() if r.rung < es.rungs]
        if not cand.has_result() or len(rungs) < es.rungs or any(r.proxy_score is None for r in rungs):
            why = "no result.json" if not cand.has_result() else f"{len(rungs)} of {es.rungs} rungs scored"
            notes.append(f"trial {cand.name} left out: {why}")
            continue
        result = cand.read_result()
        row = scores.row_from_result(result.to_json(), include_wnli=spec.glue.include_wnli, tasks=spec.tasks)
        if math.isnan(row["macro_score"]):
            notes.append(f"trial {cand.name} left out: its result.json has no macro_score")
            continue
        params = result.params or (cand.read_config().params if cand.has_config() else {})
        rule, depth = str(params.get("layer_selection")), params.get("n_layers", spec.student.n_layers)
        key = f"{init_only_name(rule)}/{depth}L"
        if key not in init:
            point = out.init_only(rule).read_init_proxy(depth)
            init[key] = point.proxy_seconds if point else 0.0
            if point is None:
                notes.append(f"{key}: no init proxy file; its proxy seconds count as 0")
        busy = []
        for r in rungs:
            seconds = r.distill.get("run_seconds")
            if seconds is None:
                walled += 1
                seconds = r.distill_seconds
            busy.append(workers * seconds)
            unbusy += max(0.0, r.distill_seconds - seconds)
            steps[r.rung] = steps[r.rung] or r.step
        selection = (result.objectives or {}).get(objective)
        trials.append(Trial(name=cand.name, rule=rule, raw=tuple(r.proxy_score for r in rungs),
                            gain=tuple(r.gain_over_init for r in rungs), macro=float(row["macro_score"]),
                            distill=tuple(busy), proxy=tuple(r.proxy.proxy_seconds for r in rungs),
                            glue=float(result.finetune_seconds or 0.0), init=key,
                            selection=None if selection is None else float(selection)))
    if walled:
        notes.append(f"{walled} rungs lack distill.run_seconds: counted at their wall distill_seconds "
                     "(queueing included)")
    if any(g is None for t in trials for g in t.gain):
        notes.append("some rungs lack init_proxy_score: the gain rules decide on their raw proxy score there")
    return FullArm(trials, init, steps, unbusy, notes)


# ---------------------------------------------------------------- ranking
def kendall_interval(x, y, resamples: int = 2000, seed: int = 0) -> tuple[float, float, float, int]:
    """Kendall's tau-b between `x` and `y` (one value per trial) and its 95 % percentile bootstrap
    interval: trials resampled with replacement `resamples` times (numpy default_rng(seed)).
    Returns (tau, lo, hi, skipped): skipped counts the resamples where tau is undefined (all x
    or all y tied) and is left out of the interval. NaN where tau itself is undefined."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    tau = float(stats.kendalltau(x, y).statistic)
    rng = np.random.default_rng(seed)
    taus = []
    for _ in range(resamples):
        i = rng.integers(len(x), size=len(x))
        t = stats.kendalltau(x[i], y[i]).statistic
        if np.isfinite(t):
            taus.append(t)
    lo, hi = np.percentile(taus, [2.5, 97.5]) if taus else (math.nan, math.nan)
    return tau, float(lo), float(hi), resamples - len(taus)


def rank_agreement(trials: list[Trial], resamples: int = 2000, seed: int = 0) -> list[dict]:
    """Per rung and score kind ("raw", "gain"): Kendall's tau with the final macro and its interval
    (kendall_interval). A kind with an unknown score at the rung gets tau NaN.

    Then, where every trial has one, the ceiling (rung None, kind "selection"): tau between the full
    protocol's own selection score (the same fine-tuned models scored on held-out training rows) and
    the final macro (validation rows). It is how well the full protocol ranks itself on other
    examples, so no proxy can be expected to rank the final macro much better."""
    macro = [t.macro for t in trials]
    rows = []
    for k in range(len(trials[0].raw)):
        for kind in ("raw", "gain"):
            values = [t.raw[k] if kind == "raw" else t.gain[k] for t in trials]
            if any(v is None for v in values):
                rows.append({"rung": k, "kind": kind, "tau": math.nan, "lo": math.nan, "hi": math.nan, "skipped": 0})
                continue
            tau, lo, hi, skipped = kendall_interval(values, macro, resamples, seed)
            rows.append({"rung": k, "kind": kind, "tau": tau, "lo": lo, "hi": hi, "skipped": skipped})
    if all(t.selection is not None for t in trials):
        tau, lo, hi, skipped = kendall_interval([t.selection for t in trials], macro, resamples, seed)
        rows.append({"rung": None, "kind": "selection", "tau": tau, "lo": lo, "hi": hi, "skipped": skipped})
    return rows


# ---------------------------------------------------------------- replaying a rule
class _Controller:
    """What a scheduler sees of Tune's TuneController: the trials, stop_trial and the searcher's
    pause protocol (on_pause / on_unpause). tests/test_halving.py's Controller and Gate."""

    def __init__(self, scheduler):
        self.scheduler, self.trials, self.paused = scheduler, [], set()
        self.search_alg = SimpleNamespace(searcher=SimpleNamespace(on_pause=self.paused.add,
                                                                   on_unpause=self.paused.discard))

    def get_trials(self):
        return self.trials

    def stop_trial(self, trial):  # TuneController.stop_trial on a PAUSED or PENDING trial
        self.scheduler.on_trial_remove(self, trial)
        trial.status = TuneTrial.TERMINATED


def replay(scheduler, rung_scores: list[list[float]], rf: int, max_concurrent: int = 1) -> tuple[list[int], set[int]]:
    """Drive `scheduler` (a Tune TrialScheduler) as Tune does, without Ray: trials 0, 1, ... are
    proposed in that order while a slot is free; trial i reports rung_scores[i][k] as its proxy
    score at rung k (budget rf^k), the scheduler's PAUSE / STOP / CONTINUE is applied, a paused trial
    resumed by choose_trial_to_run reports its last rung again, and a trial past its last rung makes
    its final report. tests/test_halving.py's `run_sweep`, trimmed to fixed scores.
    Returns (how many rungs each trial reported, the trials that reached the full protocol)."""
    n = len(rung_scores)
    ctl = _Controller(scheduler)
    reached, full = [0] * n, set()
    running_states = (TuneTrial.RUNNING, TuneTrial.PENDING)
    while True:
        active = [t for t in ctl.trials if t.status in running_states and t.trial_id not in ctl.paused]
        if len(ctl.trials) < n and len(active) < max_concurrent:
            trial = SimpleNamespace(trial_id=str(len(ctl.trials)), status=TuneTrial.PENDING, config={},
                                    evaluated_params={})
            ctl.trials.append(trial)
            scheduler.on_trial_add(ctl, trial)
        chosen = scheduler.choose_trial_to_run(ctl)
        if chosen is not None:
            chosen.status = TuneTrial.RUNNING
        running = [t for t in ctl.trials if t.status == TuneTrial.RUNNING]
        if not running:
            if len(ctl.trials) == n and all(t.status == TuneTrial.TERMINATED for t in ctl.trials):
                return reached, full
            if chosen is None and len(ctl.trials) == n:
                raise RuntimeError("the replay hangs: no trial can run")
            continue
        trial = running[0]
        i = int(trial.trial_id)
        k = reached[i] - 1 if reached[i] and trial.__dict__.pop("resumed", False) else reached[i]
        if k == len(rung_scores[i]):  # past the last rung: the final report, then the full protocol
            scheduler.on_trial_result(ctl, trial, {"macro_score": 0.0})
            full.add(i)
            scheduler.on_trial_complete(ctl, trial, {})
            trial.status = TuneTrial.TERMINATED
            continue
        reached[i] = max(reached[i], k + 1)
        decision = scheduler.on_trial_result(ctl, trial, {PROXY: rung_scores[i][k], BUDGET: rf ** k, "rung": k,
                                                          "training_iteration": reached[i]})
        if decision == TrialScheduler.STOP:
            scheduler.on_trial_complete(ctl, trial, {})
            trial.status = TuneTrial.TERMINATED
        elif decision == TrialScheduler.PAUSE:
            trial.status, trial.resumed = TuneTrial.PAUSED, True


def stopping_rules(spec: SweepSpec, n: int, scratch: str) -> dict[str, tuple[str, float | None, object]]:
    """The rules replayed, for a sweep of `n` trials: label -> (score kind, tolerance (None: the rule
    has none), a function returning a fresh scheduler). Successive halving is built by
    distil.search.tuner.make_scheduler on `spec` with num_candidates = n (and tolerance 0 for the
    third rule); its results dir
    `scratch` must hold no candidates (the scheduler re-learns from it). ASHA is Ray's
    ASHAScheduler as make_scheduler built it before successive halving: one bracket, grace period
    1, milestones at budgets 1, rf, ..., rf^(rungs-1), on the raw proxy score."""
    es = spec.search.early_stopping
    search = spec.search.model_copy(update={"num_candidates": n})
    as_given = spec.model_copy(update={"search": search})
    no_tol = spec.model_copy(update={"search": search.model_copy(
        update={"early_stopping": es.model_copy(update={"tolerance": 0.0})})})

    def asha():
        return ASHAScheduler(time_attr=BUDGET, metric=PROXY, mode="max", grace_period=1,
                             reduction_factor=es.reduction_factor, max_t=es.reduction_factor ** es.rungs, brackets=1)

    return {
        "successive halving, gain over init": ("gain", es.tolerance, lambda: make_scheduler(as_given, scratch)),
        "successive halving, raw proxy": ("raw", es.tolerance, lambda: make_scheduler(as_given, scratch)),
        "successive halving, gain, tolerance 0": ("gain", 0.0, lambda: make_scheduler(no_tol, scratch)),
        "ASHA (the old rule), raw proxy": ("raw", None, asha),
    }


def arm_cost(trials: list[Trial], reached: list[int], full: set[int], init: dict[str, float],
             gain: bool) -> float:
    """Busy core-seconds of an arm in which trial i ran its first reached[i] rungs and, if i is in
    `full`, the full protocol. Counted: per rung run, the distillation's Train loop time
    (distill.run_seconds of rank 0, from the worker's entry to the rung's last report; model and
    data loading included) x distill.num_workers, plus the proxy's fine-tuning seconds (1-core Ray
    tasks); per trial in `full`, its GLUE fine-tuning seconds (result.json finetune_seconds, 1-core
    Ray tasks); with `gain`, the init proxies (one per layer rule and depth among the trials that
    ran a rung). Not counted: a Train worker group's start before its loop and any wait for
    CPUs, the trial driver, the teacher's proxy and every reference row (the same in every arm)."""
    cost = sum(sum(t.distill[:r]) + sum(t.proxy[:r]) for t, r in zip(trials, reached))
    cost += sum(trials[i].glue for i in full)
    if gain:
        cost += sum(init[key] for key in {t.init for t, r in zip(trials, reached) if r})
    return cost


def replay_rules(arm: FullArm, spec: SweepSpec, orders: int = 100, seed: int = 0) -> list[dict]:
    """Replay each of stopping_rules over `orders` shuffles of the trials (numpy default_rng(seed)
    permutations; the same shuffles for every rule). Per rule: the share of orders in which the
    true best (highest final macro) reaches the full protocol, in which both of the true top 2 do,
    and in which at least one of them does; the mean number reaching it; the mean macro points lost
    (true best's macro minus the best macro among the trials reaching the full protocol); and the
    compute saved, 1 - arm_cost / the full arm's cost (every rung and GLUE for every trial, the init
    proxies), and 1 - arm_cost / a sweep without early stopping (every rung's distillation and GLUE,
    no proxy), each as (mean, min, max) over the orders."""
    trials, es = arm.trials, spec.search.early_stopping
    n = len(trials)
    ranked = sorted(range(n), key=lambda i: (-trials[i].macro, trials[i].name))
    best, top2 = ranked[0], set(ranked[:2])
    everything = [es.rungs] * n
    full_arm = arm_cost(trials, everything, set(range(n)), arm.init, gain=True)
    no_es = sum(sum(t.distill) + t.glue for t in trials)
    rng = np.random.default_rng(seed)
    shuffles = [rng.permutation(n) for _ in range(orders)]
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for label, (kind, tolerance, make) in stopping_rules(spec, n, scratch).items():
            got = {"best": 0, "top2": 0, "any2": 0, "finished": [], "lost": [], "saved": [], "saved_no_es": []}
            for order in shuffles:
                reached_pos, full_pos = replay(make(), [trials[j].scores(kind) for j in order], es.reduction_factor,
                                               spec.search.max_concurrent)
                reached = [0] * n
                for pos, j in enumerate(order):
                    reached[j] = reached_pos[pos]
                full = {int(order[pos]) for pos in full_pos}
                got["best"] += best in full
                got["top2"] += top2 <= full
                got["any2"] += bool(top2 & full)
                got["finished"].append(len(full))
                got["lost"].append(trials[best].macro - max((trials[i].macro for i in full), default=math.nan))
                cost = arm_cost(trials, reached, full, arm.init, gain=kind == "gain")
                got["saved"].append(1 - cost / full_arm)
                got["saved_no_es"].append(1 - cost / no_es)
            rows.append({"rule": label, "kind": kind, "tolerance": tolerance, "orders": orders,
                         "best": got["best"] / orders, "top2": got["top2"] / orders, "any2": got["any2"] / orders,
                         "finished": float(np.mean(got["finished"])), "lost": float(np.nanmean(got["lost"])),
                         "saved": _spread(got["saved"]), "saved_no_es": _spread(got["saved_no_es"])})
    return rows


def _spread(values: list[float]) -> tuple[float, float, float]:
    return float(np.mean(values)), float(np.min(values)), float(np.max(values))


# ---------------------------------------------------------------- the page
def _pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def _saved(s: tuple[float, float, float]) -> str:
    mean, lo, hi = s
    return f"{100 * mean:.1f} %" if hi - lo < 5e-4 else f"{100 * mean:.1f} % ({100 * lo:.1f}–{100 * hi:.1f})"


def _halving_note(n: int, spec: SweepSpec) -> str:
    """Why 'both top 2 reach GLUE' may be out of reach for successive halving: how many of `n` trials
    it sends to GLUE at tolerance 0."""
    es, kept = spec.search.early_stopping, n
    for _ in range(es.rungs):
        kept = max(1, kept // es.reduction_factor)
    return "" if kept >= 2 else (f" At tolerance 0 successive halving sends {kept} of {n} trials to GLUE "
                                 "(max(1, floor(n / rf)) at each rung): both of the top 2 reach it only through "
                                 "the tolerance.")


def markdown(arm: FullArm, spec: SweepSpec, ranks: list[dict], rules: list[dict], resamples: int) -> str:
    """The tables (the measurement page's body), Markdown."""
    trials, rungs = arm.trials, spec.search.early_stopping.rungs
    full_arm = arm_cost(trials, [rungs] * len(trials), set(range(len(trials))), arm.init, gain=True)
    distill, proxy = sum(sum(t.distill) for t in trials), sum(sum(t.proxy) for t in trials)
    glue, init = sum(t.glue for t in trials), sum(arm.init.values())
    ranked = sorted(trials, key=lambda t: (-t.macro, t.name))

    def fmt(v):
        return "–" if v is None else f"{v:.1f}"

    lines = [f"## The recorded trials ({len(trials)}, by final macro)", "",
             "| trial | layer rule | proxy score per rung | gain over init per rung | final macro | "
             "busy core-s: distill / proxy / GLUE |", "|---|---|---|---|---|---|"]
    for t in ranked:
        lines.append(f"| `{t.name}` | {t.rule} | {' / '.join(fmt(v) for v in t.raw)} | "
                     f"{' / '.join(fmt(v) for v in t.gain)} | {t.macro:.2f} | "
                     f"{sum(t.distill):.0f} / {sum(t.proxy):.0f} / {t.glue:.0f} |")
    lines += ["", f"Full arm: {full_arm:.0f} busy core-seconds (distillation {distill:.0f}, proxies {proxy:.0f}, "
              f"GLUE {glue:.0f}, init proxies {init:.0f}). Not counted: {arm.unbusy_seconds:.0f} wall seconds of the "
              "rungs' distillation outside the Train loop (worker-group start-up, waiting for CPUs).", "",
              "## Does each rung's score rank what the final macro ranks?", "",
              f"Kendall's tau-b with the final macro over the {len(trials)} trials; 95 % percentile bootstrap over "
              f"trials ({resamples} resamples; those where tau is undefined are skipped).", "",
              "| rung (step) | score | Kendall τ | 95 % interval | resamples skipped |", "|---|---|---|---|---|"]
    names = {"raw": "proxy score", "gain": "gain over init",
             "selection": "the full protocol's selection score (held-out training rows): the ceiling"}
    for r in ranks:
        where = "full protocol" if r["rung"] is None else f"{r['rung']} ({arm.steps[r['rung']]})"
        tau = "n/a" if math.isnan(r["tau"]) else f"{r['tau']:+.2f}"
        ci = "n/a" if math.isnan(r["lo"]) else f"[{r['lo']:+.2f}, {r['hi']:+.2f}]"
        lines.append(f"| {where} | {names[r['kind']]} | {tau} | {ci} | {r['skipped']} |")
    if any(r["kind"] == "selection" for r in ranks):
        lines += ["", "The last row is the same fine-tuned models scored on two disjoint sets of examples: how "
                  "well the full protocol ranks itself. A proxy is not expected to rank the final macro much "
                  "better than that."]
    top = ", ".join(f"`{t.name}` ({t.macro:.2f})" for t in ranked[:2])
    lines += ["", "## Each stopping rule, replayed", "",
              f"{rules[0]['orders']} shuffled orders of the recorded trials per rule (the same orders for each); "
              f"the true top 2 by final macro: {top}. Compute saved = 1 - the replayed arm's busy core-seconds / "
              "the full arm's (every trial through every rung and GLUE), and / a sweep without early stopping "
              "(every rung's distillation and GLUE, no proxy); mean over the orders (min–max where they differ)."
              + _halving_note(len(trials), spec), "",
              "| rule | tolerance | reach GLUE (mean) | best reaches GLUE | both top 2 reach GLUE | ≥ 1 of top 2 "
              "reaches GLUE | macro lost (mean) | saved vs full arm | saved vs no early stopping |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in rules:
        tolerance = "–" if r["tolerance"] is None else f"{r['tolerance']:g}"
        lines.append(f"| {r['rule']} | {tolerance} | {r['finished']:.2f} | {_pct(r['best'])} | "
                     f"{_pct(r['top2'])} | {_pct(r['any2'])} | {r['lost']:.2f} | {_saved(r['saved'])} | "
                     f"{_saved(r['saved_no_es'])} |")
    if arm.notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in arm.notes]
    return "\n".join(lines) + "\n"


def machine() -> str:
    """This machine: the CPU model (/proc/cpuinfo) and os.cpu_count()."""
    model = "unknown CPU"
    try:
        model = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                     if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} cores (os.cpu_count())"


def commit() -> str:
    """`git rev-parse --short HEAD`, with a note when the working tree has uncommitted changes."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + (" (working tree with uncommitted changes)" if git("status", "--porcelain", "--untracked-files=no")
                   else "")


def page(body: str, results_dir: Path, spec_path: str, wall: float | None, command: str) -> str:
    """The dated measurement page: date, commit, machine, `command`, the full arm, the tables."""
    today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    started = [c.read_config().started for c in ResultsDir(results_dir).candidates() if c.has_config()]
    first = min((s for s in started if s), default=None)
    ran = (datetime.datetime.fromtimestamp(first, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
           if first else "not recorded")
    return "\n".join([
        f"# {today}: does the proxy rank what the full protocol ranks? (`benchmarks/early_stopping.py`)", "",
        f"- **Date:** {today} (the full arm's first trial started {ran}).",
        f"- **Commit:** {commit()}.",
        f"- **Machine:** {machine()}" + (" (the analysis's; the full arm's is not recorded in its results dir)."
                                         if wall is None else "."),
        f"- **Command:** `{command}`",
        f"- **Full arm:** `{shown(spec_path)}` with search.early_stopping.tolerance = {FULL_ARM_TOLERANCE:g}, "
        f"results in `{shown(results_dir)}`" + (f", {wall:.0f} s wall." if wall is not None else "."), "", body])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spec", default=str(ROOT / "sweeps" / "bench-early-stopping.yaml"),
                   help="the spec, with search.early_stopping (its tolerance is the replayed rules')")
    p.add_argument("--out", default=str(ROOT / "results" / "bench-early-stopping"), help="the full arm's results dir")
    p.add_argument("--cache-dir", help="passed to run_sweep.py (default: its own)")
    p.add_argument("--from", dest="from_dir", help="analyse this full arm's results dir; run nothing")
    p.add_argument("--orders", type=int, default=100, help="shuffled orders replayed per rule (default 100)")
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples for Kendall's tau (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the shuffles and the bootstrap")
    p.add_argument("--write-page", help="also write the dated measurement page here")
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    try:
        spec = load_spec(args.spec)
    except SpecError as e:
        sys.exit(f"error: {e}")
    if spec.search.early_stopping is None:
        sys.exit("error: --spec: the spec needs search.early_stopping (the full arm scores its proxy at every rung)")
    wall = None
    results = Path(args.from_dir or args.out)
    if not args.from_dir:
        wall = run_full_arm(args.spec, results, args.cache_dir)
    written = (ResultsDir(results).read_spec() or {}).get("search", {}).get("early_stopping") or {}
    es = spec.search.early_stopping
    if (written.get("rungs"), written.get("reduction_factor")) != (es.rungs, es.reduction_factor):
        sys.exit(f"error: {results}: its spec.json's rungs / reduction_factor differ from {args.spec}'s "
                 f"({es.rungs}, {es.reduction_factor}); pass the spec it was run from with --spec")
    arm = load_full_arm(results, spec)
    if len(arm.trials) < 3:
        sys.exit(f"error: {results}: {len(arm.trials)} trials with every rung and a result; the analysis needs 3")
    body = markdown(arm, spec, rank_agreement(arm.trials, args.resamples, args.seed),
                    replay_rules(arm, spec, args.orders, args.seed), args.resamples)
    print(body)
    if args.write_page:
        words = [shown(a) if os.path.isabs(a) else a for a in argv]
        command = "python benchmarks/early_stopping.py " + " ".join(shlex.quote(a) for a in words)
        Path(args.write_page).write_text(page(body, results, args.spec, wall, command.strip()))
        print(f"wrote {args.write_page}")


if __name__ == "__main__":
    main()
