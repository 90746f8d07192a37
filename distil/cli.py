"""distil-sweep: search DistilBERT distillation settings with Ray Tune + Optuna, rank students on GLUE.

    distil-sweep                                        # run sweeps/smoke.yaml -> results/smoke/
    distil-sweep run sweeps/cpu.yaml                    # a meaningful local run (`run` may be omitted)
    distil-sweep run sweeps/distilbert-base.yaml --dry-run   # validate a spec, run nothing
    distil-sweep resume results/smoke                   # continue a killed sweep where it stopped
    distil-sweep report results/smoke                   # rebuild the leaderboard from stored results
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- python run_sweep.py run SPEC --output ABS_DIR

`python run_sweep.py ARGS` (the entry point in the repository root) is the same as `distil-sweep ARGS`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # before Ray is imported, by any module

from distil import preflight  # noqa: E402
from distil.config import rules  # noqa: E402
from distil.config.families import family_of  # noqa: E402
from distil.config.spec import SpecError, SweepSpec, load_spec  # noqa: E402
from distil.store import provenance, storage  # noqa: E402
from distil.store.logs import quiet_libraries, ray_driver_log  # noqa: E402
from distil.store.records import RUN_FILE, TRAIN_DIR, TUNE_DIR, ResultsDir, RunState, read_json  # noqa: E402

COMMANDS = ("run", "resume", "report")
INTERRUPTED = 130  # the shell's exit status for a process ended by SIGINT (Ctrl-C)


def main(argv: list[str] | None = None, prog: str = "distil-sweep") -> int:
    """Run, resume or report a sweep; returns the exit code: 0 ok, 1 a trial failed or nothing to
    report, 2 bad input (nothing started, nothing in results/ changed), 130 interrupted (Ctrl-C).

    argv: the arguments (default sys.argv[1:]); prog: what the user typed to call it (`run_sweep.py`
    from the entry point), named in usage errors and in the line that says how to resume."""
    how = f"python {prog}" if prog.endswith(".py") else prog
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv, prog)
        if args.command == "report":
            return report(args.results_dir, args.cache_dir)
        return run(args, how)
    except KeyboardInterrupt:  # Ctrl-C outside Tune's loop (Tune catches the one during the search)
        print(f"interrupted: a sweep that reached its search continues with `{how} resume RESULTS_DIR`; "
              "one that did not (no run.json in RESULTS_DIR) is started again with `run`", file=sys.stderr)
        return INTERRUPTED


def run(args: argparse.Namespace, how: str) -> int:
    """`run SPEC` and `resume DIR`: the pipeline, one step a block (docs/pipeline.md); main's exit codes.

    how: the command the user typed (`distil-sweep`, `python run_sweep.py`), for the resume line."""
    t0 = time.time()
    # 1. Spec, preflight, teacher depth and results dir: checked before any cluster work; results/ is never overwritten.
    try:
        spec, out, remote, n_layers, state = open_resume(args) if args.command == "resume" else open_run(args)
    except SpecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.command == "run" and args.dry_run:
        print(dry_run_summary(spec, n_layers))
        return 0
    # Late: torch, transformers and Ray load in seconds, and a bad input has failed before them.
    import ray
    from ray import tune
    from transformers import AutoTokenizer

    from distil.science.precision import sweep_line
    from distil.search.confirm import run_confirmation
    from distil.search.context import SweepContext, profile_architectures
    from distil.search.finetune_runs import prepare_task_caches
    from distil.search.references import best_candidate_rule, finish_references, submit_init_only, submit_references
    from distil.search.trial import run_candidate
    from distil.search.train import DistillJob
    from distil.search.tuner import build_tuner, ended_early, restore_tuner

    if not args.verbose:
        quiet_libraries()
        ray_driver_log(ResultsDir(out).logs_dir)
    # A local Ray keeps an idle worker process for a minute instead of Ray's 1 s (beyond one per
    # CPU; a sweep's Train and Tune actors always exceed that): the GLUE runs of a sweep then reuse
    # warm processes instead of importing torch and transformers anew, ~7 s of CPU each (the tiny
    # test sweep started 47 worker processes instead of 55). A cluster's raylets read their own env.
    os.environ.setdefault("RAY_idle_worker_killing_time_threshold_ms", "60000")
    # Workers' output goes to <out>/logs/workers.log (distil.store.logs) unless --verbose.
    ray.init(address=args.address or os.environ.get("RAY_ADDRESS", "local"), log_to_driver=args.verbose)
    cache_dir = args.cache_dir or (state["cache_dir"] if state else preflight.DEFAULT_CACHE_DIR)
    cache = Path(cache_dir).expanduser().resolve()
    # 2. Teacher and corpus (both cached): tokenise the corpus, fit the MLM head if it is missing.
    source, teacher_dir, head_fit, corpus_dir = prepare_teacher_and_corpus(spec, cache)
    print(sweep_line(spec.distill.bf16, spec.distill.use_gpu, spec.glue.bf16, spec.glue.use_gpu), flush=True)
    # 3. Profiles (size, CPU latency) of the teacher and each student depth and width, timed while nothing else runs.
    teacher_shape = rules.teacher_shape(rules.teacher_config(teacher_dir))
    if state is None:
        # Timed on GLUE text, or WikiText's for a causal sweep without GLUE tasks.
        text = spec.lm_eval.data if spec.lm_eval and spec.glue.tasks == [] else spec.glue.data
        profiles = profile_architectures(source, teacher_dir, spec.student.depths() or [n_layers], spec.seed,
                                         text, spec.profile,
                                         shapes=[rules.sweep_shape(s, teacher_shape) for s in spec.student.shapes()])
        spec_json = spec.model_dump_json(indent=2)
        state = {"n_layers": n_layers, "cache_dir": str(cache), "profiles": profiles,
                 "provenance": provenance.collect(spec, spec_json, teacher_dir, cache)}
    # Ray Train checkpoints and Tune's experiment go straight to remote storage when --output is a URI.
    job = DistillJob(teacher_dir=teacher_dir, corpus_dir=str(corpus_dir), distill=spec.distill,
                     storage=storage.join(remote or str(out), TRAIN_DIR),
                     seed=spec.seed, log_dir=str(ResultsDir(out).logs_dir), verbose=args.verbose)
    # Every task split tokenised once for every model of the sweep (the students share the teacher's tokenizer).
    tasks = spec.finetune_tasks()
    caches = prepare_task_caches(spec, tasks, AutoTokenizer.from_pretrained(source), cache)
    ctx = SweepContext(spec=spec, out=str(out), job=job, n_layers=n_layers, profiles=state["profiles"],
                       provenance=state["provenance"], tasks=tuple(tasks), caches=caches, verbose=args.verbose,
                       teacher_shape=teacher_shape)
    # 4. Reference rows (teacher, random_init student, task-specific distillation) run as Ray tasks beside the search.
    done = ResultsDir(out).finished_references()
    if args.command == "run":  # written only now: a run that failed before leaves an empty dir to rerun in
        ResultsDir(out).write_spec(spec_json)
        ResultsDir(out).write_run_state(RunState.from_json(state))
    mirror = storage.Mirror.of(out, remote) if remote else None
    try:  # on remote storage the results dir is mirrored after every trial event and at the end, whatever happens
        if mirror:
            mirror.push()
        references = submit_references(ctx, source, head_fit, skip=done)
        # 5-6. Search: each trial distils a student in rungs (Ray Train), is scored on the proxy after
        #      each rung (successive halving may pause or stop it), and the survivors are fine-tuned on
        #      GLUE (Ray tasks).
        trainable = tune.with_resources(tune.with_parameters(run_candidate, ctx=ctx), {"CPU": 0, "memory": 1})
        tuner = (restore_tuner(storage.join(remote or str(out), TUNE_DIR), trainable) if args.command == "resume"
                 else build_tuner(spec, trainable, str(out), job.storage, remote))
        tuner.fit()
        # Tune leaves its own SIGINT handler in place after fit (ray/tune/tune.py restores the
        # previous one only when a signal arrives): put Python's back, so that a Ctrl-C while the
        # reference rows or the confirmation finish raises KeyboardInterrupt (exit 130, `resume`).
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.default_int_handler)
        if ended_early(spec, str(out)):  # Ctrl-C
            # Reference rows still running are not waited for: resume redoes them.
            print(f"interrupted: the sweep stopped before its last trial ended; continue it with `{how} "
                  f"resume {remote or out}` (`report` shows what has finished)", file=sys.stderr)
            return INTERRUPTED
        # The undistilled init of the best candidate's rule too, so that its gain_over_init is measured.
        best_rule = best_candidate_rule(out, spec.search.objectives[0])
        if spec.glue.init_only_reference and best_rule:
            references += submit_init_only(ctx, best_rule)
        finish_references(references)
        # 7. Confirmation: the finalists and the paper defaults distilled again with fresh seeds and
        #    fine-tuned with more seeds (distil.search.confirm); `resume` continues it.
        failed_confirmations = run_confirmation(ctx) if spec.search.confirm else []
        # 8. Leaderboard.
        status = build_report(str(out))
    finally:
        if mirror:
            print(f"results: {remote} ({mirror.push()} files updated; working copy {out})", flush=True)
    failed = ResultsDir(out).failed_trials()
    if failed:
        print(f"error: {len(failed)} trial(s) failed: {', '.join(failed)} (see candidates/<trial>/status.json)",
              file=sys.stderr)
    if failed_confirmations:
        print(f"error: the confirmation of {', '.join(failed_confirmations)} failed; `{how} resume {remote or out}` "
              "retries it (see logs/workers.log)", file=sys.stderr)
    print(f"wall time: {time.time() - t0:.0f} s", flush=True)
    return 1 if (failed or failed_confirmations) and status == 0 else status


def open_run(args: argparse.Namespace) -> tuple[SweepSpec, Path, str | None, int | None, None]:
    """`run SPEC`: (spec, results dir, remote URI or None, student depth, None: no run.json yet),
    the spec checked by preflight and against the teacher, the results dir claimed unless --dry-run.
    Raises SpecError."""
    spec = load_spec(args.spec)
    location = args.output or f"results/{spec.name}"
    preflight.check(spec, location, args.cache_dir, args.address)
    n_layers = check_against_teacher(spec, offline=args.dry_run)
    out, remote = claim_output_dir(location, args.cache_dir, dry_run=args.dry_run)
    return spec, out, remote, n_layers, None


def open_resume(args: argparse.Namespace) -> tuple[SweepSpec, Path, str | None, int, dict]:
    """`resume DIR|URI`: (spec, results dir, remote URI or None, student depth, run.json) of the
    sweep, checked by preflight. Raises SpecError."""
    out, remote, spec, state = open_for_resume(args.results_dir, args.cache_dir)
    preflight.check(spec, out, args.cache_dir or state["cache_dir"], args.address)
    return spec, out, remote, state["n_layers"], state


def dry_run_summary(spec: SweepSpec, n_layers: int | None) -> str:
    """The one line `run --dry-run` prints for a valid spec."""
    depths = spec.student.depths() or [n_layers or "?"]
    width = "".join(f", {k} {'/'.join(map(str, spec.student.values(k)))}" for k in spec.student.WIDTH
                    if spec.student.values(k))  # none given: the teacher's width, the line as before
    return (f"spec OK: {spec.name}: {spec.search.num_candidates} candidates ({spec.search.n_startup_trials()} startup, "
            f"then {spec.search.sampler.name}), student {'/'.join(map(str, depths))} layers{width}, searching "
            f"{sorted(spec.space())}; early stopping {'on' if spec.search.early_stopping else 'off'}; "
            f"{confirmation_summary(spec)}; teacher {spec.teacher.model}; {evaluation_summary(spec)}")


def evaluation_summary(spec: SweepSpec) -> str:
    """The dry-run summary's words on how rows are scored: GLUE (and own tasks), and/or perplexity."""
    lm = spec.lm_eval
    words = [f"GLUE {spec.glue.data}"] if spec.glue.tasks != [] else []
    words += [f"{len(spec.tasks)} own task(s)"] if spec.tasks else []
    words += [f"perplexity on {lm.data} (window {lm.window}, stride {lm.stride} tokens)"] if lm else []
    return "; ".join(words)


