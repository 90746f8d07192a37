"""What runs inside the sweep: one Tune trial per candidate, and the reference rows beside them.

A trial distils its student with Ray Train in rungs (one rung without early stopping), scores
the student on the cheap proxy after each rung and reports `proxy_score` to Tune (whose ASHA
scheduler may stop it there), then fine-tunes the survivor on the full GLUE protocol (one Ray
task per task and seed) and reports the objectives.

Results live in plain files so a leaderboard can be rebuilt at any time and a killed sweep
resumed (Tune's own tables can drop resumed trials):
    <out>/spec.json, run.json                 the validated spec; what `resume` needs (dirs, depth)
    <out>/profiles.json                       size and CPU latency per architecture, timed alone
    <out>/teacher/result.json                 reference row (teacher's GLUE scores, head-fit report)
    <out>/teacher/finetuned/<task>/           the teacher fine-tuned on a task_distill task
    <out>/references/<name>/result.json       random_init and task-kd-<task> reference rows
    <out>/candidates/<trial_id>/config.json   written when the trial starts (params, start time)
    <out>/candidates/<trial_id>/progress.json one entry per finished rung (step, tokens, proxy)
    <out>/candidates/<trial_id>/result.json   written when it ends (scores, objectives, params)
    <out>/candidates/<trial_id>/status.json   `stopped` (by ASHA) or `failed` (with the reason)
    <out>/candidates/<trial_id>/student/      the distilled student (HF dir; pruned for most)
    <out>/**/predictions/<task><split>-seed<s>.parquet
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import ray
from ray import tune
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
from transformers import AutoConfig, AutoModel

from distil.evaluation import scores
from distil.store import storage
from distil.evaluation.finetune import finetune_and_evaluate, prepare_task_data
from distil.config.glue import glue_task
from distil.config.layers import layer_key, parse_layer_key
from distil.store.logs import to_log_file
from distil.evaluation.profile import measure
from distil.search.tuner import BUDGET, PROXY, objectives
from distil.config.spec import GlueSpec, SweepSpec
from distil.science.student import count_parameters, save_student
from distil.science.task_distill import distil_on_task
from distil.config.tasks import Task
from distil.search.train import CandidateParams, DistillJob, distil_student


@dataclass(frozen=True)
class SweepContext:
    """What every trial needs, passed typed across the Ray boundary (tune.with_parameters)."""

    spec: SweepSpec
    out: str  # absolute results dir
    job: DistillJob  # teacher, corpus, distillation settings, Train storage
    n_layers: int  # student depth when it is not searched
    profiles: dict  # architecture key -> distil.evaluation.profile.measure() dict (see profile_architectures)
    provenance: dict  # spec hash, git commit, data and teacher hashes (distil.store.provenance)
    tasks: tuple[Task, ...] = ()  # what every model is fine-tuned on: GLUE's with data, the spec's own
    caches: dict = None  # task name -> its tokenised splits (distil.evaluation.finetune.prepare_task_data)
    verbose: bool = False  # workers print to the console instead of <out>/logs/workers.log

    @property
    def log(self) -> tuple[str, bool]:
        """(log dir, verbose) for distil.store.logs.to_log_file in every process of the sweep."""
        return str(Path(self.out) / "logs"), self.verbose


def candidate_params(ctx: SweepContext, config: dict) -> CandidateParams:
    """A trial's full parameters: the searched `config` over the spec's fixed values."""
    merged = {**ctx.spec.search.fixed(), "n_layers": ctx.n_layers, **config}
    return CandidateParams(**{k: merged[k] for k in CandidateParams.__dataclass_fields__ if k in merged})


def is_paper_default(spec: SweepSpec, params: dict) -> bool:
    """Whether `params` are the first points_to_evaluate (the paper's defaults, by convention)."""
    points = spec.search.points_to_evaluate
    if not points:
        return False
    first = {k: layer_key(v) if k == "layer_selection" else v for k, v in points[0].items()}
    return all(params.get(k) == v for k, v in first.items())


# ---------------------------------------------------------------- GLUE as Ray tasks
def submit_glue(model_dir: str, glue: GlueSpec, tasks, caches: dict | None, out_dir: Path | None,
                log: tuple[str, bool] | None, save_tasks: tuple[str, ...] = ()) -> dict:
    """Start one Ray task per (task, seed) of `tasks` (distil.config.tasks.Task, GLUE's and the spec's
    own) under the protocol `glue` (settings, overrides, seeds); they run in parallel. Returns
    {(task name, seed): ref}.

    `caches`: task name -> tokenised splits (prepare_task_caches). Predictions go to
    `out_dir/predictions` (none if out_dir is None). For each task in `save_tasks`, the first
    seed's fine-tuned model is kept in `out_dir/finetuned/<task>` (the teacher for task-specific
    distillation). `log`: (log dir, verbose) for the tasks' output."""
    remote = ray.remote(_logged).options(**_task_options(glue))
    pred_dir = str(out_dir / "predictions") if out_dir else None

    def save_dir(task, seed):
        return str(out_dir / "finetuned" / task) if task in save_tasks and seed == glue.seeds[0] else None

    return {(t.name, s): remote.remote(log, finetune_and_evaluate, model_dir, t, glue.settings(t.name), s, pred_dir,
                                       save_dir(t.name, s), data_cache=(caches or {}).get(t.name))
            for t in tasks for s in glue.seeds_for(t)}


def prepare_task_caches(spec: SweepSpec, tasks, tokenizer, cache_dir: str | Path) -> dict:
    """Tokenise every task split once per sweep (every student shares the teacher's tokenizer):
    {task name: dir}. Each task is prepared with the largest budget any protocol of the sweep asks
    of it (the full protocol, the early-stopping proxy), since a smaller one takes a prefix."""
    proxy = proxy_glue(spec) if spec.search.early_stopping else None
    out = {}
    for t in {t.name: t for t in [*tasks, *proxy_tasks(spec)]}.values():
        settings = [spec.glue.settings(t.name)] + ([proxy.settings(t.name)] if proxy and t.name in proxy.tasks else [])
        widest = {k: None if any(s[k] is None for s in settings) else max(s[k] for s in settings)
                  for k in ("max_train_examples", "max_eval_examples")}
        out[t.name] = prepare_task_data(t, {**settings[0], **widest}, tokenizer, cache_dir)
    return out


def proxy_tasks(spec: SweepSpec) -> list[Task]:
    """The early-stopping proxy's tasks (GLUE rows bound to glue.data, or the spec's own)."""
    es = spec.search.early_stopping
    own = {t.name: t for t in spec.tasks}
    return [own.get(n) or glue_task(spec.glue.data, n) for n in es.proxy.tasks] if es else []


def _logged(log: tuple[str, bool] | None, fn, *args, **kwargs):
    """Run `fn(*args, **kwargs)` in a Ray task whose output goes to the sweep's log (distil.store.logs)."""
    if log:
        to_log_file(*log)
    return fn(*args, **kwargs)


def _task_options(glue: GlueSpec) -> dict:
    # Opt out of the calling trial's placement group (it holds only the trial's own tiny bundle):
    # fine-tuning tasks take the cluster's free CPUs/GPUs, in parallel.
    return {"num_cpus": 1, "num_gpus": 1 if glue.use_gpu else 0,
            "scheduling_strategy": PlacementGroupSchedulingStrategy(placement_group=None)}


def proxy_glue(spec: SweepSpec) -> GlueSpec:
    """The early-stopping proxy as a GLUE protocol: its tasks, small samples, the first seed."""
    p, g = spec.search.early_stopping.proxy, spec.glue
    return g.model_copy(update={"tasks": p.tasks, "max_train_examples": p.max_train_examples,
                                "max_eval_examples": p.max_eval_examples, "epochs": p.epochs,
                                "lr": p.lr or g.lr, "batch_size": p.batch_size or g.batch_size,
                                "seeds": g.seeds[:1], "overrides": {}})


def finetune_seconds(runs: list[dict]) -> float:
    """Seconds of GLUE fine-tuning + evaluation summed over a model's runs (tasks x seeds).

    A cost of compute, not wall time: the runs are Ray tasks that run in parallel."""
    return round(sum(r["seconds"] for r in runs), 1)


def _write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    tmp.replace(path)


def read_rungs(cand: Path) -> list[dict]:
    """The rungs a candidate has finished (progress.json), oldest first."""
    progress = cand / "progress.json"
    return json.loads(progress.read_text())["rungs"] if progress.exists() else []


# ---------------------------------------------------------------- the trial
def run_candidate(config: dict, ctx: SweepContext) -> None:
    """Tune function trainable: distil in rungs (proxy score after each) -> full GLUE -> report.

    Restarted after a crash (`run_sweep.py resume`), it skips the rungs in progress.json and its
    distillation continues from the Train run's last checkpoint. A failure writes status.json
    (`failed`, first line of the reason) before Tune records the error."""
    to_log_file(*ctx.log)
    trial_id = tune.get_context().get_trial_id()
    cand = Path(ctx.out) / "candidates" / trial_id
    params = candidate_params(ctx, config)
    (cand / "status.json").unlink(missing_ok=True)  # a retried trial is not failed (yet)
    if not (cand / "config.json").exists():  # a resumed trial keeps its first start time
        label = "paper defaults" if is_paper_default(ctx.spec, asdict(params)) else None
        _write_json(cand / "config.json", {"params": asdict(params), "started": time.time(), "label": label})
    try:
        _distil_and_score(trial_id, cand, params, ctx)
    except Exception as e:
        reason = next((ln for ln in str(e).splitlines() if ln.strip()), "")
        _write_json(cand / "status.json", {"status": "failed", "reason": f"{type(e).__name__}: {reason}"[:300]})
        raise


def _distil_and_score(trial_id: str, cand: Path, params: CandidateParams, ctx: SweepContext) -> None:
    spec, es = ctx.spec, ctx.spec.search.early_stopping
    fractions = es.fractions() if es else [1.0]
    rungs = read_rungs(cand)
    if es:  # step 0 of the learning curve: the undistilled student of this init (shared per rule)
        init_proxy(ctx, params.layer_selection, params.n_layers)
    for k, fraction in enumerate(fractions):
        if k < len(rungs):
            continue  # done before a restart
        t0 = time.time()
        metrics = distil_student(f"distill-{trial_id}", params, ctx.job, cand / "student", stop_at_fraction=fraction)
        rung = {"rung": k, "fraction": fraction, "step": metrics.get("step"), "tokens": metrics.get("tokens"),
                "distill": metrics, "distill_seconds": round(time.time() - t0, 1)}
        if es:
            rung[BUDGET] = es.reduction_factor ** k
            rung.update(_proxy_point(str(cand / "student"), ctx))
        rungs.append(rung)
        _write_json(cand / "progress.json", {"rungs": rungs})
        # The status table shows each rung (with early stopping, ASHA decides here: the report
        # blocks until Tune has, and a stopped trial ends inside it).
        tune.report({**({PROXY: rung[PROXY], BUDGET: rung[BUDGET]} if es else {}), "rung": k, "step": rung["step"],
                     "tokens": rung["tokens"], "loss": metrics.get("loss"), "tokens_per_s": metrics.get("tokens_per_s")})
    runs = ray.get(list(submit_glue(str(cand / "student"), spec.glue, ctx.tasks, ctx.caches, cand, ctx.log).values()))
    result = {
        "kind": "student", "params": asdict(params), "distill": rungs[-1]["distill"], "rungs": rungs, "glue": runs,
        "n_params": encoder_parameters(str(cand / "student")),
        "profile": ctx.profiles.get(student_arch(params.n_layers)),
        "distill_seconds": round(sum(r["distill_seconds"] for r in rungs), 1),
        "proxy_seconds": round(sum(r.get("proxy_seconds", 0.0) for r in rungs), 1),
        "finetune_seconds": finetune_seconds(runs), "provenance": ctx.provenance,
    }
    row = scores.row_from_result(result, include_wnli=spec.glue.include_wnli, tasks=spec.tasks)  # own tasks' columns, tasks_macro
    names, _ = objectives(spec)
    result["objectives"] = {n: _finite_or_none(row.get(n)) for n in names}
    _write_json(cand / "result.json", result)
    tune.report({**result["objectives"], **{k: v for k, v in row.items() if isinstance(v, float) and k not in names}})


def _task_score(run: dict) -> float:
    """A run's task score (GLUE's or an own task's): mean over its splits of the mean of each split's metrics."""
    return scores.task_score(run)  # scores.macro_score counts GLUE tasks only: NaN for an own task


def _finite_or_none(v):
    return float(v) if v is not None and isinstance(v, (int, float)) and math.isfinite(v) else None


# ---------------------------------------------------------------- profiles, alone on the machine
def student_arch(n_layers: int) -> str:
    """The key of a student architecture in profiles.json (latency depends on shape, not weights)."""
    return f"student-{n_layers}L"


def profile_architectures(teacher_source: str, teacher_dir: str, depths: list[int], seed: int, data: str) -> dict:
    """Size and CPU latency of the teacher and of one student per depth, timed one after another
    before anything else is submitted to the cluster, so that nothing shares the cores. Every
    student of a depth has this profile: same shape, same cost (weights do not change latency)."""
    out = {"teacher": measure(teacher_source, "teacher", data=data)}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sorted(set(depths)):
            save_student(teacher_dir, n, "first", seed, f"{tmp}/{n}")
            out[student_arch(n)] = measure(f"{tmp}/{n}", "student", data=data)
    return out


# ---------------------------------------------------------------- reference rows
def submit_references(ctx: SweepContext, teacher_source: str, head_fit: dict, skip: set[str] = frozenset()) -> list:
    """Start the reference rows' GLUE runs as Ray tasks, to run alongside the search, each row
    with a writer task that saves its result.json as soon as its runs are done (so an
    interrupted sweep keeps it). Rows named in `skip` (already written) are not run again.
    Returns the writers' refs (`finish_references` waits on them).

    * `teacher` (<out>/teacher): the teacher itself, the row "% of teacher retained" divides by;
    * `random_init` (<out>/references/random_init): a student with the candidates' architecture
      and random weights, not distilled: the row "gain over no distillation" subtracts;
    * `mlm_only` (<out>/references/mlm_only): the same shape from random weights, trained with
      the MLM loss alone on the candidates' budget: the row "the value of distillation" subtracts;
    * `init_only-<rule>`: the paper-default init with no distillation step (the row
      "what distillation added to the copied layers" subtracts; run_sweep adds the best
      candidate's rule after the search);
    * `task-kd-<task>` (<out>/references/...): task-specific distillation from the teacher
      fine-tuned on that task (its first seed's run above), when the spec has `task_distill`;
    * with early stopping, the teacher's proxy score (teacher/proxy.json, the learning curves' ceiling).
    """
    spec, out, glue, kd = ctx.spec, Path(ctx.out), ctx.spec.glue, ctx.spec.task_distill
    writers = []
    common = {"provenance": ctx.provenance}
    teacher_runs = {}
    if "teacher" not in skip:
        teacher_runs = submit_glue(teacher_source, glue, ctx.tasks, ctx.caches, out / "teacher", ctx.log,
                                   save_tasks=tuple(kd.tasks) if kd else ())
        teacher = {"kind": "teacher", "params": {"model": teacher_source}, "head_fit": head_fit,
                   "n_params": encoder_parameters(teacher_source), "profile": ctx.profiles.get("teacher"), **common}
        writers.append(_write_reference.remote(str(out / "teacher"), teacher, *teacher_runs.values()))
    if glue.random_init_reference and "random_init" not in skip:
        ref_dir = out / "references" / "random_init"
        n_params = save_student(ctx.job.teacher_dir, ctx.n_layers, "random_init", spec.seed, str(ref_dir / "student"))
        runs = submit_glue(str(ref_dir / "student"), glue, ctx.tasks, ctx.caches, ref_dir, ctx.log).values()
        writers.append(_write_reference.remote(
            str(ref_dir), {"kind": "reference", "params": {"layer_selection": "random_init", "n_layers": ctx.n_layers},
                           "n_params": n_params, "profile": ctx.profiles.get(student_arch(ctx.n_layers)), **common}, *runs))
    if glue.mlm_only_reference and "mlm_only" not in skip:
        writers.append(_mlm_only_row.remote(ctx))
    if glue.init_only_reference:
        writers += submit_init_only(ctx, paper_default_rule(spec))
    if spec.search.early_stopping and not (out / "teacher" / "proxy.json").exists():
        writers.append(_teacher_proxy.remote(ctx, teacher_source))
    for task in (kd.tasks if kd else []):
        name = f"task-kd-{task}"
        if name in skip:
            continue
        # The teacher fine-tuned on the task: its first-seed run now, or saved by an earlier start.
        firsts = [ref for (t, seed), ref in teacher_runs.items() if t == task and seed == glue.seeds[0]]
        task_obj = next((t for t in ctx.tasks if t.name == task), None)
        if task_obj is None or (not firsts and not (out / "teacher" / "finetuned" / task).is_dir()):
            print(f"task_distill: {task} has no data in {glue.data}; skipped", flush=True)
            continue
        ref_dir = out / "references" / name
        params = {"task": task, "alpha_ce": kd.alpha_ce, "temperature": kd.temperature,
                  "layer_selection": layer_key(kd.layer_selection)}
        remote = ray.remote(_logged).options(**_task_options(glue))
        runs = [remote.remote(ctx.log, _distil_on_task_after, firsts[0] if firsts else None, ctx.job.teacher_dir,
                              str(out / "teacher" / "finetuned" / task), task_obj, ctx.n_layers, kd.layer_selection,
                              kd.alpha_ce, kd.temperature, glue.settings(task), seed, str(ref_dir / "predictions"),
                              ctx.caches.get(task))
                for seed in glue.seeds_for(task_obj)]
        writers.append(_write_reference.remote(str(ref_dir), {"kind": "task_distill", "params": params, **common}, *runs))
    return writers


def paper_default_rule(spec: SweepSpec) -> str:
    """The layer-selection rule of the paper-default candidate (points_to_evaluate[0]), else the
    fixed rule, else the first searched choice."""
    points, sel = spec.search.points_to_evaluate, spec.search.layer_selection
    if points and "layer_selection" in points[0]:
        return layer_key(points[0]["layer_selection"])
    return layer_key(sel.choices[0] if hasattr(sel, "choices") else sel)


def init_only_name(rule: str) -> str:
    """Reference-row name of the undistilled student initialised with `rule`."""
    return f"init_only-{rule.replace(',', '-')}"


def submit_init_only(ctx: SweepContext, rule: str) -> list:
    """The `init_only-<rule>` row: the candidates' architecture initialised from the teacher's
    layers by `rule`, no distillation step, fine-tuned under the protocol (its result.json is
    written by a writer task as soon as its runs end). [] if the row exists already."""
    ref_dir = Path(ctx.out) / "references" / init_only_name(rule)
    if (ref_dir / "result.json").exists():
        return []
    n_params = save_student(ctx.job.teacher_dir, ctx.n_layers, parse_layer_key(rule), ctx.spec.seed, str(ref_dir / "student"))
    runs = submit_glue(str(ref_dir / "student"), ctx.spec.glue, ctx.tasks, ctx.caches, ref_dir, ctx.log).values()
    info = {"kind": "reference", "params": {"layer_selection": rule, "n_layers": ctx.n_layers}, "n_params": n_params,
            "profile": ctx.profiles.get(student_arch(ctx.n_layers)), "provenance": ctx.provenance}
    return [_write_reference.remote(str(ref_dir), info, *runs)]


@ray.remote(num_cpus=0)
def _mlm_only_row(ctx: SweepContext) -> str:
    """The `mlm_only` row: a random-weight student trained with the MLM loss alone (alpha_mlm 1,
    every teacher term 0, so no teacher forward) for the candidates' steps, then fine-tuned.
    A Ray task that holds no CPU itself: its Train workers and GLUE tasks queue with the trials'."""
    to_log_file(*ctx.log)
    ref_dir = Path(ctx.out) / "references" / "mlm_only"
    params = CandidateParams(alpha_ce=0.0, alpha_mlm=1.0, alpha_cos=0.0, temperature=1.0, layer_selection="random_init",
                             n_layers=ctx.n_layers)
    t0 = time.time()
    metrics = distil_student("reference-mlm_only", params, ctx.job, ref_dir / "student")
    distill_seconds = round(time.time() - t0, 1)
    runs = ray.get(list(submit_glue(str(ref_dir / "student"), ctx.spec.glue, ctx.tasks, ctx.caches, ref_dir, ctx.log).values()))
    storage.remove_tree(storage.join(ctx.job.storage, "reference-mlm_only"))  # the student is copied out
    result = {"kind": "reference", "params": {**asdict(params)}, "distill": metrics, "glue": runs,
              "n_params": encoder_parameters(str(ref_dir / "student")), "profile": ctx.profiles.get(student_arch(ctx.n_layers)),
              "distill_seconds": distill_seconds,
              "finetune_seconds": finetune_seconds(runs), "provenance": ctx.provenance}
    _write_json(ref_dir / "result.json", result)
    return str(ref_dir)


def best_candidate_rule(out: str | Path, metric: str = "macro_score") -> str | None:
    """The layer-selection rule of the best finished candidate by `metric` (None if none finished)."""
    best = None
    for path in Path(out).glob("candidates/*/result.json"):
        result = json.loads(path.read_text())
        value = result.get("objectives", {}).get(metric)
        if value is not None and (best is None or value > best[0]):
            best = (value, result["params"]["layer_selection"])
    return best[1] if best else None


def init_proxy(ctx: SweepContext, rule: str, n_layers: int) -> dict:
    """The proxy score of the undistilled student (`rule`, `n_layers`): step 0 of every learning
    curve of that init. Computed once per sweep by the first trial that needs it, then read from
    references/init_only-<rule>/proxy-<n>L.json."""
    path = Path(ctx.out) / "references" / init_only_name(rule) / f"proxy-{n_layers}L.json"
    if path.exists():
        return json.loads(path.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        save_student(ctx.job.teacher_dir, n_layers, parse_layer_key(rule), ctx.spec.seed, tmp)
        point = _proxy_point(tmp, ctx)
    _write_json(path, point)
    return point


def _proxy_point(model_dir: str, ctx: SweepContext) -> dict:
    """{'proxy': {task: score}, 'proxy_score', 'proxy_seconds'} of a model on the early-stopping proxy."""
    runs = ray.get(list(submit_glue(model_dir, proxy_glue(ctx.spec), proxy_tasks(ctx.spec), ctx.caches, None, ctx.log).values()))
    proxy = {r["task"]: _task_score(r) for r in runs}
    return {"proxy": proxy, PROXY: float(np.mean(list(proxy.values()))), "proxy_seconds": finetune_seconds(runs)}


@ray.remote(num_cpus=0)
def _teacher_proxy(ctx: SweepContext, teacher_source: str) -> str:
    """The teacher's proxy score (the top line of the learning-curve plot): teacher/proxy.json."""
    to_log_file(*ctx.log)
    path = Path(ctx.out) / "teacher" / "proxy.json"
    _write_json(path, _proxy_point(teacher_source, ctx))
    return str(path)


def encoder_parameters(model_dir: str) -> int:
    """Parameters of a BERT-family encoder as the leaderboard counts them for every row: word and
    position embeddings and the layers, without token-type embeddings, pooler or heads (a
    DistilBERT student has none of these, so teacher and student counts compare like for like)."""
    model = AutoModel.from_pretrained(model_dir, add_pooling_layer=False) if AutoConfig.from_pretrained(model_dir).model_type == "bert" \
        else AutoModel.from_pretrained(model_dir)
    token_type = getattr(getattr(model, "embeddings", None), "token_type_embeddings", None)
    return count_parameters(model) - (token_type.weight.numel() if token_type is not None else 0)


def _distil_on_task_after(teacher_run: dict | None, *args) -> dict:
    """distil_on_task, started by Ray once `teacher_run` (the fine-tuned teacher) has finished
    (None: it finished before a restart)."""
    return distil_on_task(*args)


@ray.remote(num_cpus=0)
def _write_reference(out_dir: str, result: dict, *runs: dict) -> str:
    """Ray task, started once every GLUE run of a reference row has finished (Ray resolves the
    refs passed as `runs`): writes the row's result.json."""
    result = {**result, "glue": list(runs), "finetune_seconds": finetune_seconds(list(runs))}
    _write_json(Path(out_dir) / "result.json", result)
    return out_dir


def finish_references(writers: list) -> None:
    """Wait until every reference row's result.json is written."""
    ray.get(writers)
