"""The confirmation stage (issue 22, point 2): after the search, the finalists and the paper defaults
are distilled again with fresh distillation seeds, fine-tuned with more fine-tuning seeds and scored
on the validation splits.

Why: the search picks its winner on the scores of one run of each candidate, so the winner's own
run is the luckiest of many and its scores are biased upward (the winner's curse). The finalists
(search.confirm.top_k, by the search's first objective, computed on the held-out selection slices
of the train splits) are therefore run again with seeds the search never used
(search.confirm.distill_seeds), beside the row they are compared with (the paper defaults,
search.points_to_evaluate[0], rerun the same way), and scored on the validation splits, rows the
search never ranked on. Several distillation runs per row put the run-to-run noise of distillation
into the leaderboard's intervals (distil.evaluation.confidence reads predictions/run<d>/ as runs).

What it writes (distil.store.records.ConfirmationDir), per row `<name>` (`paper_defaults` or a
finalist's trial id) and distillation run d = 0, 1, ... (seed distill_seeds[d]):

    <out>/confirmation/<name>/predictions/run<d>/<task><split>-seed<s>.parquet   run d's validation predictions
    <out>/confirmation/<name>/run<d>.json    run d distilled and fine-tuned (ConfirmationRun): not redone
    <out>/confirmation/<name>/result.json    Result(kind="confirmation") once every run is done

Each run is a Ray task holding no CPU itself (like distil.search.references' distilled rows): its
Train workers and fine-tuning tasks queue for CPUs with the others', so several runs proceed as CPUs
free up. Interrupted (Ctrl-C, a killed driver), `resume` continues it: rows with a result.json are
skipped, runs with a run<d>.json are not redone, and a distillation continues from its Train run's
last checkpoint (`confirm-<name>-d<d>`). A run's Train checkpoints and its student's weights are
deleted once its fine-tuning is on disk: reruns are for scores, the search's finalists keep theirs.
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from dataclasses import replace

import numpy as np
import ray

from distil.config.spec import SweepSpec
from distil.evaluation import scores
from distil.search.context import SweepContext, encoder_parameters, paper_default_point
from distil.search.finetune_runs import finetune_seconds, submit_glue
from distil.search.train import CandidateParams, distill_student
from distil.store import storage
from distil.store.logs import to_log_file
from distil.store.records import PAPER_DEFAULTS, ConfirmationRun, Result, ResultsDir, confirm_run_name


def finalists(results_dir, spec: SweepSpec) -> list[str]:
    """Trial ids of the search's finalists in results dir `results_dir`: the `spec.search.confirm.top_k`
    finished candidates (result.json with a finite first objective) with the best first objective
    (spec.search.objectives[0]: selection scores, never the validation rows), best first, ties by
    trial id; fewer if fewer finished. Unreadable result.json files are passed over (the
    leaderboard reports them as corrupt)."""
    ranked = ResultsDir(results_dir).by_selection(spec.search.objectives[0])
    return [name for name, value in ranked if value is not None][:spec.search.confirm.top_k]


def rows_to_confirm(ctx: SweepContext) -> dict[str, CandidateParams]:
    """{row name: its parameters}: `paper_defaults` (search.points_to_evaluate[0] over the fixed
    values, as its reference row has them), then the finalists best first (their result.json's params)."""
    spec = ctx.spec
    point = paper_default_point(spec)  # SearchSpec refuses confirm without one
    rows = {PAPER_DEFAULTS: ctx.params(point)}
    for trial_id in finalists(ctx.out, spec):
        rows[trial_id] = CandidateParams.from_values(ctx.results.candidate(trial_id).read_result().params)
    return rows


def run_confirmation(ctx: SweepContext) -> list[str]:
    """Distil and fine-tune every (row, distillation seed) of the confirmation stage (module
    docstring), then write each row's result.json as soon as its runs are done. Prints one console
    line per event; the libraries' output goes to the sweep's log. Returns the names of the rows
    with a failed run (said on stderr; `resume` retries them), sorted."""
    confirm = ctx.spec.search.confirm
    rows = rows_to_confirm(ctx)
    ctx.results.write_confirmation_plan({"paper_defaults": PAPER_DEFAULTS,
                                         "finalists": [n for n in rows if n != PAPER_DEFAULTS],
                                         "distill_seeds": list(confirm.distill_seeds), "seeds": list(confirm.seeds)})
    print(f"confirmation: {', '.join(rows)}, distillation seeds {confirm.distill_seeds}, fine-tuning seeds "
          f"{confirm.seeds}", flush=True)
    pending, done = {}, {}
    for name, params in rows.items():
        row = ctx.results.confirmation(name)
        if row.has_result() and _current(row.read_result().params, confirm):
            print(f"confirmation: {name} done before this start", flush=True)
            continue
        done[name] = {}
        for d, seed in enumerate(confirm.distill_seeds):
            if row.read_run(d) is None:
                print(f"confirmation: distilling {name} with distillation seed {seed} (run {d})", flush=True)
            pending[_confirm_run.remote(ctx, name, params, d, seed)] = (name, d)
    failed = set()
    while pending:
        [ref], _ = ray.wait(list(pending), num_returns=1)
        name, d = pending.pop(ref)
        try:
            done[name][d] = ray.get(ref)
        except ray.exceptions.RayError as e:
            cause = getattr(e, "cause", None) or e  # a RayTaskError carries the task's own exception
            reason = next((ln for ln in str(cause).splitlines() if ln.strip()), "")
            print(f"confirmation: {name} run {d} failed ({type(cause).__name__}: {reason[:200]}); `resume` retries it",
                  file=sys.stderr, flush=True)
            failed.add(name)
            continue
        if len(done[name]) == len(confirm.distill_seeds):
            result = confirmation_result(ctx, name, rows[name], [done[name][r] for r in sorted(done[name])])
            ctx.results.confirmation(name).write_result(result)
            quality, spec = ctx.spec.search.objectives[0], ctx.spec
            score = scores.row_from_result(result.to_json(), spec.glue.include_wnli, spec.tasks).get(quality, math.nan)
            print(f"confirmation: {name} done ({quality} {score:.2f} on the validation splits, mean of "
                  f"{len(done[name])} distillation runs)", flush=True)
    return sorted(failed)


def _current(params: dict, confirm) -> bool:
    """Whether a confirmation row's result.json was made with the spec's distillation and fine-tuning
    seeds (a resumed sweep whose confirm section changed redoes the others)."""
    return (list(params.get("distill_seeds") or []) == list(confirm.distill_seeds)
            and list(params.get("seeds") or confirm.seeds) == list(confirm.seeds))


def confirmation_result(ctx: SweepContext, name: str, params: CandidateParams, runs: list[ConfirmationRun]) -> Result:
    """A confirmation row's result.json from its runs (in run order): every run's fine-tuning dicts,
    each given its run's index under "run" (every run has the same seeds, so a split's mean over all
    dicts is the mean over runs of each run's mean over seeds: what the leaderboard checks against
    the predictions), and `distill` = {"loss": mean of the runs' last losses, "runs": each run's last
    metrics}."""
    glue = tuple({**r, "run": run.run} for run in runs for r in run.glue)
    losses = [run.distill["loss"] for run in runs if run.distill.get("loss") is not None]
    distill = {"loss": float(np.mean(losses)) if losses else None, "runs": [run.distill for run in runs]}
    return Result(
        kind="confirmation", params={**params.to_json(), "of": name, "distill_seeds": [r.distill_seed for r in runs],
                                     "seeds": list(ctx.spec.search.confirm.seeds)},
        glue=glue, distill=distill, n_params=runs[0].n_params, profile=ctx.profile(params.n_layers, params.shape),
        distill_seconds=round(sum(run.distill_seconds for run in runs), 1),
        finetune_seconds=finetune_seconds(list(glue)), provenance=ctx.provenance)


@ray.remote(num_cpus=0)
def _confirm_run(ctx: SweepContext, name: str, params: CandidateParams, run: int, seed: int) -> ConfirmationRun:
    """Distillation run `run` of row `name`: distil `params` for the candidates' full steps with
    distillation seed `seed` (Train run confirm-<name>-d<run>), fine-tune the student with the
    confirmation's seeds into predictions/run<run>/, write run<run>.json. A run with its run<run>.json
    is read back, not redone. Then its Train checkpoints and its student are deleted."""
    to_log_file(*ctx.log)
    row, train_run = ctx.results.confirmation(name), confirm_run_name(name, run)
    record = row.read_run(run)
    confirm, seeds_on = ctx.spec.search.confirm, ctx.spec.glue.seeds_on
    expected = {(t.name, int(s)) for t in ctx.tasks for s in confirm.seeds_for(t, seeds_on)}
    ran = {(g["task"], int(g["seed"])) for g in record.glue} if record is not None else set()
    if record is not None and (record.distill_seed != seed or ran != expected):
        # Started under other seeds (the spec's confirm section changed before a resume): redone, so the
        # row's result.json and its predictions describe the same runs.
        shutil.rmtree(row.run_predictions_dir(run), ignore_errors=True)
        row.run_file(run).unlink(missing_ok=True)
        storage.remove_tree(storage.join(ctx.job.storage, train_run))
        record = None
    if record is None:
        student = row.run_student_dir(run)
        t0 = time.time()
        # The seed sets the student's random init, the batches and the masks (distil.search.train).
        metrics = distill_student(train_run, params, replace(ctx.job, seed=seed), student)
        distill_seconds = round(time.time() - t0, 1)
        refs = submit_glue(str(student), ctx.spec.glue, ctx.tasks, ctx.caches, None, ctx.log,
                           pred_dir=str(row.run_predictions_dir(run)),
                           seeds_for=lambda task: confirm.seeds_for(task, seeds_on))
        runs = ray.get(list(refs.values()))
        record = ConfirmationRun(run=run, distill_seed=seed, glue=tuple(runs), distill=metrics,
                                 distill_seconds=distill_seconds, n_params=encoder_parameters(str(student)))
        row.write_run(record)
    # Also after a restart that found run<d>.json: the driver may have died before these went.
    storage.remove_tree(storage.join(ctx.job.storage, train_run))
    shutil.rmtree(row.run_student_dir(run), ignore_errors=True)
    return record
