"""Tasks as data: GLUE rows and the user's own, their spec-time checks, seeded samples, the
tokenised cache, and real fine-tuning runs on real rows of uci_news (4 classes) and goemotions
(28 labels, multi-label) scored against hand computations from the saved predictions."""

import json
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from distil.config.glue import TASKS, glue_task, score_columns
from distil.config.settings import FinetuneSettings
from distil.config.spec import SpecError, SweepSpec, load_spec
from distil.config.tasks import Task, load_split
from tests.conftest import GLUE, ROOT, SHARED

DATA = SHARED / "data" / "tasks"


def _copy(tmp_path, name, source, n=60, labels_json=True, mutate=None, metadata=True):
    """A task dir with the first n rows of the real train and validation files of `source`;
    `mutate(table) -> table` edits both; `metadata=False` drops the HF schema (no ClassLabel)."""
    out = tmp_path / name
    out.mkdir()
    for split in ("train", "validation"):
        table = pq.read_table(DATA / source / f"{split}.parquet").slice(0, n)
        table = mutate(table) if mutate else table
        pq.write_table(table if metadata else table.replace_schema_metadata(None), out / f"{split}.parquet")
    if labels_json is True:
        (out / "labels.json").write_text((DATA / source / "labels.json").read_text())
    elif labels_json is not None:
        (out / "labels.json").write_text(json.dumps(labels_json))
    return out


def _news(data, **kw):
    return {"name": "news", "data": str(data), "text_fields": ["text"], "label_field": "label", **kw}


def _emo(data, **kw):
    return {"name": "emo", "data": str(data), "label_field": "labels", "problem_type": "multi_label_classification",
            **kw}


def _spec(tmp_path, own_tasks, **glue):
    raw = yaml.safe_load((ROOT / "sweeps" / "smoke.yaml").read_text())
    raw["glue"] = {**raw["glue"], "tasks": [], "overrides": {}, **glue}
    raw["tasks"] = own_tasks
    del raw["task_distill"]
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


# ---------------------------------------------------------------- GLUE rows
def test_glue_is_nine_rows_of_the_same_table_in_the_usual_order():
    assert score_columns() == ["cola", "sst2", "mrpc", "stsb", "qqp", "mnli_m", "mnli_mm", "qnli", "rte", "wnli"]
    assert all(isinstance(t, Task) for t in TASKS.values())
    assert TASKS["stsb"].problem_type == "regression" and TASKS["stsb"].num_labels == 1
    assert TASKS["mrpc"].metrics == ("f1", "accuracy") and TASKS["cola"].metrics == ("mcc",)
    assert [t for t in TASKS if TASKS[t].small] == ["cola", "mrpc", "stsb", "rte", "wnli"]
    assert glue_task("nyu-mll/glue", "rte").config == "rte"
    local = glue_task(str(GLUE), "mnli")
    assert local.data == str(GLUE / "mnli") and local.config is None
    ds, subset = load_split(local, "train", 10)  # only train_subset.parquet exists offline
    assert subset and len(ds) == 10 and load_split(local, "validation_mismatched") is None


# ---------------------------------------------------------------- the seeded sample
def test_a_budget_is_the_same_seeded_rows_and_a_smaller_one_is_its_prefix():
    task = Task(name="news", data=str(DATA / "uci_news"))
    big, _ = load_split(task, "validation", 300)
    small, _ = load_split(task, "validation", 40)
    assert small["idx"][:] == big["idx"][:40]
    from datasets import load_dataset

    raw = load_dataset("parquet", data_files={"v": str(DATA / "uci_news" / "validation.parquet")}, split="v")
    assert big["idx"][:] == raw.shuffle(seed=0).select(range(300))["idx"][:]  # the sample used before tasks existed
    assert sorted(load_split(task, "validation")[0].select(range(300))["idx"][:]) == sorted(big["idx"][:])