def confirmation_summary(spec: SweepSpec) -> str:
    """The dry-run summary's words on the confirmation stage."""
    c = spec.search.confirm
    if c is None:
        return "confirmation off"
    return (f"confirmation of the top {c.top_k} and the paper defaults with distillation seeds {c.distill_seeds}, "
            f"fine-tuning seeds {c.seeds}")


def prepare_teacher_and_corpus(spec: SweepSpec, cache: Path) -> tuple[str, str, dict, Path]:
    """(teacher source, dir of the teacher with an MLM head, its head-fit report, tokenised corpus dir),
    both cached under `cache`; prints the teacher line."""
    # Late: torch and transformers; called only on the run path, after every check passed.
    from transformers import AutoConfig, AutoTokenizer

    from distil.science.data import prepare_corpus
    from distil.science.teacher import prepare_teacher

    source = rules.resolve_teacher(spec.teacher.model)
    family = family_of(AutoConfig.from_pretrained(source).model_type)  # its bos and eos frame the corpus sequences
    corpus_dir = prepare_corpus(spec.corpus, AutoTokenizer.from_pretrained(source), cache,
                                spec.teacher.head_fit.eval_sequences, family=family)
    teacher_dir, head_fit = prepare_teacher(source, corpus_dir, spec.teacher.head_fit, cache, spec.seed)
    fitted = (f"MLM head fitted in {head_fit['steps']} steps, {head_fit['seconds']:.0f} s: held-out masked-token "
              f"accuracy {head_fit['masked_token_acc_before']:.1f} -> {head_fit['masked_token_acc_after']:.1f} %"
              if head_fit.get("fitted_head") else "its own MLM head")
    print(f"teacher ready: {teacher_dir} ({fitted})", flush=True)
    return source, teacher_dir, head_fit, corpus_dir


