"""Ray Tune wiring: Optuna proposes loss weights, temperature and layer selection; each trial
distils one student (Ray Train) and fine-tunes it on GLUE (Ray tasks); the macro-score is the
Tune metric.

Results live in plain files so a leaderboard can be rebuilt at any time, also from an
interrupted sweep (Tune's own tables can drop resumed trials):
    <out>/teacher/result.json                 reference row (teacher's GLUE scores, head-fit report)
    <out>/teacher/finetuned/<task>/           the teacher fine-tuned on a task_distill task
    <out>/references/<name>/result.json       random_init and task-kd-<task> reference rows
    <out>/candidates/<trial_id>/config.json   written when the trial starts
    <out>/candidates/<trial_id>/result.json   written when it ends (scores, macro, params, profile)
    <out>/candidates/<trial_id>/student/      the distilled student (HF dir)
    <out>/**/predictions/<task>-seed<s>.parquet
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import ray
from ray import tune
from ray.tune.search.optuna import OptunaSearch
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
from transformers import AutoModel, DistilBertForMaskedLM

from distil import leaderboard
from distil.glue import TASKS, available_tasks, finetune_and_evaluate
from distil.profile import measure
from distil.spec import Choice, FloatRange, GlueSpec, SweepSpec, layer_key
from distil.student import count_parameters, save_student
from distil.task_distill import distil_on_task
from distil.train import distil_student

METRIC = "macro_score"


def glue_settings(glue: GlueSpec, task: str) -> dict:
    """Per-task fine-tuning settings: the spec's defaults with its `overrides[task]` applied."""
    base = {k: getattr(glue, k) for k in ("lr", "epochs", "batch_size", "max_seq_len", "max_train_examples", "max_eval_examples", "use_gpu")}
    override = glue.overrides.get(task)
    return base | ({k: v for k, v in override.model_dump().items() if v is not None} if override else {})


def submit_glue(model_dir: str, glue: GlueSpec, out_dir: Path, save_tasks: tuple[str, ...] = ()) -> dict:
    """Start one Ray task per (GLUE task, seed); they run in parallel. Returns {(task, seed): ref}.

    For each task in `save_tasks`, the first seed's fine-tuned model is kept in
    `out_dir/finetuned/<task>` (the teacher for task-specific distillation)."""
    wanted = list(TASKS) if glue.tasks == "all" else glue.tasks
    tasks = available_tasks(glue.data, wanted)
    # Opt out of the calling trial's placement group (it holds only the trial's own tiny
    # bundle): fine-tuning tasks take the cluster's free CPUs/GPUs, in parallel.
    remote = ray.remote(finetune_and_evaluate).options(**_task_options(glue))
    pred_dir = str(out_dir / "predictions")

    def save_dir(task, seed):
        return str(out_dir / "finetuned" / task) if task in save_tasks and seed == glue.seeds[0] else None

    return {(t, s): remote.remote(model_dir, t, glue_settings(glue, t), s, glue.data, pred_dir, save_dir(t, s))
            for t in tasks for s in glue.seeds_for(t)}


def _task_options(glue: GlueSpec) -> dict:
    return {"num_cpus": 1, "num_gpus": 1 if glue.use_gpu else 0,
            "scheduling_strategy": PlacementGroupSchedulingStrategy(placement_group=None)}


def finetune_seconds(runs: list[dict]) -> float:
    """Seconds of GLUE fine-tuning + evaluation summed over a model's runs (tasks x seeds).

    A cost of compute, not wall time: the runs are Ray tasks that run in parallel."""
    return round(sum(r["seconds"] for r in runs), 1)


def _write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    tmp.replace(path)


def run_candidate(config: dict, ctx: dict) -> None:
    """Tune function trainable: distil -> fine-tune on GLUE -> report the macro-score."""
    trial_id = tune.get_context().get_trial_id()
    cand = Path(ctx["out"]) / "candidates" / trial_id
    params = {**ctx["fixed"], **config}
    t0 = time.time()
    _write_json(cand / "config.json", {"params": params, "started": t0})
    distil_metrics = distil_student(f"distill-{trial_id}", params, ctx, cand / "student")
    t_distil = time.time() - t0
    glue = GlueSpec(**ctx["glue"])
    # Timed before this trial's own GLUE tasks start, so they do not slow the measurement.
    profile = measure(str(cand / "student"), "student", data=glue.data)
    runs = ray.get(list(submit_glue(str(cand / "student"), glue, cand).values()))
    n_params = count_parameters(DistilBertForMaskedLM.from_pretrained(cand / "student").distilbert)
    result = {
        "kind": "student", "params": params, "distill": distil_metrics, "glue": runs,
        "n_params": n_params, "profile": profile, "distill_seconds": round(t_distil, 1),
        "finetune_seconds": finetune_seconds(runs), "seconds": round(time.time() - t0, 1),
    }
    _write_json(cand / "result.json", result)
    row = leaderboard.row_from_result(result, include_wnli=glue.include_wnli)
    tune.report({METRIC: row[METRIC], **{k: v for k, v in row.items() if isinstance(v, float)}})


