"""Ray Tune wiring: Optuna proposes loss weights, temperature and layer selection; each trial
distils one student (Ray Train) and fine-tunes it on GLUE (Ray tasks); the macro-score is the
Tune metric.

Results live in plain files so a leaderboard can be rebuilt at any time, also from an
interrupted sweep (Tune's own tables can drop resumed trials):
    <out>/teacher/result.json                 reference row (teacher's GLUE scores, head-fit report)
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

from distil import leaderboard
from distil.glue import TASKS, available_tasks, finetune_and_evaluate
from distil.profile import measure
from distil.spec import Choice, FloatRange, GlueSpec, SweepSpec, layer_key
from distil.student import count_parameters
from distil.train import distil_student

METRIC = "macro_score"


def glue_settings(glue: GlueSpec, task: str) -> dict:
    """Per-task fine-tuning settings: the spec's defaults with its `overrides[task]` applied."""
    base = {k: getattr(glue, k) for k in ("lr", "epochs", "batch_size", "max_seq_len", "max_train_examples", "max_eval_examples", "use_gpu")}
    override = glue.overrides.get(task)
    return base | ({k: v for k, v in override.model_dump().items() if v is not None} if override else {})


def submit_glue(model_dir: str, glue: GlueSpec, out_dir: Path) -> list:
    """Start one Ray task per (GLUE task, seed); returns their object refs (they run in parallel)."""
    wanted = list(TASKS) if glue.tasks == "all" else glue.tasks
    tasks = available_tasks(glue.data, wanted)
    # Opt out of the calling trial's placement group (it holds only the trial's own tiny
    # bundle): fine-tuning tasks take the cluster's free CPUs/GPUs, in parallel.
    remote = ray.remote(finetune_and_evaluate).options(
        num_cpus=1, num_gpus=1 if glue.use_gpu else 0,
        scheduling_strategy=PlacementGroupSchedulingStrategy(placement_group=None))
    pred_dir = str(out_dir / "predictions")
    return [remote.remote(model_dir, t, glue_settings(glue, t), s, glue.data, pred_dir) for t in tasks for s in glue.seeds]


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
    runs = ray.get(submit_glue(str(cand / "student"), glue, cand))
    from transformers import DistilBertForMaskedLM

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


def finish_teacher(refs: list, teacher_source: str, head_fit: dict, out: Path, glue_data: str) -> dict:
    """Collect the teacher's GLUE runs (from `submit_glue`) and write teacher/result.json."""
    from transformers import AutoModel

    runs = ray.get(refs)
    result = {"kind": "teacher", "params": {"model": teacher_source}, "head_fit": head_fit, "glue": runs,
              "n_params": count_parameters(AutoModel.from_pretrained(teacher_source)),
              "profile": measure(teacher_source, "teacher", data=glue_data), "finetune_seconds": finetune_seconds(runs)}
    _write_json(out / "teacher" / "result.json", result)
    return result