def test_csv_and_jsonl_data_load_and_get_row_numbers_as_idx(tmp_path):
    rows = pq.read_table(DATA / "goemotions" / "validation.parquet").slice(0, 5).to_pandas()
    for split in ("train", "validation"):
        rows.drop(columns="idx").to_json(tmp_path / f"{split}.jsonl", orient="records", lines=True)
    ds, _ = load_split(Task(name="emo", data=str(tmp_path), label_field="labels",
                            problem_type="multi_label_classification", num_labels=28), "validation")
    assert sorted(ds["idx"][:]) == list(range(5)) and ds["labels"][:][0] == list(rows["labels"][ds["idx"][0]])
    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    pd.DataFrame({"text": ["a b", "c d", "e"], "label": [0, 1, 1]}).to_csv(csv_dir / "train.csv", index=False)
    ds, _ = load_split(Task(name="c", data=str(csv_dir), num_labels=2), "train")
    assert sorted(ds["idx"][:]) == [0, 1, 2]


# ---------------------------------------------------------------- spec
def test_spec_tasks_inline_or_from_a_file_read_num_labels_and_names(tmp_path):
    news = _copy(tmp_path, "news", "uci_news")
    emo = _copy(tmp_path, "emo", "goemotions", labels_json=None)  # num_labels from the ClassLabel metadata
    tasks = [_news(news), _emo(emo)]
    inline = load_spec(_spec(tmp_path, tasks))
    (tmp_path / "tasks.yaml").write_text(yaml.safe_dump(tasks))
    from_file = load_spec(_spec(tmp_path, str(tmp_path / "tasks.yaml")))
    assert inline.tasks == from_file.tasks
    news_t, emo_t = inline.tasks
    assert news_t.num_labels == 4 and news_t.label_names[2] == "entertainment"
    assert news_t.metrics == ("accuracy", "macro_f1")
    assert emo_t.num_labels == 28 and emo_t.label_names[-1] == "neutral"
    assert emo_t.metrics == ("micro_f1", "macro_f1", "roc_auc") and emo_t.threshold == 0.5
    assert inline.finetune_tasks() == [news_t, emo_t]  # glue.tasks: [] -> no GLUE
    # spec.json (what the leaderboard reads back) holds the resolved tasks
    assert SweepSpec.model_validate_json(inline.model_dump_json()).tasks == inline.tasks


def test_glue_and_own_tasks_together_with_overrides_seeds_and_task_distill(tmp_path):
    news = _copy(tmp_path, "news", "uci_news")
    path = _spec(tmp_path, [_news(news, small=True)], tasks=["rte", "sst2"], seeds=[0, 1],
                 overrides={"news": {"max_train_examples": 32}, "rte": {"lr": 1e-5}})
    raw = yaml.safe_load(path.read_text())
    raw["task_distill"] = {"tasks": ["news"]}
    path.write_text(yaml.safe_dump(raw))
    spec = load_spec(path)
    assert [t.name for t in spec.finetune_tasks()] == ["sst2", "rte", "news"]  # GLUE order, then the spec's
    assert spec.glue.overrides["news"].max_train_examples == 32
    assert spec.glue.seeds_for(spec.tasks[0]) == [0, 1] and spec.glue.seeds_for("sst2") == [0]


@pytest.mark.parametrize("name", ["news-emotions", "smoke-tasks"])
def test_shipped_task_specs_validate(name):
    spec = load_spec(ROOT / "sweeps" / f"{name}.yaml")
    tasks = {t.name: t for t in spec.finetune_tasks()}
    assert tasks["uci_news"].num_labels == 4 and tasks["goemotions"].num_labels == 28
    assert tasks["goemotions"].problem_type == "multi_label_classification"