def check_against_teacher(spec: SweepSpec, offline: bool) -> int | None:
    """The student depth of a candidate whose depth is not searched (distil.config.rules.student_depth),
    after checking that a sweep runs the teacher's family (BERT, RoBERTa, GPT-2), that its loss terms,
    evaluation (GLUE, or perplexity for GPT-2), sequence lengths and student width fit the teacher, and that
    every depth and layer selection fits it.

    A local teacher's config.json (checked by preflight) is read as JSON; a hub-id teacher's is
    fetched, except with `offline` (--dry-run): its depth is checked when the run starts.
    Raises SpecError naming the field."""
    source = rules.resolve_teacher(spec.teacher.model)
    try:
        if rules.is_local(source):
            config = rules.teacher_config(source)
        elif offline:
            depths = spec.student.depths()
            return depths[0] if depths else None
        else:
            from transformers import AutoConfig  # late: seconds to import, and only a hub-id teacher needs it

            config = AutoConfig.from_pretrained(source).to_dict()
    except (ValueError, OSError) as e:
        raise SpecError(f"teacher.model: {str(e).splitlines()[0]}") from None
    family = rules.sweep_family(config, f"teacher.model: {spec.teacher.model}")
    rules.check_family_terms(spec, family)
    rules.check_family_evaluation(spec, family)
    rules.check_seq_lens(spec, family, config)
    rules.student_shapes(spec, config)  # preflight checked a local teacher's already; a hub one's here
    return rules.student_depth(spec, config.get(family.depth_key, 12))  # 12: BertConfig's and GPT2Config's default


