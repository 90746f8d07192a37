"""Preflight: every input a sweep names, checked in seconds before Ray starts or anything is written.

Without it, a wrong GLUE file or a corpus too small for the workers shows up inside a Ray task,
after a candidate's distillation; `check` finds it first, with one line naming the field or file and the
fix (a `SpecError`, which distil.cli prints as one stderr line with exit 2). The rules it applies
are the run's own (distil.config.rules). What it reads:

* `--output` / `--cache-dir`: a dir, or creatable under a writable dir (`--output` a URI: its bucket exists);
* the teacher (a local dir or `package:`): config.json of a family sweeps run (bert, roberta, gpt2), weights (a
  safetensors header that fits its file, or a .bin) and a tokenizer (tokenizer.json or vocab.txt);
* local GLUE data, for every task the spec runs (glue.tasks, task_distill.tasks,
  search.early_stopping.proxy.tasks): the train split and at least one validation split exist
  (or their `_subset` stand-ins, see distil.config.glue.find_split), are readable parquet with the task's
  text columns and `label`, labels in range, at least a batch of training rows;
* the LM evaluation's WikiText data (`lm_eval.data`): its test split is a readable parquet with a text column;
* a local corpus: `<train_split>.parquet` and `<eval_split>.parquet` with the text column and,
  estimated from the first SAMPLE_ROWS rows tokenised with the teacher's tokenizer, at least one
  batch per worker of sequences that survive `min_tokens` (the cut of distil.config.rules.corpus_pieces);
* the Ray address (`--address`, else $RAY_ADDRESS): a TCP connect and a gRPC call of the GCS,
  each with a short timeout.

Hub ids (teacher, GLUE, corpus) are not fetched: the hub is never called here. Besides distil's
config and storage, only pyarrow, `tokenizers`, `grpc` (for an address) and the standard library
are imported, so a bad input fails before torch loads.
"""

from __future__ import annotations

import json
import math
import os
import socket
import struct
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import tokenizers

from distil.config import rules
from distil.config.glue import TASKS, find_split
from distil.config.rules import SpecError
from distil.config.spec import SweepSpec
from distil.store.storage import filesystem, is_remote

SAMPLE_ROWS = 5000  # corpus rows tokenised for the sequence estimate (of 1.27 M in enwiki)
CONNECT_TIMEOUT_S = 3.0
MIN_EVAL_ROWS = 2  # Pearson/Spearman (stsb) and MCC need two examples to mean anything
DEFAULT_CACHE_DIR = "~/.cache/distil-sweep"


def check(spec: SweepSpec, output: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
          address: str | None = None) -> None:
    """Check every input of `spec` and the command line; returns None, or raises SpecError (one
    line: the field or file, what is wrong, the fix). Reads files, writes nothing.

    output: the results dir (new, or the one a resume continues); cache_dir: None = the default;
    address: `--address` (None: $RAY_ADDRESS, else a local cluster, which needs no check).
    """
    if is_remote(output):
        check_remote(str(output), "--output")
    else:
        check_writable_dir(output, "--output")
    check_writable_dir(cache_dir or DEFAULT_CACHE_DIR, "--cache-dir")
    if address:
        check_address(address, "--address")
    elif os.environ.get("RAY_ADDRESS"):  # set by `ray job submit` (reachable then) or by the user
        check_address(os.environ["RAY_ADDRESS"], "RAY_ADDRESS")
    teacher = check_teacher(spec.teacher.model)
    check_student(spec, teacher)
    check_glue(spec)
    check_lm_eval(spec)
    check_corpus(spec, teacher)


