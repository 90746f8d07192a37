"""The reference rows beside the candidates: the teacher, students that were not distilled
(random_init, init_only-<rule>), one pre-trained without a teacher (mlm_only), the paper defaults
distilled in full (paper_defaults) and task-specific distillation (task-kd-<task>), each fine-tuned
under the candidates' protocol as Ray tasks that run alongside the search; and the proxy scores that
anchor the learning curves (the teacher's, and step 0 of each init)."""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace

import ray
from transformers import AutoConfig

from distil.config.families import CLM, family_of
from distil.config.layers import layer_key, parse_layer_key
from distil.config.settings import LossWeights, StudentShape
from distil.evaluation.task_distill import TaskDistillRun, distill_on_task
from distil.science.student import save_student
from distil.search.context import SweepContext, encoder_parameters, paper_default_point, paper_default_rule
from distil.search.finetune_runs import finetune_seconds, logged, proxy_point, submit_glue, submit_lm, task_options
from distil.search.train import CandidateParams, distill_student
from distil.store import storage
from distil.store.logs import to_log_file
from distil.store.records import CLM_ONLY, PAPER_DEFAULTS, ProxyPoint, Result, ResultsDir, RowDir, row_name


def submit_references(ctx: SweepContext, teacher_source: str, head_fit: dict, skip: set[str] = frozenset()) -> list:
    """Start the reference rows' GLUE runs as Ray tasks, to run alongside the search, each row
    with a writer task that saves its result.json as soon as its runs are done (so an
    interrupted sweep keeps it). Rows named in `skip` (already written) are not run again.
    Returns the writers' refs (`finish_references` waits on them).

    Rows of students are built at the candidates' shape, one per width when the width is searched, named by it
    when it is not the teacher's (`mlm_only-4L192H12F768`; distil.store.records.row_name); task-kd at the first.

    * `teacher` (<out>/teacher): the teacher itself, the row "% of teacher retained" divides by;
    * `random_init` (<out>/references/random_init): a student with the candidates' architecture
      and random weights, not distilled: the row "gain over no distillation" subtracts;
    * `mlm_only` (<out>/references/mlm_only): the same shape from random weights, trained with
      the MLM loss alone on the candidates' budget: the row "the value of distillation" subtracts;
      `clm_only` for a causal (gpt2) teacher, trained with the causal LM loss alone;
    * `paper_defaults` (<out>/references/paper_defaults): search.points_to_evaluate[0] distilled for
      the candidates' full budget and fine-tuned, never stopped early: the row every candidate is
      compared with (delta_vs_default). Not a trial, so its place in the search order gives it no
      pass through the scheduler (a trial that starts a rung first would meet no rival there);
    * `init_only-<rule>`: the paper-default init with no distillation step (the row
      "what distillation added to the copied layers" subtracts; the run adds the best
      candidate's rule after the search);
    * `task-kd-<task>` (<out>/references/...): task-specific distillation from the teacher
      fine-tuned on that task (its first seed's run above), when the spec has `task_distill`;
    * with early stopping, the teacher's proxy score (teacher/proxy.json, the learning curves' ceiling).

    With lm_eval every row (but task-kd) is scored by perplexity too (one Ray task each, submit_lm).
    """
    spec, results, glue, kd = ctx.spec, ctx.results, ctx.spec.glue, ctx.spec.task_distill
    teacher = results.teacher()
    writers = []
    teacher_runs = {}
    if teacher.name not in skip:
        teacher_runs = submit_glue(teacher_source, glue, ctx.tasks, ctx.caches, teacher, ctx.log,
                                   save_tasks=tuple(kd.tasks) if kd else ())
        row = Result(kind="teacher", params={"model": teacher_source}, head_fit=head_fit,
                     n_params=encoder_parameters(teacher_source), profile=ctx.profiles.get("teacher"),
                     provenance=ctx.provenance)
        lm = submit_lm(teacher_source, spec, ctx.log)
        writers.append(_write_reference.remote(teacher, row, lm, *teacher_runs.values()))
    for shape in ctx.shapes:  # one set of rows per width a student can have (one unless the width is searched)
        writers += _no_teacher_rows(ctx, shape, skip)
    key, shape = ctx.key(ctx.n_layers), ctx.shape  # task-kd at the first width ('': the teacher's)
    point = paper_default_point(spec)
    if point is not None and PAPER_DEFAULTS not in skip:
        writers.append(_distilled_row.remote(ctx, PAPER_DEFAULTS, ctx.params(point)))
    if glue.init_only_reference:
        writers += submit_init_only(ctx, paper_default_rule(spec))
    if spec.search.early_stopping and not teacher.proxy_file.exists():
        writers.append(_teacher_proxy.remote(ctx, teacher_source))
    for task in (kd.tasks if kd else []):
        row_dir = results.task_kd(task, key)
        if row_dir.name in skip:
            continue
        # The teacher fine-tuned on the task: its first-seed run now, or saved by an earlier start.
        firsts = [ref for (t, seed), ref in teacher_runs.items() if t == task and seed == glue.seeds[0]]
        task_obj = next((t for t in ctx.tasks if t.name == task), None)
        if task_obj is None or (not firsts and not teacher.finetuned_dir(task).is_dir()):
            print(f"task_distill: {task} has no data in {glue.data}; skipped", flush=True)
            continue
        run = TaskDistillRun(teacher_mlm_dir=ctx.job.teacher_dir, teacher_task_dir=str(teacher.finetuned_dir(task)),
                             task=task_obj, n_layers=ctx.n_layers, layer_selection=kd.layer_selection, shape=shape,
                             alpha_ce=kd.alpha_ce, temperature=kd.temperature, settings=glue.settings(task),
                             pred_dir=str(row_dir.predictions_dir), data_cache=(ctx.caches or {}).get(task))
        remote = ray.remote(logged).options(**task_options(glue))
        runs = [remote.remote(ctx.log, _distill_on_task_after, firsts[0] if firsts else None, run, seed)
                for seed in glue.seeds_for(task_obj)]
        params = {"task": task, "alpha_ce": kd.alpha_ce, "temperature": kd.temperature,
                  "layer_selection": layer_key(kd.layer_selection),
                  # the shape at another width than the teacher's (the leaderboard's shape columns); none as before
                  **({"n_layers": ctx.n_layers, **shape.given()} if shape.given() else {})}
        row = Result(kind="task_distill", params=params, provenance=ctx.provenance)
        writers.append(_write_reference.remote(row_dir, row, None, *runs))
    return writers


