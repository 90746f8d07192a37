"""Evaluation runs on Ray: one Ray task per (task, seed) of a model's fine-tuning, the task data tokenised once
per sweep, the early-stopping proxy (a small fine-tuning protocol that ranks students cheaply; held-out
perplexity for a causal LM), and a causal LM's perplexity (one Ray task per model)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import ray
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from distil.config.glue import glue_task
from distil.config.spec import GlueSpec, SweepSpec
from distil.config.tasks import Task
from distil.evaluation import scores
from distil.evaluation.finetune import finetune_and_evaluate, prepare_task_data
from distil.evaluation.perplexity import held_out_perplexity, score_saved_model
from distil.search.context import SweepContext
from distil.store.logs import to_log_file
from distil.store.records import ProxyPoint, RowDir


def submit_glue(model_dir: str, glue: GlueSpec, tasks, caches: dict | None, row: RowDir | None,
                log: tuple[str, bool] | None, save_tasks: tuple[str, ...] = (), pred_dir: str | None = None,
                seeds_for: Callable[[Task], list[int]] | None = None) -> dict:
    """Start one Ray task per (task, seed) of `tasks` (distil.config.tasks.Task, GLUE's and the spec's
    own) under the protocol `glue` (settings, overrides, seeds); they run in parallel. Returns
    {(task name, seed): ref}.

    `caches`: task name -> tokenised splits (prepare_task_caches). Predictions go to `pred_dir`,
    else the row's predictions dir (none if both are None). For each task in `save_tasks`, the
    first seed's fine-tuned model is kept in the row's `finetuned/<task>` (a TeacherDir: the teacher
    for task-specific distillation). `seeds_for`: a task's seeds (default glue.seeds_for; the
    confirmation stage passes its own). `log`: (log dir, verbose) for the tasks' output."""
    remote = ray.remote(logged).options(**task_options(glue))
    pred_dir = pred_dir or (str(row.predictions_dir) if row else None)
    seeds_for = seeds_for or glue.seeds_for

    def save_dir(task, seed):
        return str(row.finetuned_dir(task)) if task in save_tasks and seed == glue.seeds[0] else None

    return {(t.name, s): remote.remote(log, finetune_and_evaluate, model_dir, t, glue.settings(t.name), s, pred_dir,
                                       save_dir(t.name, s), data_cache=(caches or {}).get(t.name))
            for t in tasks for s in seeds_for(t)}


def submit_lm(model_dir: str, spec: SweepSpec, log: tuple[str, bool] | None, selection_corpus: str | None = None):
    """Start the perplexity scoring of the saved causal LM at `model_dir` on lm_eval's WikiText split as one
    Ray task (one CPU, and one GPU with lm_eval.use_gpu; outside the caller's placement group, as a fine-tuning
    task); its ref, resolving to distil.evaluation.perplexity.score_saved_model's dict (a row's result.json
    "lm"). `selection_corpus`: the tokenised distillation corpus (DistillJob.corpus_dir), whose held-out eval
    sequences a candidate's selection perplexity is computed on ("lm"["selection"]). None without lm_eval."""
    lm = spec.lm_eval
    if lm is None:
        return None
    remote = ray.remote(logged).options(**lm_task_options(spec))
    return remote.remote(log, score_saved_model, model_dir, lm.data, window=lm.window, stride=lm.stride,
                         max_articles=lm.max_articles, batch_size=lm.batch_size, selection_corpus=selection_corpus)


def prepare_task_caches(spec: SweepSpec, tasks, tokenizer, cache_dir) -> dict:
    """Tokenise every task split once per sweep (every student shares the teacher's tokenizer):
    {task name: dir}. Each task is prepared with the largest budget any protocol of the sweep asks
    of it (the full protocol, the early-stopping proxy), since a smaller one takes a prefix."""
    proxy = proxy_glue(spec) if proxy_tasks(spec) else None
    out = {}
    for t in {t.name: t for t in [*tasks, *proxy_tasks(spec)]}.values():
        settings = [spec.glue.settings(t.name)] + ([proxy.settings(t.name)] if proxy and t.name in proxy.tasks else [])
        widest = {k: None if any(s.limit(k) is None for s in settings) else max(s.limit(k) for s in settings)
                  for k in ("max_train_examples", "max_eval_examples")}
        # The rows to load are given whole (training rows and selection slice): no slice on top.
        out[t.name] = prepare_task_data(t, replace(settings[0], **widest, selection_examples=0), tokenizer, cache_dir)
    return out