# ---------------------------------------------------------------- output and cache dirs
def check_writable_dir(path: str | os.PathLike, field: str) -> None:
    """`path` is a writable dir, or does not exist and its nearest existing parent is a writable dir.

    Raises SpecError naming `field` (--output, --cache-dir)."""
    p = Path(path).expanduser().absolute()
    if p.exists() and not p.is_dir():
        raise SpecError(f"{field}: {p} is a file, not a directory; pass a directory path")
    existing = next(a for a in (p, *p.parents) if a.exists())
    if not existing.is_dir():
        raise SpecError(f"{field}: {existing} is a file, so {p} cannot be created; pass a path under a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "is not writable" if existing == p else f"is not writable, so {p} cannot be created"
        raise SpecError(f"{field}: {existing} {what}; pass a path you can write to")


def check_remote(uri: str, field: str) -> None:
    """`uri` (s3://bucket/path, ...) names a file system pyarrow can open and a bucket that exists.
    Writing is probed when the output is claimed (distil.cli.claim_output_dir).

    Raises SpecError naming `field`."""
    try:
        fs, path = filesystem(uri)
        bucket = path.split("/")[0]
        found = fs.get_file_info(bucket).type != pafs.FileType.NotFound
    except (OSError, ValueError) as e:  # pyarrow: ArrowInvalid (a ValueError) for a bad URI, OSError for the store
        raise SpecError(f"{field}: cannot open {uri} ({str(e).splitlines()[0][:200]}); check the URI, your credentials "
                        "and AWS_ENDPOINT_URL for an S3-compatible server") from None
    if not found:
        raise SpecError(f"{field}: bucket {bucket!r} of {uri} does not exist; create it first "
                        f"(aws s3 mb s3://{bucket}) or pass another --output")


# ---------------------------------------------------------------- teacher
def check_teacher(ref: str) -> str | None:
    """The teacher's local dir after checking config (a family a sweep runs: BERT, RoBERTa, GPT-2), weights and
    tokenizer; None for a hub id (not fetched: its config is checked when the run starts). Raises SpecError."""
    d = rules.local_teacher(ref)
    if d is None:
        return None
    where = f"teacher.model: {ref}" + (f" ({d})" if d != ref else "")
    if not os.path.exists(d):
        raise SpecError(f"{where} does not exist; put the teacher back there, or point teacher.model at a saved "
                        "model dir or a hub id")
    if not os.path.isdir(d):
        raise SpecError(f"{where} is not a directory; point teacher.model at a saved model dir or a hub id")
    try:
        config = rules.teacher_config(d)
    except FileNotFoundError:
        raise SpecError(f"{where} has no config.json; point teacher.model at a dir saved with "
                        "save_pretrained") from None
    except (ValueError, OSError) as e:
        raise SpecError(f"{where}: config.json is not readable JSON ({_first_line(e)}); restore it from the "
                        "checkpoint") from None
    rules.sweep_family(config, where)
    _check_weights(Path(d), where)
    if not any((Path(d) / n).is_file() for n in ("tokenizer.json", "vocab.txt")):
        raise SpecError(f"{where} has no tokenizer (tokenizer.json or vocab.txt); save it beside the weights "
                        "with tokenizer.save_pretrained(dir)")
    return d


def check_student(spec: SweepSpec, teacher_dir: str | None) -> None:
    """The student's width fits the teacher (a local one's config.json) and the loss terms, each width a
    searched one can take (distil.config.rules.student_shapes); a hub-id teacher's width is read, and the
    same rules applied, when the run starts (distil.cli.check_against_teacher). A sweep builds its
    reference rows, latency profiles and early-stopping baseline at the students' own shape (issue 25).
    Raises SpecError."""
    if teacher_dir is not None:
        rules.student_shapes(spec, rules.teacher_config(teacher_dir))


def _check_weights(d: Path, where: str) -> None:
    """A .bin or safetensors file whose header parses and whose tensors fit in the file."""
    safetensors = sorted(d.glob("*.safetensors"))
    if not safetensors:
        if sorted(d.glob("pytorch_model*.bin")):
            return
        raise SpecError(f"{where} has no weights (model.safetensors or pytorch_model.bin); save the model there "
                        "with save_pretrained(dir)")
    for f in safetensors:
        # Format: 8-byte little-endian header length N, N bytes of JSON {name: {data_offsets: [begin, end]}},
        # then the tensor bytes (https://github.com/huggingface/safetensors#format).
        size = f.stat().st_size
        try:
            with open(f, "rb") as fh:
                (n,) = struct.unpack("<Q", fh.read(8))
                header = json.loads(fh.read(n)) if 8 + n <= size else None
            end = (max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
                   if header else None)
        except (struct.error, ValueError, KeyError, TypeError, AttributeError):
            end = None
        if end is None or 8 + n + end > size:
            raise SpecError(f"{where}: {f.name} is truncated or not safetensors; download or save the weights again")


# ---------------------------------------------------------------- GLUE
def _glue_runs(spec: SweepSpec) -> list[tuple[str, str, int, str, bool]]:
    """(field, task, train batch size, name of the batch-size field, explicit) for every task run:
    GLUE fine-tuning (settings with glue.overrides, as GlueSpec.settings), task_distill
    (same settings), and the GLUE early-stopping proxy (its own batch size; overrides do not apply; a
    causal teacher's proxy is held-out perplexity and runs no task)."""
    g = spec.glue

    def batch(task):
        o = g.overrides.get(task)
        if o and o.batch_size:
            return o.batch_size, f"glue.overrides.{task}.batch_size"
        return g.batch_size, "glue.batch_size"

    runs = [("glue.tasks", t, *batch(t), g.tasks != "all") for t in (list(TASKS) if g.tasks == "all" else g.tasks)]
    if spec.task_distill:
        runs += [("task_distill.tasks", t, *batch(t), True) for t in spec.task_distill.tasks]
    es = spec.search.early_stopping
    if es and not spec.perplexity_proxy():  # a causal teacher's proxy is held-out perplexity: no GLUE task
        b, name = ((es.proxy.batch_size, "search.early_stopping.proxy.batch_size") if es.proxy.batch_size
                   else (g.batch_size, "glue.batch_size"))
        runs += [("search.early_stopping.proxy.tasks", t, b, name, True) for t in es.proxy.tasks]
    return runs


def check_glue(spec: SweepSpec) -> None:
    """Every GLUE task the spec runs has readable, well-formed train and validation splits in a
    local glue.data (a hub id is not checked). With `tasks: all`, tasks without a dir are skipped
    as the sweep skips them (mnli offline), but one task at least must be there. Raises SpecError."""
    data = spec.glue.data
    if not rules.is_local(data):
        return
    if not os.path.exists(data):  # a resumed spec whose data has moved since
        raise SpecError(f"glue.data: {data} does not exist; put the GLUE dir back there or start a new run with the "
                        "new path")
    if not os.path.isdir(data):
        raise SpecError(f"glue.data: {data} is not a directory; point it at a dir of <task>/<split>.parquet or use "
                        "nyu-mll/glue")
    rows: dict[str, int] = {}  # file -> rows, each file read once

    def n_rows(path: str, task: str) -> int:
        if path not in rows:
            rows[path] = _glue_split(path, task)
        return rows[path]

    checked = set()
    for field, name, batch_size, batch_field, explicit in _glue_runs(spec):
        task = TASKS.get(name)
        if task is None:  # not a GLUE task (a user task): validated where it is defined
            continue
        if not explicit and not (Path(data) / name).is_dir():
            continue
        train = find_split(data, name, "train")
        if train is None:
            raise SpecError(f"{field}: {name} has no train split in {data} (looked for {name}/train.parquet and "
                            f"{name}/train_subset.parquet); add it or {_drop(name, field, explicit)}")
        evals = [f for f in (find_split(data, name, s) for s in task.eval_splits.values()) if f is not None]
        if not evals:
            looked = ", ".join(f"{name}/{s}.parquet" for s in task.eval_splits.values())
            raise SpecError(f"{field}: {name} has no validation split in {data} (looked for {looked} or their "
                            f"_subset.parquet); add it or {_drop(name, field, explicit)}")
        n_train = n_rows(train[0], name)
        if n_train < batch_size:
            raise SpecError(f"glue.data: {train[0]} has {n_train} rows, fewer than one batch ({batch_field} = "
                            f"{batch_size}); give at least {batch_size} rows or a smaller {batch_field}")
        if name in checked:
            continue
        checked.add(name)
        for path, _ in evals:
            n = n_rows(path, name)
            if n < MIN_EVAL_ROWS:
                raise SpecError(f"glue.data: {path} has {n} rows; a validation split needs at least {MIN_EVAL_ROWS} "
                                "to be scored; restore the split")
    if not checked and spec.glue.tasks == "all":
        raise SpecError(f"glue.data: no GLUE task in {data} (expected <task>/train.parquet and "
                        "<task>/validation.parquet, "
                        "e.g. sst2/); point glue.data at a GLUE dir or use nyu-mll/glue")


def _drop(task: str, field: str, explicit: bool) -> str:
    return f"drop {task} from {field}" if explicit else f"remove the {task} dir, or list the tasks to run in glue.tasks"


def _glue_split(path: str, task_name: str) -> int:
    """Rows of one GLUE split file after checking it; raises SpecError naming the file."""
    task = TASKS[task_name]
    pf = _open_parquet(path, "glue.data")
    wanted = [*task.text_fields, "label"]
    missing = [c for c in wanted if c not in pf.schema_arrow.names]
    if missing:
        raise SpecError(f"glue.data: {path} lacks column(s) {missing} (has {pf.schema_arrow.names}); {task_name} needs "
                        f"{wanted} as in the HF glue schema")
    try:
        table = pf.read(columns=wanted)
    except (pa.ArrowException, OSError) as e:
        raise SpecError(f"glue.data: {path} is damaged ({_first_line(e)}); restore the file") from None
    for c in task.text_fields:
        if not (pa.types.is_string(table[c].type) or pa.types.is_large_string(table[c].type)):
            raise SpecError(f"glue.data: {path} column {c!r} is {table[c].type}, not text; {task_name} needs "
                            "strings there")
        if table[c].null_count:
            raise SpecError(f"glue.data: {path} has {table[c].null_count} null value(s) in {c!r}; drop or fill "
                            "those rows")
    label = table["label"]
    if label.null_count:
        raise SpecError(f"glue.data: {path} has {label.null_count} null label(s); drop those rows")
    if len(table) == 0:
        return 0
    if task.num_labels == 1:  # regression: transformers' MSE loss needs float labels
        if not pa.types.is_floating(label.type):
            raise SpecError(f"glue.data: {path} label is {label.type}; {task_name} is a regression task, cast "
                            "label to float32")
        if not pc.all(pc.is_finite(label)).as_py():
            raise SpecError(f"glue.data: {path} has NaN or infinite labels; drop those rows")
        return len(table)
    if not pa.types.is_integer(label.type):
        raise SpecError(f"glue.data: {path} label is {label.type}; {task_name} is a classification task with labels "
                        f"0..{task.num_labels - 1}, cast label to int64")
    low, high = pc.min(label).as_py(), pc.max(label).as_py()
    if low < 0 or high >= task.num_labels:
        bad = low if low < 0 else high
        hint = " (-1 marks an unlabelled test split)" if bad == -1 else ""
        raise SpecError(f"glue.data: {path} has label {bad}{hint}, outside 0..{task.num_labels - 1} for {task_name}; "
                        "use the labelled split or fix the labels")
    return len(table)


# ---------------------------------------------------------------- corpus
def check_corpus(spec: SweepSpec, teacher_dir: str | None) -> None:
    """A local corpus has both splits with the text column, and enough sequences: at least one
    batch per worker for training (distil.config.rules.train_sequences_needed) and one held-out
    sequence. The train estimate tokenises the first SAMPLE_ROWS rows with the teacher's tokenizer
    (a hub teacher: BERT's pre-tokenizer, which counts no more tokens than the real one), cuts them
    as the run does (distil.config.rules.corpus_pieces) and scales the count to the whole split.
    Raises SpecError."""
    c, d = spec.corpus, spec.distill
    if not rules.is_local(c.path):
        return
    if not os.path.exists(c.path):
        raise SpecError(f"corpus.path: {c.path} does not exist; put the corpus back there or start a new run with "
                        "the new path")
    if not os.path.isdir(c.path):
        raise SpecError(f"corpus.path: {c.path} is not a directory; point it at a dir of <split>.parquet files or a "
                        "hub dataset id")
    need = rules.train_sequences_needed(d)
    if c.max_sequences < need:
        raise SpecError(f"corpus.max_sequences: {c.max_sequences} sequences are fewer than one batch per worker "
                        f"(distill.batch_size {d.batch_size} × num_workers {d.num_workers}); raise it to at least "
                        f"{need}")
    count = _token_counter(teacher_dir)
    for field, split, want in (("corpus.train_split", c.train_split, need), ("corpus.eval_split", c.eval_split, 1)):
        path = rules.corpus_split_file(c, split)
        if not path.is_file():
            have = sorted(p.stem for p in Path(c.path).glob("*.parquet"))
            raise SpecError(f"{field}: {path} not found (splits there: {have}); set {field} to one of them or add "
                            "the file")
        estimate, exact = _estimate_sequences(str(path), c.text_column, c.max_seq_len, c.min_tokens, want, count)
        if estimate < want:
            what = "" if exact else f" (estimated from its first {SAMPLE_ROWS} rows)"
            why = ("one batch per worker: distill.batch_size × num_workers" if want > 1
                   else "held-out text for the teacher head fit")
            raise SpecError(f"corpus.path: {path} gives {estimate} sequences of >= corpus.min_tokens {c.min_tokens} "
                            f"tokens{what}, fewer than the {want} needed ({why}); use a bigger corpus or lower "
                            "corpus.min_tokens")


def _estimate_sequences(path: str, column: str, max_seq_len: int, min_tokens: int, want: int,
                        count) -> tuple[int, bool]:
    """(sequences the split yields, exact?): counted until `want` is reached, else over the first
    SAMPLE_ROWS rows and scaled to the file's rows."""
    pf = _open_parquet(path, "corpus.path")
    names = pf.schema_arrow.names
    if column not in names:
        raise SpecError(f"corpus.text_column: {column!r} is not a column of {path} (columns: {names}); set "
                        "corpus.text_column")
    total = pf.metadata.num_rows
    seen = sequences = 0
    try:
        for batch in pf.iter_batches(batch_size=250, columns=[column]):
            col = batch.column(0)
            if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
                raise SpecError(f"corpus.text_column: {column!r} of {path} is {col.type}, not text; set "
                                "corpus.text_column")
            texts = [t for t in col.to_pylist() if t and t.strip()]
            seen += len(col)
            for n in count(texts) if texts else []:
                sequences += len(rules.corpus_pieces(n, max_seq_len, min_tokens))
            if sequences >= want:
                return sequences, True
            if seen >= SAMPLE_ROWS:
                break
    except (pa.ArrowException, OSError) as e:
        raise SpecError(f"corpus.path: {path} is damaged ({_first_line(e)}); restore the file") from None
    if seen >= total:
        return sequences, True
    return math.floor(sequences * total / seen), False


def _token_counter(teacher_dir: str | None):
    """texts -> token counts without special tokens, with the teacher's tokenizer (its
    tokenizer.json, else vocab.txt as BERT WordPiece), or BERT's pre-tokenizer for a hub teacher."""
    if teacher_dir and (Path(teacher_dir) / "tokenizer.json").is_file():
        try:
            tok = tokenizers.Tokenizer.from_file(str(Path(teacher_dir) / "tokenizer.json"))
        except Exception as e:  # tokenizers raises a bare Exception on a bad file
            raise SpecError(f"teacher.model: {teacher_dir}/tokenizer.json is not readable ({_first_line(e)}); save the "
                            "tokenizer again") from None
    elif teacher_dir:
        lower = _json_or_empty(Path(teacher_dir) / "tokenizer_config.json").get("do_lower_case", True)
        tok = tokenizers.BertWordPieceTokenizer(str(Path(teacher_dir) / "vocab.txt"), lowercase=lower)
    else:
        pre = tokenizers.pre_tokenizers.BertPreTokenizer()
        return lambda texts: [len(pre.pre_tokenize_str(t)) for t in texts]
    tok.no_truncation()  # tokenizer.json often carries the model's max_length (128 for MiniLM)
    tok.no_padding()
    return lambda texts: [len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False)]