CASES = [
    # (tasks, regex); "{news}" etc. name the dirs of the `dirs` fixture (real rows, some edited)
    ([_news("{news}", eval_splits={"": "test"})],
     r"tasks\.news\.eval_splits: no test\.parquet, test\.csv or test\.jsonl"),
    ([_news("{news}", train_split="training")], r"tasks\.news\.train_split: no training\.parquet"),
    ([_news("{news}", text_fields=["headline"])], r"tasks\.news\.text_fields: no column 'headline' in split 'train'"),
    ([_news("{news}", label_field="topic")], r"tasks\.news\.label_field: no column 'topic'"),
    ([_news("{bad_id}")], r"tasks\.news\.label_field: label id 4 in split 'train' is outside \[0, num_labels=4\)"),
    ([_news("{news}", problem_type="regression", label_field="text")],
     r"tasks\.news\.label_field: 'text' is string in split 'train'; a regression label is a number"),
    ([_news("{emo}", label_field="labels")],
     r"tasks\.news\.label_field: 'labels' holds lists .* use multi_label_classification"),
    ([_emo("{news}", label_field="label")], r"tasks\.emo\.label_field: 'label' is int64 .* list of class ids"),
    ([_emo("{emo_empty}")], r"tasks\.emo\.num_labels: a multi-label task needs at least one label"),
    ([_emo("{emo}", num_labels=0)], r"tasks\.0\.num_labels: a multi-label task needs at least one label"),
    ([_news("{news}"), _news("{news}")], r"tasks: duplicate task name\(s\) or column\(s\) \['news'\]"),
    ([_news("{news}", name="sst2")], r"tasks: duplicate task name\(s\) or column\(s\) \['sst2'\]"),
    ([_news("{news}", name="mnli", eval_splits={"_m": "validation"})], r"duplicate .*\['mnli', 'mnli_m'\]"),
    ([_emo("{emo}", metrics=["accuracy"])],
     r"tasks\.0\.metrics: unknown metric\(s\) \['accuracy'\] for multi_label_classification"),
    ([_news("{news}", metrics=["roc_auc"])],
     r"tasks\.0\.metrics: unknown metric\(s\) \['roc_auc'\] for single_label_classification"),
    ([_news("{news}", num_labels=4, metrics=["f1"])], r"tasks\.0\.metrics: f1 is binary F1"),
    ([_news("{news}", num_labels=5)], r"tasks\.news\.num_labels: 5 given but the data has 4 labels"),
    ([_news("{no_labels}")], r"tasks\.news\.num_labels: not given and .* has no labels\.json or ClassLabel"),
    ([_news("./no/such/dir")], r"tasks\.news\.data: path './no/such/dir' does not exist"),
    ([_news("{news}", problem_type="ranking")], r"tasks\.0\.problem_type: Input should be"),
    ([_news("{news}", text_field=["text"])], r"tasks\.0\.text_field: unknown key"),
    ([_news("{news}", threshold=1.5)], r"tasks\.0\.threshold: Input should be less than 1"),
    ("{missing_file}", r"tasks: no task file"),
    ([], r"glue\.tasks: no GLUE task and no tasks: nothing to fine-tune on"),
]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("taskdirs")

    def bad_id(table):  # a label past the 4 classes in row 0 (plain parquet: no ClassLabel to reject it)
        labels = table.column("label").to_pylist()
        return table.set_column(table.schema.get_field_index("label"), "label", pa.array([4] + labels[1:], pa.int64()))

    return {"news": _copy(tmp, "news", "uci_news"), "emo": _copy(tmp, "emo", "goemotions"),
            "bad_id": _copy(tmp, "bad_id", "uci_news", mutate=bad_id, metadata=False),
            "emo_empty": _copy(tmp, "emo_empty", "goemotions", labels_json=[]),
            "no_labels": _copy(tmp, "no_labels", "uci_news", labels_json=None, metadata=False),
            "missing_file": tmp / "no_such_tasks.yaml"}


@pytest.mark.parametrize("tasks, message", CASES)
def test_bad_task_definitions_fail_at_spec_time_with_one_line_naming_the_field(tmp_path, dirs, tasks, message):
    def fill(v):
        return v.format(**dirs) if isinstance(v, str) else v

    tasks = fill(tasks) if isinstance(tasks, str) else [{k: fill(v) for k, v in t.items()} for t in tasks]
    with pytest.raises(SpecError, match=message) as e:
        load_spec(_spec(tmp_path, tasks))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("extra, message", [
    ({"overrides": {"squad": {"lr": 1e-5}}}, r"glue\.overrides: overrides for unknown task\(s\) \['squad'\]"),
    ({"task_distill": {"tasks": ["squad"]}}, r"task_distill\.tasks: \['squad'\] not in glue\.tasks or tasks"),
])
def test_overrides_and_task_distill_name_declared_tasks(tmp_path, dirs, extra, message):
    path = _spec(tmp_path, [_news(dirs["news"])], **{k: v for k, v in extra.items() if k == "overrides"})
    raw = yaml.safe_load(path.read_text())
    raw.update({k: v for k, v in extra.items() if k != "overrides"})
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(SpecError, match=message):
        load_spec(path)