def claim_output_dir(location: str, cache_dir: str | None, dry_run: bool) -> tuple[Path, str | None]:
    """(the absolute results dir, the remote URI or None) for `--output`, created unless dry_run.

    A URI (s3://bucket/sweep) gets a local working copy under the cache dir (distil.store.storage), is
    checked writable with a probe object, and must hold nothing yet. Raises SpecError if the
    output already holds results (a dry run only reads, so an existing dir is fine there)."""
    if storage.is_remote(location):
        out = storage.working_copy(location, cache_dir or preflight.DEFAULT_CACHE_DIR)
        if dry_run:
            return out, location
        mirror = storage.Mirror.of(out, location)
        try:
            held = mirror.holds_results()
            probe = f"{mirror.root}/.distil-sweep-probe"
            with mirror.fs.open_output_stream(probe) as f:
                f.write(b"probe")
            mirror.fs.delete_file(probe)
        except OSError as e:
            raise SpecError(f"--output: cannot write to {location} ({str(e).splitlines()[0][:200]}); check the bucket, "
                            "your credentials and AWS_ENDPOINT_URL (docs/cluster.md#results-on-s3)") from None
        if held:
            raise SpecError(f"--output: {location} already holds results; pass --output NEW_URI, or "
                            f"`resume {location}` to continue that sweep (nothing was changed)")
        shutil.rmtree(out, ignore_errors=True)  # a working copy left by a run that never wrote to the URI
        out.mkdir(parents=True)
        return out, location
    out = Path(location).resolve()
    if dry_run:
        return out, None
    if out.exists() and any(out.iterdir()):
        raise SpecError(f"--output: {out} already holds results; pass --output NEW_DIR, or `resume {out}` to continue "
                        "that sweep (nothing was changed)")
    out.mkdir(parents=True, exist_ok=True)
    return out, None