def _no_teacher_rows(ctx: SweepContext, shape: StudentShape, skip: set[str]) -> list:
    """Start the `random_init` and `mlm_only` (`clm_only` for a causal teacher: lm_only_name) rows of width
    `shape` (named by it: row_name; StudentShape() is the teacher's width, the names as always), unless off in
    the spec or named in `skip`."""
    glue, key, writers = ctx.spec.glue, ctx.key(ctx.n_layers, shape), []
    random_init = ctx.results.reference(row_name("random_init", key))
    if glue.random_init_reference and random_init.name not in skip:
        n_params = save_student(ctx.job.teacher_dir, ctx.n_layers, "random_init", ctx.spec.seed,
                                str(random_init.student_dir), shape)
        runs = submit_glue(str(random_init.student_dir), glue, ctx.tasks, ctx.caches, random_init, ctx.log).values()
        row = Result(kind="reference", params={"layer_selection": "random_init", "n_layers": ctx.n_layers,
                                               **shape.given()},
                     n_params=n_params, profile=ctx.profile(ctx.n_layers, shape), provenance=ctx.provenance)
        lm = submit_lm(str(random_init.student_dir), ctx.spec, ctx.log)
        writers.append(_write_reference.remote(random_init, row, lm, *runs))
    lm_only = lm_only_name(ctx)
    if glue.mlm_only_reference and row_name(lm_only, key) not in skip:
        # Trained from random weights with the family's LM loss alone (alpha_mlm or alpha_clm 1, every teacher
        # term 0, so no teacher forward) for the candidates' steps.
        lm_weight = {"alpha_clm": 1.0, "alpha_mlm": 0.0} if lm_only == CLM_ONLY else {"alpha_mlm": 1.0}
        params = CandidateParams(LossWeights(alpha_ce=0.0, alpha_cos=0.0, temperature=1.0, **lm_weight),
                                 layer_selection="random_init", n_layers=ctx.n_layers, shape=shape)
        writers.append(_distilled_row.remote(ctx, row_name(lm_only, key), params))
    return writers


def submit_init_only(ctx: SweepContext, rule: str) -> list:
    """The `init_only-<rule>` row of each width of the candidates (ctx.shapes; at another width than the
    teacher's the name says it, `init_only-<rule>-4L192H12F768`), initialised from the teacher's layers by
    `rule` at the candidates' depth, no distillation step, fine-tuned under the protocol (its result.json
    is written by a writer task as soon as its runs end). The rows that exist already are not run again."""
    writers = []
    for shape in ctx.shapes:
        row_dir = ctx.results.init_only(rule, ctx.key(ctx.n_layers, shape))
        if row_dir.has_result():
            continue
        n_params = save_student(ctx.job.teacher_dir, ctx.n_layers, parse_layer_key(rule), ctx.spec.seed,
                                str(row_dir.student_dir), shape)
        runs = submit_glue(str(row_dir.student_dir), ctx.spec.glue, ctx.tasks, ctx.caches, row_dir, ctx.log).values()
        row = Result(kind="reference", params={"layer_selection": rule, "n_layers": ctx.n_layers, **shape.given()},
                     n_params=n_params, profile=ctx.profile(ctx.n_layers, shape), provenance=ctx.provenance)
        lm = submit_lm(str(row_dir.student_dir), ctx.spec, ctx.log)
        writers.append(_write_reference.remote(row_dir, row, lm, *runs))
    return writers