def _tune_domain(param):
    if isinstance(param, FloatRange):
        return tune.loguniform(param.low, param.high) if param.log else tune.uniform(param.low, param.high)
    assert isinstance(param, Choice)
    return tune.choice([layer_key(c) if isinstance(c, (list, str)) else c for c in param.choices])


def run_search(spec: SweepSpec, ctx: dict) -> tune.ResultGrid:
    """Run the Tune + Optuna search; one trial per candidate, `max_concurrent` at a time."""
    space = {name: _tune_domain(p) for name, p in spec.search.searched().items()}
    points = [{k: layer_key(v) if k == "layer_selection" else v for k, v in p.items()} for p in spec.search.points_to_evaluate]
    searcher = OptunaSearch(metric=METRIC, mode="max", seed=spec.search.seed, points_to_evaluate=points or None) if space else None
    trainable = tune.with_resources(tune.with_parameters(run_candidate, ctx=ctx), {"CPU": 0, "memory": 1})
    tuner = tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=spec.search.num_candidates,
                                    max_concurrent_trials=spec.search.max_concurrent),
        run_config=tune.RunConfig(name="tune", storage_path=ctx["out"]),
    )
    return tuner.fit()


@dataclass
class Reference:
    """A reference row in flight: its result.json (minus the GLUE runs) and the runs' refs."""

    out_dir: Path  # where result.json goes
    result: dict  # kind, params, n_params, ...
    refs: list
    profile_dir: str | None = None  # a model dir to time when the runs are done (the teacher)


def submit_references(spec: SweepSpec, teacher_source: str, teacher_dir: str, head_fit: dict, n_layers: int,
                      out: Path) -> list[Reference]:
    """Start the reference rows' GLUE runs as Ray tasks, to run alongside the search:

    * `teacher` (<out>/teacher): the teacher itself, the row "% of teacher retained" divides by;
    * `random_init` (<out>/references/random_init): a student with the candidates' architecture
      and random weights, not distilled: the row "gain over no distillation" subtracts;
    * `task-kd-<task>` (<out>/references/...): task-specific distillation from the teacher
      fine-tuned on that task (its first seed's run above), when the spec has `task_distill`.
    """
    glue = spec.glue
    kd = spec.task_distill
    teacher_runs = submit_glue(teacher_source, glue, out / "teacher", save_tasks=tuple(kd.tasks) if kd else ())
    refs = [Reference(out / "teacher", {"kind": "teacher", "params": {"model": teacher_source}, "head_fit": head_fit,
                                        "n_params": count_parameters(AutoModel.from_pretrained(teacher_source))},
                      list(teacher_runs.values()), profile_dir=teacher_source)]
    if glue.random_init_reference:
        ref_dir = out / "references" / "random_init"
        n_params = save_student(teacher_dir, n_layers, "random_init", spec.seed, str(ref_dir / "student"))
        refs.append(Reference(ref_dir, {"kind": "reference", "params": {"layer_selection": "random_init"}, "n_params": n_params},
                              list(submit_glue(str(ref_dir / "student"), glue, ref_dir).values())))
    if kd:
        remote = ray.remote(_distil_on_task_after).options(**_task_options(glue))
        for task in kd.tasks:
            firsts = [ref for (t, seed), ref in teacher_runs.items() if t == task and seed == glue.seeds[0]]
            if not firsts:
                print(f"task_distill: {task} has no data in {glue.data}; skipped", flush=True)
                continue
            ref_dir = out / "references" / f"task-kd-{task}"
            params = {"task": task, "alpha_ce": kd.alpha_ce, "temperature": kd.temperature,
                      "layer_selection": layer_key(kd.layer_selection)}
            runs = [remote.remote(firsts[0], teacher_dir, str(out / "teacher" / "finetuned" / task), task, n_layers,
                                  kd.layer_selection, kd.alpha_ce, kd.temperature, glue_settings(glue, task), seed,
                                  glue.data, str(ref_dir / "predictions"))
                    for seed in glue.seeds_for(task)]
            refs.append(Reference(ref_dir, {"kind": "task_distill", "params": params}, runs))
    return refs


def _distil_on_task_after(teacher_run: dict, *args) -> dict:
    """distil_on_task, started by Ray once `teacher_run` (the fine-tuned teacher) has finished."""
    return distil_on_task(*args)


def finish_references(refs: list[Reference], glue_data: str) -> None:
    """Wait for the reference rows' runs and write each one's result.json (`glue_data`: the
    GLUE dir or hub id whose text times the profiled models)."""
    for ref in refs:
        runs = ray.get(ref.refs)
        result = {**ref.result, "glue": runs, "finetune_seconds": finetune_seconds(runs)}
        if ref.profile_dir:
            result["profile"] = measure(ref.profile_dir, result["kind"], data=glue_data)
        _write_json(ref.out_dir / "result.json", result)
