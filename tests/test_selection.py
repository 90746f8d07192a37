"""The held-out selection slice (issue 21, point 2): the search ranks candidates on rows of each
train split that no run trains on, the leaderboard reports the validation splits, and the two
never share an example, for every task (GLUE's and the user's own), on the real data."""

import math
from dataclasses import replace

import numpy as np
import pytest

from distil.config.glue import TASKS, glue_task
from distil.config.settings import FinetuneSettings
from distil.config.spec import load_spec
from distil.config.tasks import load_split
from distil.evaluation import scores
from distil.evaluation.finetune import build_task_data, load_task_data, prepare_task_data
from tests.conftest import GLUE, ROOT

SMALL = FinetuneSettings(lr=1e-4, epochs=1, batch_size=8, max_seq_len=32, max_train_examples=24,
                         max_eval_examples=16, selection_examples=16)


def test_the_slice_follows_the_training_rows_or_comes_out_of_them():
    s = replace(SMALL, max_train_examples=100, selection_examples=50)
    assert s.limit("max_train_examples") == 150 and s.limit("max_eval_examples") == 16
    assert s.train_and_selection(150) == (range(100), range(100, 150))  # training unchanged
    # A split too short for both: at most a tenth of it is held out, taken from training.
    assert s.train_and_selection(120) == (range(100), range(100, 112))
    assert s.train_and_selection(105) == (range(95), range(95, 105))
    # No training budget (the whole split): the last rows are held out.
    whole = replace(s, max_train_examples=None)
    assert whole.limit("max_train_examples") is None and whole.train_and_selection(635) == (range(585), range(585, 635))
    assert replace(whole, selection_examples=500).train_and_selection(635) == (range(572), range(572, 635))
    with pytest.raises(ValueError, match="unknown budget"):
        s.limit("max_test_examples")


def test_the_spec_sizes_the_slice_per_task_and_for_the_proxy():
    from distil.search.finetune_runs import proxy_glue

    spec = load_spec(ROOT / "sweeps" / "smoke.yaml")  # max_eval 200, sst2 overridden to 872
    assert spec.glue.selection_examples is None
    assert spec.glue.settings("rte").selection_examples == 200
    assert spec.glue.settings("sst2").selection_examples == 872
    assert spec.glue.model_copy(update={"max_eval_examples": None}).settings("rte").selection_examples == 500
    assert spec.glue.model_copy(update={"selection_examples": 64}).settings("sst2").selection_examples == 64
    proxy = proxy_glue(spec)  # the proxy scores its own slice, as large as its eval budget
    assert proxy.settings("sst2").selection_examples == spec.search.early_stopping.proxy.max_eval_examples


def _every_task():
    own = load_spec(ROOT / "sweeps" / "news-emotions.yaml").tasks  # uci_news, goemotions: real rows
    return [glue_task(str(GLUE), n) for n in TASKS if (GLUE / n).is_dir()] + list(own)


@pytest.mark.parametrize("task", _every_task(), ids=lambda t: t.name)
def test_rows_that_select_and_rows_that_report_are_disjoint(task, tokenizer):
    data = build_task_data(task, SMALL, tokenizer)
    train, selection = data["splits"][task.train_split], data["selection"]
    trained = {(task.train_split, i) for i in train["idx"]}
    selected = {(task.train_split, i) for i in selection["idx"]}
    reported = {(split, i) for split in task.eval_splits.values() if data["splits"][split] is not None
                for i in data["splits"][split]["idx"]}
    assert len(selected) == 16 and reported
    assert not selected & reported and not selected & trained
    # Training is what it was before the slice existed: the first max_train_examples of the seeded order.
    first, _ = load_split(task, task.train_split, SMALL.max_train_examples)
    assert list(train["idx"]) == list(first["idx"])


def test_a_cached_task_gives_the_same_slice_and_the_whole_split_holds_out_its_end(tmp_path, tokenizer):
    task = glue_task(str(GLUE), "wnli")  # 635 training rows
    cache = prepare_task_data(task, replace(SMALL, max_train_examples=40, selection_examples=0), tokenizer, tmp_path)
    cached, built = load_task_data(cache, task, SMALL), build_task_data(task, SMALL, tokenizer)
    assert list(cached["selection"]["idx"]) == list(built["selection"]["idx"])
    assert list(cached["splits"]["train"]["idx"]) == list(built["splits"]["train"]["idx"])
    whole = replace(SMALL, max_train_examples=None, selection_examples=100)
    data = build_task_data(task, whole, tokenizer)
    everything, _ = load_split(task, "train", None)
    assert len(data["splits"]["train"]) == 572 and list(data["selection"]["idx"]) == list(everything["idx"])[572:]


def test_the_search_scores_a_result_on_its_selection_slices():
    def run(task, seed, validation, selection):
        return {"task": task, "seed": seed, "scores": {"": {"accuracy": validation}},
                "selection": {"accuracy": selection}}

    result = {"kind": "student", "glue": [run("rte", 0, 60.0, 50.0), run("rte", 1, 62.0, 54.0),
                                          run("sst2", 0, 80.0, 70.0), run("wnli", 0, 40.0, 30.0)]}
    sel = scores.selection_row(result)
    assert sel["rte"] == 52.0 and sel["sst2"] == 70.0
    assert sel["macro_score"] == pytest.approx(np.mean([52.0, 70.0, 30.0]))
    assert scores.selection_row(result, include_wnli=False)["macro_score"] == pytest.approx(61.0)
    reported = scores.row_from_result(result)
    assert reported["macro_score"] == pytest.approx(np.mean([61.0, 80.0, 40.0]))  # the validation splits'
    old = {"kind": "student", "glue": [{"task": "rte", "seed": 0, "scores": {"": {"accuracy": 60.0}}}]}
    assert math.isnan(scores.selection_row(old)["macro_score"])  # written before the slice: nothing to rank by
    assert math.isnan(scores.selection_score(old["glue"][0]))