# ---------------------------------------------------------------- multi-label task distillation loss
def test_multi_label_task_kd_loss_is_per_label_soft_target_bce():
    from distil.evaluation.task_distill import task_kd_loss

    s, t, y, T, a = torch.tensor([[2.0, -1.0]]), torch.tensor([[0.5, 1.0]]), torch.tensor([[1.0, 0.0]]), 2.0, 0.3
    def sig(x):
        return 1 / (1 + math.exp(-x))

    def bce(p, q):
        return -(q * math.log(p) + (1 - q) * math.log(1 - p))

    soft = sum(bce(sig(si / T), sig(ti / T)) for si, ti in zip([2.0, -1.0], [0.5, 1.0])) / 2 * T**2
    hard = (bce(sig(2.0), 1.0) + bce(sig(-1.0), 0.0)) / 2
    assert task_kd_loss(s, t, y, a, T).item() == pytest.approx(a * soft + (1 - a) * hard, rel=1e-6)


# ---------------------------------------------------------------- real fine-tuning, hand-checked scores
SETTINGS = FinetuneSettings(lr=1e-3, epochs=1, batch_size=16, max_seq_len=64, max_train_examples=64,
                            max_eval_examples=48, use_gpu=False)


def _hand_f1s(y, p):
    """(micro-F1, macro-F1 over labels with a true example) of 0/1 matrices (N, L), from counts."""
    tp, fp, fn = (y & p).sum(0), ((1 - y) & p).sum(0), (y & (1 - p)).sum(0)
    micro = 2 * tp.sum() / (2 * tp.sum() + fp.sum() + fn.sum()) if tp.sum() + fp.sum() + fn.sum() else 0.0
    per_label = [2 * tp[j] / (2 * tp[j] + fp[j] + fn[j]) for j in range(y.shape[1]) if y[:, j].any()]
    return 100 * micro, 100 * float(np.mean(per_label))


def _hand_auc(y, s):
    """Mean over labels with both classes of P(score of a positive > score of a negative), ties 1/2."""
    aucs = []
    for j in range(y.shape[1]):
        pos, neg = s[y[:, j] == 1, j], s[y[:, j] == 0, j]
        if len(pos) and len(neg):
            aucs.append((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())
    return 100 * float(np.mean(aucs))


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory, teacher, tokenizer):
    """A 1-layer student built from the real teacher, saved with the tokenizer as the sweep does."""
    from distil.science.student import build_student

    out = tmp_path_factory.mktemp("student")
    build_student(teacher, 1, "first").save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="module")
def real_tasks():
    """The shipped task definitions on the real data, resolved as load_spec does."""
    return {t.name: t for t in load_spec(ROOT / "sweeps" / "smoke-tasks.yaml").tasks}


@pytest.fixture(scope="module")
def runs(student_dir, real_tasks, tmp_path_factory):
    """{task: (result, predictions DataFrame)} of one tiny fine-tuning run per task."""
    from distil.evaluation.finetune import finetune_and_evaluate

    pred_dir = tmp_path_factory.mktemp("preds")
    out = {}
    for name, task in real_tasks.items():
        result = finetune_and_evaluate(student_dir, task, SETTINGS, 0, str(pred_dir))
        out[name] = result, pd.read_parquet(pred_dir / f"{name}-seed0.parquet")
    return out


def _truth(task, idx):
    """The real labels of rows `idx` of the task's validation file."""
    table = pq.read_table(DATA / task / "validation.parquet").to_pandas().set_index("idx")
    column = "label" if task == "uci_news" else "labels"
    return [v.tolist() if isinstance(v, np.ndarray) else v for v in table.loc[idx, column]]


@pytest.mark.slow
def test_multi_class_run_scores_match_a_hand_computation(runs):
    result, df = runs["uci_news"]
    assert list(df.columns) == ["idx", "label", "prediction"] and len(df) == 48 == result["n_eval"]
    assert df["label"].tolist() == _truth("uci_news", df["idx"].tolist())
    y, p = df["label"].to_numpy(), df["prediction"].to_numpy()
    f1s = [2 * ((p == c) & (y == c)).sum() / ((p == c).sum() + (y == c).sum()) for c in np.unique(y)]
    scores = result["scores"][""]
    assert scores["accuracy"] == pytest.approx(100 * (y == p).mean())
    assert scores["macro_f1"] == pytest.approx(100 * np.mean(f1s))
    assert set(scores) == {"accuracy", "macro_f1"} and result["n_train"] == 64