# ---------------------------------------------------------------- Ray address
def check_address(address: str, field: str = "--address") -> None:
    """A Ray address ray.init can use, answering within CONNECT_TIMEOUT_S, so a wrong one fails in
    seconds (ray.init retries an unreachable GCS for about a minute). `host:port` must answer a
    TCP connect and then a gRPC call of the GCS (GetClusterId: any reply from a GCS, even
    UNAUTHENTICATED for want of the token, counts; a plain TCP or HTTP server does not);
    `ray://host:port` (the Ray Client server) and clusters with RAY_USE_TLS get the TCP connect
    only. `auto` and `local` are not checked. Raises SpecError naming `field` (--address or
    RAY_ADDRESS)."""
    if address in ("auto", "local"):
        return
    if address.startswith(("http://", "https://")):
        raise SpecError(f"{field}: {address} is a dashboard/job-server address; give the cluster's GCS address "
                        "host:6379 (or ray://host:10001), or submit with `ray job submit --address "
                        f"{address} -- python run_sweep.py run SPEC`")
    scheme, _, hostport = address.rpartition("://")
    if scheme not in ("", "ray"):
        raise SpecError(f"{field}: {address}: unknown scheme {scheme!r}; give host:port or ray://host:port")
    host, _, port = hostport.rpartition(":")
    host = host.strip("[]")  # [::1]:6379
    if not host or not port.isdigit():
        raise SpecError(f"{field}: {address} is not host:port; give the cluster's address, e.g. 127.0.0.1:6379")
    fix = "start one (`ray start --head`) or fix the address; nothing was started"
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        reason = f"no answer within {CONNECT_TIMEOUT_S:.0f} s" if isinstance(e, TimeoutError) else e.strerror or str(e)
        raise SpecError(f"{field}: no Ray cluster answers at {address} ({reason}); {fix}") from None
    if scheme or os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
        return
    import grpc  # installed with ray; its import is ~0.3 s, ray's is seconds

    with grpc.insecure_channel(f"{host}:{port}") as channel:
        call = channel.unary_unary("/ray.rpc.NodeInfoGcsService/GetClusterId")
        try:
            call(b"", timeout=CONNECT_TIMEOUT_S)  # an empty GetClusterIdRequest
        except grpc.RpcError as e:
            if e.code() not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                detail = (e.details() or e.code().name).splitlines()[0][:120]
                raise SpecError(f"{field}: {address} answers, but not as a Ray GCS ({e.code().name}: {detail}); "
                                "give the head node's GCS address (host:6379, as `ray start --head` prints it); "
                                "nothing was started") from None