def open_for_resume(location: str, cache_dir: str | None) -> tuple[Path, str | None, SweepSpec, dict]:
    """(results dir, remote URI or None, its spec, run.json) of a sweep to resume; a URI is
    pulled into its working copy first. Raises SpecError if it cannot be resumed."""
    remote = location if storage.is_remote(location) else None
    if remote:
        # The working copy goes where the run had it (under the run's cache dir, from its run.json):
        # Tune's saved state (callbacks, the Optuna study's sqlite URL) names that path.
        out = pull(remote, _run_cache_dir(remote) or cache_dir, "resume")
    else:
        out = Path(location).resolve()
        if not out.is_dir():
            raise SpecError(f"resume: {out} is not a directory; pass the results dir of a sweep (results/<name>)")
    tune_state, results = storage.join(remote or str(out), TUNE_DIR), ResultsDir(out)
    if not results.spec_file.is_file() or not results.run_file.is_file():
        raise SpecError(f"resume: {location} has no spec.json and run.json: its sweep never reached the search; "
                        "start it again with `run SPEC --output NEW_DIR`")
    if not storage.is_dir(tune_state):
        raise SpecError(f"resume: {tune_state} is missing: no Tune experiment to continue; start again with `run`")
    try:  # pydantic's ValidationError and json's JSONDecodeError are ValueErrors
        spec = SweepSpec.model_validate_json(results.spec_text())
        state = read_json(results.run_file)
        missing = sorted(set(RunState.REQUIRED) - set(state))
    except (ValueError, TypeError) as e:
        raise SpecError(f"resume: {location}/spec.json or run.json is damaged ({str(e).splitlines()[0]}); start again "
                        "with `run SPEC --output NEW_DIR`") from None
    if missing:
        raise SpecError(f"resume: {location}/run.json lacks {missing}; start again with `run SPEC --output NEW_DIR`")
    return out, remote, spec, state


def _run_cache_dir(uri: str) -> str | None:
    """The cache dir recorded in `<uri>/run.json`, None if it cannot be read (pull then says why)."""
    try:
        fs, path = storage.filesystem(storage.join(uri, RUN_FILE))
        with fs.open_input_stream(path) as f:
            return json.loads(f.read()).get("cache_dir")
    except (OSError, ValueError):
        return None


def pull(uri: str, cache_dir: str | None, field: str) -> Path:
    """Download the results kept at `uri` into its working copy; that dir. Raises SpecError if
    the URI cannot be read or holds no sweep."""
    out = storage.working_copy(uri, cache_dir or preflight.DEFAULT_CACHE_DIR)
    try:
        n = storage.Mirror.of(out, uri).pull()
    except OSError as e:
        raise SpecError(f"{field}: cannot read {uri} ({str(e).splitlines()[0][:200]}); check the URI, your "
                        "credentials and AWS_ENDPOINT_URL") from None
    if n == 0:
        raise SpecError(f"{field}: {uri} holds no sweep results; pass the --output URI of a sweep")
    return out


def report(location: str | None, cache_dir: str | None = None) -> int:
    """`report DIR|URI`: rebuild the leaderboard files, report.html and best_student/ where the
    results are (a URI is pulled, rebuilt, pushed back); exit code."""
    if location and storage.is_remote(location):
        try:
            out = pull(location, cache_dir, "report")
        except SpecError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        status = build_report(str(out))
        print(f"results: {location} ({storage.Mirror.of(out, location).push()} files updated)", flush=True)
        return status
    return build_report(location)