def proxy_tasks(spec: SweepSpec) -> list[Task]:
    """The early-stopping proxy's tasks (GLUE rows bound to glue.data, or the spec's own); none for the
    perplexity proxy of a causal teacher's sweep (SweepSpec.perplexity_proxy)."""
    es = spec.search.early_stopping
    own = {t.name: t for t in spec.tasks}
    if es is None or spec.perplexity_proxy():
        return []
    return [own.get(n) or glue_task(spec.glue.data, n) for n in es.proxy.tasks]


def logged(log: tuple[str, bool] | None, fn, *args, **kwargs):
    """Run `fn(*args, **kwargs)` in a Ray task whose output goes to the sweep's log (distil.store.logs)."""
    if log:
        to_log_file(*log)
    return fn(*args, **kwargs)


def task_options(glue: GlueSpec) -> dict:
    """Ray options of a fine-tuning task: one CPU (and glue.gpus_per_task of a GPU with glue.use_gpu: a
    fraction lets several small fine-tuning runs share one GPU), outside the caller's placement group."""
    # Opt out of the calling trial's placement group (it holds only the trial's own tiny bundle):
    # fine-tuning tasks take the cluster's free CPUs/GPUs, in parallel.
    return {"num_cpus": 1, "num_gpus": glue.gpus_per_task if glue.use_gpu else 0,
            "scheduling_strategy": PlacementGroupSchedulingStrategy(placement_group=None)}


def lm_task_options(spec: SweepSpec) -> dict:
    """Ray options of a perplexity-scoring task: one CPU, and one whole GPU with lm_eval.use_gpu (task_options)."""
    return task_options(spec.glue.model_copy(update={"use_gpu": spec.lm_eval.use_gpu, "gpus_per_task": 1.0}))


def proxy_glue(spec: SweepSpec) -> GlueSpec:
    """The early-stopping proxy as a GLUE protocol: its tasks, small samples, the first seed."""
    p, g = spec.search.early_stopping.proxy, spec.glue
    return g.model_copy(update={"tasks": p.tasks, "max_train_examples": p.max_train_examples,
                                "max_eval_examples": p.max_eval_examples,
                                "selection_examples": p.max_eval_examples, "epochs": p.epochs,
                                "lr": p.lr or g.lr, "batch_size": p.batch_size or g.batch_size,
                                "seeds": g.seeds[:1], "overrides": {}})


def finetune_seconds(runs: list[dict]) -> float:
    """Seconds of GLUE fine-tuning + evaluation summed over a model's runs (tasks x seeds).

    A cost of compute, not wall time: the runs are Ray tasks that run in parallel."""
    return round(sum(r["seconds"] for r in runs), 1)


def proxy_point(model_dir: str, ctx: SweepContext) -> ProxyPoint:
    """A model's score on the early-stopping proxy: each proxy task's score on its held-out
    selection slice of the train split (the mean of its metrics; GLUE's or an own task's; never the
    validation rows the leaderboard reports), their mean, and the seconds its runs took.

    A causal teacher's sweep (SweepSpec.perplexity_proxy) scores held-out perplexity instead: one Ray task
    (one CPU, and one GPU with lm_eval.use_gpu) runs distil.evaluation.perplexity.held_out_perplexity on the
    distillation corpus' held-out eval split (teacher.head_fit.eval_sequences sequences: those the search
    selects on), and

        proxy_score = −ln PPL = −Σ NLL / Σ scored tokens   (nats per token; higher is better, ≤ 0)

    so that a rung's gain over the undistilled init (Rung.gain_over_init) is ln PPL_init − ln PPL_student
    and search.early_stopping.tolerance is in nats per token (perplexity_point)."""
    if ctx.spec.perplexity_proxy():
        remote = ray.remote(logged).options(**lm_task_options(ctx.spec))
        return perplexity_point(ray.get(remote.remote(ctx.log, held_out_perplexity, model_dir, ctx.job.corpus_dir)))
    runs = ray.get(list(submit_glue(model_dir, proxy_glue(ctx.spec), proxy_tasks(ctx.spec), ctx.caches, None,
                                    ctx.log).values()))
    proxy = {r["task"]: scores.selection_score(r) for r in runs}
    return ProxyPoint(proxy=proxy, proxy_score=float(np.mean(list(proxy.values()))),
                      proxy_seconds=finetune_seconds(runs))


def perplexity_point(ppl: dict) -> ProxyPoint:
    """The perplexity proxy's point from held_out_perplexity's record `ppl`: proxy_score = −ln ppl["perplexity"]
    (minus the mean NLL per token, nats; higher is better), `proxy` = its perplexity, sequences and scored
    tokens, proxy_seconds = the scoring's wall seconds (model loading included)."""
    return ProxyPoint(proxy={k: ppl[k] for k in ("perplexity", "sequences", "tokens")},
                      proxy_score=-math.log(ppl["perplexity"]), proxy_seconds=ppl["seconds"])