@pytest.mark.slow
def test_multi_label_run_scores_match_a_hand_computation_from_its_saved_predictions(runs, real_tasks):
    from distil.evaluation.finetune import score_predictions

    task = real_tasks["goemotions"]
    result, df = runs["goemotions"]
    assert list(df.columns) == ["idx", "label", "prediction", "probability"]
    assert [v.tolist() for v in df["label"]] == _truth("goemotions", df["idx"].tolist())  # the true label ids
    probs = np.stack(df["probability"].to_numpy())
    assert probs.shape == (48, 28) and ((probs > 0) & (probs < 1)).all()
    assert all(list(pred) == list(np.flatnonzero(row >= 0.5)) for pred, row in zip(df["prediction"], probs))
    y = np.zeros((48, 28), dtype=int)
    for i, ids in enumerate(df["label"]):
        y[i, ids] = 1
    micro, macro = _hand_f1s(y, (probs >= 0.5).astype(int))
    scores = result["scores"][""]
    assert scores == pytest.approx({"micro_f1": micro, "macro_f1": macro, "roc_auc": _hand_auc(y, probs)})
    assert score_predictions(task, df) == pytest.approx(scores)  # recomputed from the file alone
    # At 1 epoch on 64 rows few labels (if any) reach 0.5: rescore the saved probabilities at a
    # threshold that predicts about a tenth of the labels, and on a subset of rows (a bootstrap).
    cut = float(np.quantile(probs, 0.9))
    micro, macro = _hand_f1s(y, (probs >= cut).astype(int))
    assert 0 < micro < 100
    assert score_predictions(replace(task, threshold=cut), df) == pytest.approx(
        {"micro_f1": micro, "macro_f1": macro, "roc_auc": _hand_auc(y, probs)})
    rows = np.arange(0, 48, 2)
    sub = score_predictions(replace(task, threshold=cut), df.iloc[rows])
    hand = _hand_f1s(y[rows], (probs[rows] >= cut).astype(int))
    assert sub == pytest.approx(dict(zip(("micro_f1", "macro_f1"), hand))
                                | {"roc_auc": _hand_auc(y[rows], probs[rows])})


@pytest.mark.slow
def test_a_prepared_cache_reproduces_the_in_memory_run_and_serves_smaller_budgets_as_prefixes(
        runs, student_dir, real_tasks, tokenizer, tmp_path):
    from distil.evaluation.finetune import finetune_and_evaluate, load_task_data, prepare_task_data

    task = real_tasks["uci_news"]
    bigger = replace(SETTINGS, max_eval_examples=96)
    cache = prepare_task_data(task, bigger, tokenizer, tmp_path)
    assert prepare_task_data(task, bigger, tokenizer, tmp_path) == cache  # reused, not rebuilt
    result = finetune_and_evaluate(student_dir, task, SETTINGS, 0, str(tmp_path / "p"), data_cache=cache)
    assert result["scores"] == runs["uci_news"][0]["scores"]
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "p" / "uci_news-seed0.parquet"), runs["uci_news"][1])
    with pytest.raises(ValueError, match="holds 96 rows, asked 200"):
        load_task_data(cache, task, replace(SETTINGS, max_eval_examples=200))


def test_cli_rejects_a_bad_task_with_exit_2_and_one_line_before_any_work(tmp_path, dirs, monkeypatch, capsys):
    """The CLI's main in this process (tests/test_spec.py and test_bad_inputs.py run the CLI as a process)."""
    import run_sweep

    fresh = _copy(tmp_path, "fresh", "uci_news")  # never read before: no cached Arrow copy
    spec = _spec(tmp_path, [_news(fresh, text_fields=["headline"])])
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    capsys.readouterr()
    rc = run_sweep.main([str(spec), "--dry-run", "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and err.strip().count("\n") == 0, err
    assert "tasks.news.text_fields: no column 'headline'" in err and not (tmp_path / "o").exists()


@pytest.mark.slow
def test_a_multi_label_head_starts_at_the_label_frequencies(student_dir):
    from transformers import AutoModelForSequenceClassification

    from distil.evaluation.finetune import _bias_to_prior

    model = AutoModelForSequenceClassification.from_pretrained(student_dir, num_labels=3,
                                                               problem_type="multi_label_classification")
    _bias_to_prior(model, np.array([0.5, 0.1, 0.0]))
    assert torch.sigmoid(model.classifier.bias).tolist() == pytest.approx([0.5, 0.1, 1e-4], rel=1e-4)
