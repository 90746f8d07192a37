"""One Tune trial per candidate: distil its student in rungs, score it, fine-tune it, report.

A trial distils its student with Ray Train in rungs (one rung without early stopping), scores
the student on the cheap proxy after each rung and reports `proxy_score` to Tune (whose
successive-halving scheduler, distil.search.halving, may pause or stop it there), then fine-tunes
the survivor on the full GLUE protocol (one Ray task per task and seed), scores its perplexity with
`lm_eval` (one Ray task), and reports the objectives.
What it writes, where: distil.store.records (candidates/<trial_id>/config.json, progress.json,
result.json, status.json, student/).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import replace

import ray
from ray import tune

from distil.config.objectives import COST_OBJECTIVES
from distil.evaluation import scores
from distil.search.context import SweepContext, encoder_parameters
from distil.search.finetune_runs import finetune_seconds, proxy_point, submit_glue, submit_lm
from distil.search.references import init_proxy
from distil.search.train import CandidateParams, distill_student
from distil.search.tuner import objectives
from distil.store.logs import to_log_file
from distil.store.records import (BUDGET, GAIN, PROXY, CandidateDir, Result, Rung, TrialConfig, TrialStatus,
                                  train_run_name)


def candidate_params(ctx: SweepContext, config: dict) -> CandidateParams:
    """A trial's full parameters: the searched `config` over the spec's fixed values and width (SweepContext.params)."""
    return ctx.params(config)


def run_candidate(config: dict, ctx: SweepContext) -> None:
    """Tune function trainable: distil in rungs (proxy score after each) -> full GLUE -> report.

    Restarted (after a pause for its rung's decision, or after a crash and `resume`), it reports
    its last rung in progress.json again, for the scheduler to decide on, skips the rungs done and
    continues its distillation from the Train run's last checkpoint; a trial that had already ended
    (result.json, or status.json `stopped`, for this config) is reported from disk and not run again.
    A failure writes status.json (`failed`, first line of the reason) before Tune records the error."""
    to_log_file(*ctx.log)
    trial_id = tune.get_context().get_trial_id()
    cand = ctx.results.candidate(trial_id)
    params = candidate_params(ctx, config)
    if _replay_ended(cand, params, ctx):
        return
    cand.clear_status()  # a retried trial is not failed (yet)
    if not cand.has_config():  # a resumed trial keeps its first start time
        cand.write_config(TrialConfig(params=params.to_json(), started=time.time()))
    try:
        _distill_and_score(trial_id, cand, params, ctx)
    except Exception as e:
        reason = next((ln for ln in str(e).splitlines() if ln.strip()), "")
        cand.write_status(TrialStatus("failed", f"{type(e).__name__}: {reason}"[:300]))
        raise


def _distill_and_score(trial_id: str, cand: CandidateDir, params: CandidateParams, ctx: SweepContext) -> None:
    spec, es = ctx.spec, ctx.spec.search.early_stopping
    fractions = es.fractions() if es else [1.0]
    rungs = cand.read_rungs()
    # Step 0 of the learning curve: the undistilled student of this init (shared per rule); a rung
    # is judged on what distillation added to it.
    init = init_proxy(ctx, params.layer_selection, params.n_layers, params.shape).proxy_score if es else None
    if es and rungs:
        # A restarted trial: Tune keeps no decision across a pause or a driver restart, so the
        # scheduler hears the last rung again and pauses, stops or continues the trial on it.
        tune.report(_rung_report(rungs[-1], True))
    for k, fraction in enumerate(fractions):
        if k < len(rungs):
            continue  # done before a restart
        t0 = time.time()
        metrics = distill_student(train_run_name(trial_id), params, ctx.job, cand.student_dir,
                                  stop_at_fraction=fraction)
        rung = Rung(rung=k, fraction=fraction, step=metrics.get("step"), tokens=metrics.get("tokens"), distill=metrics,
                    distill_seconds=round(time.time() - t0, 1), rung_budget=es.reduction_factor ** k if es else None,
                    proxy=proxy_point(str(cand.student_dir), ctx) if es else None, init_proxy_score=init)
        rungs.append(rung)
        cand.write_rungs(rungs)
        # The status table shows each rung (with early stopping, the scheduler decides here: the
        # report blocks until Tune has, and a paused or stopped trial ends inside it).
        tune.report(_rung_report(rung, es is not None))
    # With lm_eval: perplexity (WikiText, and the corpus' held-out eval split to select on) beside the fine-tuning
    lm = submit_lm(str(cand.student_dir), spec, ctx.log, selection_corpus=ctx.job.corpus_dir)
    runs = ray.get(list(submit_glue(str(cand.student_dir), spec.glue, ctx.tasks, ctx.caches, cand, ctx.log).values()))
    result = Result(
        kind="student", params=params.to_json(), distill=rungs[-1].distill, rungs=tuple(rungs), glue=tuple(runs),
        n_params=encoder_parameters(str(cand.student_dir)), profile=ctx.profile(params.n_layers, params.shape),
        distill_seconds=round(sum(r.distill_seconds for r in rungs), 1),
        proxy_seconds=round(sum(r.proxy.proxy_seconds if r.proxy else 0.0 for r in rungs), 1),
        finetune_seconds=finetune_seconds(runs), provenance=ctx.provenance, lm=ray.get(lm) if lm else None,
    )
    # The leaderboard's row of this result (validation splits, WikiText test: what is reported), and the
    # objectives the search ranks by: scores on the held-out selection slices (the perplexity on the
    # distillation corpus' held-out eval split), costs from the row.
    row = _row(result, ctx)
    selection = scores.selection_row(result.to_json(), include_wnli=spec.glue.include_wnli, tasks=spec.tasks)
    names, _ = objectives(spec)
    result = replace(result, objectives={n: _finite_or_none((row if n in COST_OBJECTIVES else selection).get(n))
                                         for n in names})
    cand.write_result(result)
    # Test hook (tests/test_resume.py): hold the trial between its result on disk and Tune's
    # record of it, the window in which a dying driver leaves Tune a trial to restart.
    time.sleep(float(os.environ.get("DISTIL_TEST_PAUSE_AFTER_RESULT_S", "0")))
    _report_result(result, row, ctx)


def _row(result: Result, ctx: SweepContext) -> dict:
    """The leaderboard row of a result (distil.evaluation.scores)."""
    return scores.row_from_result(result.to_json(), include_wnli=ctx.spec.glue.include_wnli, tasks=ctx.spec.tasks)


def _report_result(result: Result, row: dict, ctx: SweepContext) -> None:
    """The trial's last report to Tune: its objectives (what the searcher learns from: selection
    scores) and, for Tune's table, its leaderboard row's (`_row`) validation scores."""
    names, _ = objectives(ctx.spec)
    tune.report({**result.objectives, **{k: v for k, v in row.items() if isinstance(v, float) and k not in names}})


def _rung_report(rung: Rung, early_stopping: bool) -> dict:
    """What Tune hears after a rung (with early stopping, the scheduler decides on it)."""
    scored = {PROXY: rung.proxy_score, GAIN: rung.gain_over_init, BUDGET: rung.rung_budget} if early_stopping else {}
    return {**scored, "rung": rung.rung,
            "step": rung.step, "tokens": rung.tokens, "loss": rung.distill.get("loss"),
            "tokens_per_s": rung.distill.get("tokens_per_s")}


def _replay_ended(cand: CandidateDir, params: CandidateParams, ctx: SweepContext) -> bool:
    """A trial Tune starts again although it had ended: the driver died after the trial wrote its
    result.json (or the janitor its `stopped` status.json) and before Tune recorded the end. Report
    what is on disk (the result; or the rungs, on which the trial stops again) instead of
    distilling and fine-tuning again. Returns whether it did (False: nothing ended for this config)."""
    recorded = cand.read_config()
    if recorded is None or recorded.params != params.to_json():
        return False
    if cand.has_result():
        result = cand.read_result()
        _report_result(result, _row(result, ctx), ctx)
        return True
    status = cand.read_status()
    if status is not None and status.status == "stopped":
        for rung in cand.read_rungs():
            tune.report(_rung_report(rung, ctx.spec.search.early_stopping is not None))
        return True
    return False


def _finite_or_none(v):
    return float(v) if v is not None and isinstance(v, (int, float)) and math.isfinite(v) else None