def build_report(results_dir: str | None) -> int:
    """Rebuild leaderboard files, report.html and best_student/ from stored results; exit code."""
    if not results_dir or not Path(results_dir).is_dir():
        print(f"error: report: {results_dir!r} is not a results dir; pass results/<sweep>", file=sys.stderr)
        return 2
    spec_file = ResultsDir(results_dir).spec_file
    try:  # a damaged one would be read as GLUE's defaults (leaderboard.load), ranking by the wrong tasks
        spec = read_json(spec_file) if spec_file.exists() else {}
    except (OSError, ValueError) as e:
        spec = e
    if not isinstance(spec, dict):
        what = str(spec).splitlines()[0] if isinstance(spec, Exception) else "not a JSON object"
        print(f"error: report: {spec_file} is damaged ({what}); restore it from a copy of the results dir "
              "(nothing was changed)", file=sys.stderr)
        return 2
    # Late: pandas, datasets, scipy and matplotlib load in seconds; a bad input has failed before them.
    from distil.report import export, leaderboard, summary
    from distil.report import html as html_report

    board = leaderboard.load(results_dir)
    if board.frame.empty:
        print(f"error: report: no teacher or candidate results under {results_dir}; pass the results dir of a sweep "
              "(results/<name>)", file=sys.stderr)
        return 1
    leaderboard.write(board, results_dir)
    print(summary.to_markdown(board))
    print(f"leaderboard: {Path(results_dir) / 'leaderboard.csv'}, leaderboard.parquet and leaderboard.md", flush=True)
    print(f"report: {html_report.write_html(board, results_dir)} (plots in {Path(results_dir) / 'plots'})", flush=True)
    if board.best_student() is None:
        print("best student: none finished, nothing exported", flush=True)
    else:
        try:  # the previous export stays in place unless its replacement is complete (export.export_best)
            print(f"best student: {export.export_best(board, results_dir)}", flush=True)
        except (OSError, ValueError) as e:
            print(f"warning: best student not exported: {str(e).splitlines()[0]}", file=sys.stderr)
    corrupt = board.frame[board.frame["status"] == "corrupt"]
    for _, row in corrupt.iterrows():
        print(f"warning: {row['model']}: corrupt ({row['reason']}); the other rows are reported", file=sys.stderr)
    return 0


class _OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one stderr line with the fix, exit 2 (bad input, nothing started)."""

    def error(self, message):
        how = f"python {self.prog}" if self.prog.split()[0].endswith(".py") else self.prog
        self.exit(2, f"error: {self.prog}: {message}; see `{how} --help`\n")


def parse_args(argv: list[str], prog: str = "distil-sweep") -> argparse.Namespace:
    """`[run] [SPEC] [--output DIR] [--dry-run] [--address A] [--cache-dir D]`, `resume DIR`, `report DIR`."""
    if argv and argv[0] not in (*COMMANDS, "-h", "--help") and not argv[0].startswith("-") \
            and not argv[0].endswith((".yaml", ".yml")) and not os.path.isfile(argv[0]):
        print(f"error: unknown command {argv[0]!r}; use `run SPEC.yaml`, `resume RESULTS_DIR` or `report RESULTS_DIR`",
              file=sys.stderr)
        sys.exit(2)
    if not argv or argv[0] not in (*COMMANDS, "-h", "--help"):
        argv = ["run", *argv]  # `distil-sweep [SPEC]` runs a sweep, as before sub-commands
    p = _OneLineParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a sweep from a spec")
    run.add_argument("spec", nargs="?", default="sweeps/smoke.yaml", help="sweep YAML (default sweeps/smoke.yaml)")
    run.add_argument("--output", help="results dir or URI (s3://bucket/sweep) (default results/<spec name>); "
                     "must be new or empty")
    run.add_argument("--dry-run", action="store_true", help="validate the spec against the teacher and stop")
    resume = sub.add_parser("resume", help="continue a killed or interrupted sweep from its results dir")
    resume.add_argument("results_dir", help="results dir, or the URI given to --output (s3://...)")
    for s in (run, resume):
        s.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else a local cluster)")
        s.add_argument("--verbose", action="store_true", help="show the workers' and libraries' output on the console "
                       "(default: <results>/logs/workers.log)")
        s.add_argument("--cache-dir", help="tokenised corpus and fitted teachers (default ~/.cache/distil-sweep; "
                       "resume: the run's own)")
    rep = sub.add_parser("report", help="rebuild leaderboard, report.html and best_student/ from a results dir")
    rep.add_argument("results_dir", help="results dir, or the URI of --output")
    rep.add_argument("--cache-dir", help="where a URI's results are pulled to (default ~/.cache/distil-sweep)")
    return p.parse_args(argv)