# ---------------------------------------------------------------- LM evaluation
def check_lm_eval(spec: SweepSpec) -> None:
    """lm_eval.data (load_spec made it absolute, so it exists) is a WikiText test parquet, or a dir holding
    test.parquet, with a string column `text` and at least one row (distil.evaluation.perplexity.read_wikitext
    reads it). Raises SpecError naming lm_eval.data and the fix."""
    if spec.lm_eval is None:
        return
    data = Path(spec.lm_eval.data)
    path = data / "test.parquet" if data.is_dir() else data
    if not path.is_file():
        raise SpecError(f"lm_eval.data: {path} does not exist; point lm_eval.data at a WikiText raw dir holding "
                        "test.parquet (e.g. ../shared/data/corpus/wikitext-2-raw-v1)")
    pf = _open_parquet(str(path), "lm_eval.data")
    text = pf.schema_arrow.field("text").type if "text" in pf.schema_arrow.names else None
    if text is None or not (pa.types.is_string(text) or pa.types.is_large_string(text)):
        raise SpecError(f"lm_eval.data: {path} has no string column 'text' (has {pf.schema_arrow.names}); use "
                        "WikiText's raw rows, one line of the raw file per row")
    if pf.metadata.num_rows == 0:
        raise SpecError(f"lm_eval.data: {path} has no rows; restore the file")


# ---------------------------------------------------------------- helpers
def _open_parquet(path: str, field: str) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise SpecError(f"{field}: {path} is not a readable parquet file ({_first_line(e)}); restore or "
                        "re-export it") from None


def _json_or_empty(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _first_line(e: BaseException) -> str:
    return next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
