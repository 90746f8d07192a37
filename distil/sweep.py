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


def submit_references(spec: SweepSpec, teacher_source: str, teacher_dir: str, head_fit: dict, n_layers: int,
                      out: Path) -> list:
    """Start the reference rows' GLUE runs as Ray tasks, to run alongside the search, each row
    with a writer task that saves its result.json as soon as its runs are done (so an
    interrupted sweep keeps it). Returns the writers' refs (`finish_references` waits on them).

    * `teacher` (<out>/teacher): the teacher itself, the row "% of teacher retained" divides by;
    * `random_init` (<out>/references/random_init): a student with the candidates' architecture
      and random weights, not distilled: the row "gain over no distillation" subtracts;
    * `task-kd-<task>` (<out>/references/...): task-specific distillation from the teacher
      fine-tuned on that task (its first seed's run above), when the spec has `task_distill`.
    """
    glue = spec.glue
    kd = spec.task_distill
    teacher_runs = submit_glue(teacher_source, glue, out / "teacher", save_tasks=tuple(kd.tasks) if kd else ())
    teacher = {"kind": "teacher", "params": {"model": teacher_source}, "head_fit": head_fit,
               "n_params": count_parameters(AutoModel.from_pretrained(teacher_source))}
    writers = [_write_reference.options(num_cpus=1).remote(  # 1 CPU: it times the teacher
        str(out / "teacher"), teacher, (teacher_source, glue.data), *teacher_runs.values())]
    if glue.random_init_reference:
        ref_dir = out / "references" / "random_init"
        n_params = save_student(teacher_dir, n_layers, "random_init", spec.seed, str(ref_dir / "student"))
        runs = submit_glue(str(ref_dir / "student"), glue, ref_dir).values()
        writers.append(_write_reference.options(num_cpus=0).remote(
            str(ref_dir), {"kind": "reference", "params": {"layer_selection": "random_init"}, "n_params": n_params},
            None, *runs))
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
            writers.append(_write_reference.options(num_cpus=0).remote(
                str(ref_dir), {"kind": "task_distill", "params": params}, None, *runs))
    return writers


def _distil_on_task_after(teacher_run: dict, *args) -> dict:
    """distil_on_task, started by Ray once `teacher_run` (the fine-tuned teacher) has finished."""
    return distil_on_task(*args)


@ray.remote
def _write_reference(out_dir: str, result: dict, profile: tuple[str, str] | None, *runs: dict) -> str:
    """Ray task, started once every GLUE run of a reference row has finished (Ray resolves the
    refs passed as `runs`): writes the row's result.json. `profile` = (model dir, GLUE data whose
    text times it) measures the model's size and CPU latency first (the teacher)."""
    result = {**result, "glue": list(runs), "finetune_seconds": finetune_seconds(list(runs))}
    if profile:
        result["profile"] = measure(profile[0], result["kind"], data=profile[1])
    _write_json(Path(out_dir) / "result.json", result)
    return out_dir


def finish_references(writers: list) -> None:
    """Wait until every reference row's result.json is written."""
    ray.get(writers)