@ray.remote(num_cpus=0)
def _distilled_row(ctx: SweepContext, name: str, params: CandidateParams) -> str:
    """A reference row that distils like a candidate (`params`, the candidates' full steps, never
    stopped) and is then fine-tuned under the protocol: `mlm_only`, `paper_defaults`. A Ray task
    that holds no CPU itself: its Train workers and GLUE tasks queue with the trials'. Interrupted,
    its Train run (`reference-<name>`) continues from its last checkpoint on `resume`."""
    to_log_file(*ctx.log)
    row_dir = ctx.results.reference(name)
    t0 = time.time()
    metrics = distill_student(f"reference-{name}", params, ctx.job, row_dir.student_dir)
    distill_seconds = round(time.time() - t0, 1)
    lm = submit_lm(str(row_dir.student_dir), ctx.spec, ctx.log)
    runs = ray.get(list(submit_glue(str(row_dir.student_dir), ctx.spec.glue, ctx.tasks, ctx.caches, row_dir,
                                    ctx.log).values()))
    storage.remove_tree(storage.join(ctx.job.storage, f"reference-{name}"))  # the student is copied out
    row_dir.write_result(Result(
        kind="reference", params=params.to_json(), distill=metrics, glue=tuple(runs),
        n_params=encoder_parameters(str(row_dir.student_dir)), profile=ctx.profile(params.n_layers, params.shape),
        distill_seconds=distill_seconds, finetune_seconds=finetune_seconds(runs), provenance=ctx.provenance,
        lm=ray.get(lm) if lm else None))
    return str(row_dir.path)


def best_candidate_rule(out, metric: str = "macro_score") -> str | None:
    """The layer-selection rule of the best finished candidate of results dir `out` by `metric` (its
    selection score: ResultsDir.by_selection, the leaderboard's best student), None if none has a value."""
    results = ResultsDir(out)
    ranked = results.by_selection(metric)
    if not ranked or ranked[0][1] is None:
        return None
    return results.candidate(ranked[0][0]).read_result().params["layer_selection"]


def lm_only_name(ctx: SweepContext) -> str:
    """The reference row pre-trained without a teacher: `mlm_only` for a masked-LM teacher, `clm_only` (the
    causal LM loss alone) for a causal one (distil.config.families: the teacher's objective)."""
    objective = family_of(AutoConfig.from_pretrained(ctx.job.teacher_dir).model_type).objective
    return CLM_ONLY if objective == CLM else "mlm_only"


def init_proxy(ctx: SweepContext, rule: str, n_layers: int, shape: StudentShape = StudentShape()) -> ProxyPoint:
    """The proxy score of the undistilled student (`rule`, `n_layers`, width `shape` as
    distil.config.rules.sweep_shape gives it: StudentShape() the teacher's): step 0 of every learning
    curve of that init and shape, the baseline successive halving judges a trial's gain against. Computed
    once per sweep by the first trial that needs it, then read from
    references/init_only-<rule>/proxy-<n>L.json (another width: init_only-<rule>-<shape>/proxy-<n>L.json)."""
    row_dir = ctx.results.init_only(rule, ctx.key(n_layers, shape))
    point = row_dir.read_init_proxy(n_layers)
    if point is not None:
        return point
    with tempfile.TemporaryDirectory() as tmp:
        save_student(ctx.job.teacher_dir, n_layers, parse_layer_key(rule), ctx.spec.seed, tmp, shape)
        point = proxy_point(tmp, ctx)
    row_dir.write_init_proxy(n_layers, point)
    return point


@ray.remote(num_cpus=0)
def _teacher_proxy(ctx: SweepContext, teacher_source: str) -> str:
    """The teacher's proxy score (the top line of the learning-curve plot): teacher/proxy.json."""
    to_log_file(*ctx.log)
    teacher = ctx.results.teacher()
    teacher.write_proxy(proxy_point(teacher_source, ctx))
    return str(teacher.proxy_file)


def _distill_on_task_after(teacher_run: dict | None, run: TaskDistillRun, seed: int) -> dict:
    """distill_on_task, started by Ray once `teacher_run` (the fine-tuned teacher) has finished
    (None: it finished before a restart)."""
    return distill_on_task(run, seed)


@ray.remote(num_cpus=0)
def _write_reference(row_dir: RowDir, row: Result, lm: dict | None, *runs: dict) -> str:
    """Ray task, started once every GLUE run of a reference row and its perplexity scoring have finished (Ray
    resolves the refs passed as `lm` and `runs`): writes the row's result.json with its runs and their
    seconds, and its perplexity record (None without lm_eval)."""
    row_dir.write_result(replace(row, glue=tuple(runs), finetune_seconds=finetune_seconds(list(runs)), lm=lm))
    return str(row_dir.path)


def finish_references(writers: list) -> None:
    """Wait until every reference row's result.json is written."""
    ray.get(writers)
