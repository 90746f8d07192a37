"""The rules that the checks before a run (distil.preflight, distil.cli) and the run itself
(distil.science) must apply alike, one function each, so that a check cannot drift from what it checks:

* which refs are local paths: `is_local`; which model a teacher ref names: `resolve_teacher`,
  `local_teacher`, and its `teacher_config`;
* the teacher is a BERT encoder: `check_bert_family`;
* the student's depths and layer selections fit the teacher: `student_depth`;
* which text a corpus split is read from and how it is cut into training sequences: `corpus_split_file`,
  `corpus_pieces`, and how many sequences a sweep needs: `train_sequences_needed`.

No torch and no transformers here (a teacher's config.json is read as JSON), so a bad input fails in
well under a second.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

from distil.config.layers import parse_layer_key, select_layers
from distil.config.spec import Choice, CorpusSpec, DistillSpec, SpecError, SweepSpec

MIN_TRAIN_SEQUENCES = 16  # fewest training sequences a corpus may give (distil.science.data.prepare_corpus)


def is_local(ref: str) -> bool:
    """Whether a validated spec's ref (teacher.model once resolved, corpus.path, glue.data) is a local
    path: load_spec makes every local one absolute, so anything else is a hub id."""
    return os.path.isabs(ref)


# ---------------------------------------------------------------- teacher
def resolve_teacher(ref: str) -> str:
    """The local dir or hub id that teacher ref `ref` (spec teacher.model) names: `package:<module>`
    -> the installed module's `model/` dir; anything else as is (load_spec has made a local path
    absolute; a resumed spec.json keeps that path even if the dir has gone since).

    Raises:
        SpecError (a ValueError): the package is not installed.
    """
    if not ref.startswith("package:"):
        return ref
    module = ref.removeprefix("package:")
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        raise SpecError(f"teacher.model: package {module!r} is not installed; pip install {module.replace('_', '-')}")
    return str(Path(found.submodule_search_locations[0]) / "model")


def local_teacher(ref: str) -> str | None:
    """The local dir of teacher ref `ref` (absolute, see resolve_teacher), None for a hub id.
    Raises SpecError: a `package:` that is not installed."""
    source = resolve_teacher(ref)
    return source if is_local(source) else None


def teacher_config(teacher_dir: str | os.PathLike) -> dict:
    """The teacher's `config.json` (a local dir's) as a dict; what transformers' AutoConfig reads.

    Raises:
        OSError: no readable config.json (FileNotFoundError if there is none).
        ValueError: it is not JSON (json.JSONDecodeError).
    """
    config = json.loads((Path(teacher_dir) / "config.json").read_text())
    return config if isinstance(config, dict) else {}


def check_bert_family(config: dict, where: str) -> None:
    """The teacher of `config` (its config.json) is a BERT encoder: the student is built from BERT
    layers (distil.science.student). Raises SpecError starting with `where` (`teacher.model: REF`)."""
    model_type = config.get("model_type")
    if model_type != "bert":
        raise SpecError(f"{where} is a {model_type!r} model; the student is built from BERT layers, so use a "
                        "BERT-family encoder (model_type 'bert', e.g. bert-base-uncased)")


def student_depth(spec: SweepSpec, teacher_layers: int) -> int:
    """The student depth of a candidate whose depth is not searched: student.n_layers (the first
    choice if searched), else teacher_layers // 2 (DistilBERT's halving); after checking that every
    layer selection of the spec (search.layer_selection, each choice; task_distill.layer_selection)
    gives every student depth distinct teacher layers (distil.config.layers.select_layers).

    Raises:
        SpecError: naming the field, e.g. `search.layer_selection: student.n_layers=8 must be between 1 and ...`.
    """
    depths = spec.student.depths() or [teacher_layers // 2]
    sels = spec.search.layer_selection
    checks = [("search.layer_selection", s) for s in (sels.choices if isinstance(sels, Choice) else [sels])]
    checks += [("task_distill.layer_selection", spec.task_distill.layer_selection)] if spec.task_distill else []
    for field, s in checks:
        for n in depths:
            try:
                select_layers(parse_layer_key(s) if isinstance(s, str) else s, teacher_layers, n)
            except ValueError as e:
                raise SpecError(f"{field}: {e}") from None
    return depths[0]


# ---------------------------------------------------------------- corpus
def corpus_split_file(corpus: CorpusSpec, split: str) -> Path:
    """The parquet file a local corpus (corpus.path a dir) keeps split `split` in: `<path>/<split>.parquet`."""
    return Path(corpus.path) / f"{split}.parquet"


def corpus_pieces(n_tokens: int, max_seq_len: int, min_tokens: int) -> list[tuple[int, int]]:
    """[start, end) of the training sequences cut from a text of `n_tokens` tokens (no special tokens):
    pieces of max_seq_len - 2 tokens (room for [CLS] and [SEP]) from the start, those shorter than
    min_tokens (titles, headings, tails) dropped. 300 tokens, 128, 12 -> [(0, 126), (126, 252), (252, 300)]."""
    body = max_seq_len - 2
    return [(start, min(start + body, n_tokens)) for start in range(0, n_tokens, body)
            if min(start + body, n_tokens) - start >= min_tokens]


def train_sequences_needed(distill: DistillSpec) -> int:
    """Fewest training sequences a corpus must give: one micro-batch per worker (distill.batch_size ×
    num_workers), and MIN_TRAIN_SEQUENCES at least."""
    return max(MIN_TRAIN_SEQUENCES, distill.batch_size * distill.num_workers)
