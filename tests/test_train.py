"""Ray Train distillation on real Ray: token budget, and exact resume after a worker failure."""

from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from distil.config.settings import LossWeights
from distil.config.spec import CorpusSpec, DistillSpec, HeadFitSpec
from distil.science.precision import resolve_bf16
from distil.search.train import CandidateParams, DistillJob, planned_steps
from tests.conftest import CORPUS

PARAMS = CandidateParams(LossWeights(alpha_ce=5.0, alpha_mlm=2.0, alpha_cos=1.0, temperature=2.0),
                         layer_selection="every_other", n_layers=2)


def test_candidate_params_are_written_flat_in_the_order_of_older_sweeps():
    # config.json and result.json "params": the loss weights flat beside the student's shape and init.
    flat = PARAMS.to_json()
    assert list(flat) == ["alpha_ce", "alpha_mlm", "alpha_cos", "temperature", "layer_selection", "n_layers",
                          "alpha_mse"]
    assert CandidateParams.from_values(flat) == PARAMS and flat["alpha_mse"] == 0.0
    with pytest.raises(ValueError, match="every alpha is 0"):
        CandidateParams.from_values({**flat, "alpha_ce": 0.0, "alpha_mlm": 0.0, "alpha_cos": 0.0})


def test_candidate_params_write_the_layer_terms_and_the_width_only_where_set():
    # Absent keys are defaults, so the params an older sweep recorded still equal what its resumed trials compute.
    from distil.config.settings import StudentShape

    params = CandidateParams(LossWeights(alpha_ce=5.0, alpha_mlm=2.0, alpha_cos=1.0, temperature=2.0, alpha_hidden=1.0,
                                         relation_layer=3), layer_selection="every_other", n_layers=2,
                             shape=StudentShape(hidden_size=192))
    flat = params.to_json()
    assert list(flat)[7:] == ["alpha_hidden", "relation_layer", "hidden_size"]
    assert CandidateParams.from_values(flat) == params
    assert CandidateParams.from_values(PARAMS.to_json()).shape == StudentShape()


def test_token_budget_sets_equal_steps_for_every_candidate():
    d = DistillSpec(token_budget=10_000, batch_size=4, grad_accumulation=2)
    # mean length 25 -> 25 · 4 · 2 workers · 2 micro-batches = 400 tokens per step
    assert planned_steps(d, [20, 30], world=2) == 25
    assert planned_steps(DistillSpec(steps=7), [20, 30], world=2) == 7
    # A spec dumped and rebuilt (as it crosses process boundaries) keeps its token budget.
    assert DistillSpec(**d.model_dump()) == d and DistillSpec(**d.model_dump()).steps is None


@pytest.fixture(scope="module")
def assets(tmp_path_factory, teacher_source, tokenizer):
    from distil.science.data import prepare_corpus
    from distil.science.teacher import prepare_teacher

    cache = tmp_path_factory.mktemp("cache")
    corpus_dir = prepare_corpus(CorpusSpec(path=str(CORPUS), max_seq_len=32, max_sequences=128), tokenizer, cache, 16)
    teacher_dir, _ = prepare_teacher(teacher_source, corpus_dir, HeadFitSpec(steps=2, batch_size=4, eval_sequences=8),
                                     cache)
    return {"teacher_dir": teacher_dir, "corpus_dir": str(corpus_dir)}


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


# One distillation setting for the uninterrupted run and its interrupted twins: checkpoints every
# 2 steps, two micro-batches per step (the resumed state includes the accumulation position).
SETTING = DistillSpec(num_workers=2, batch_size=4, steps=6, checkpoint_every=2, max_failures=1, grad_accumulation=2)


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory, assets, ray_cluster):
    """(metrics, student dir) of one uninterrupted run of SETTING: what the rung-by-rung run below,
    with its worker failure, must end with (each Ray Train run costs ~20 s of start-up here)."""
    from distil.search.train import distill_student

    tmp = tmp_path_factory.mktemp("clean")
    job = DistillJob(**assets, distill=SETTING, storage=str(tmp / "train"), seed=0)
    return distill_student("clean", PARAMS, job, tmp / "student"), tmp / "student"


@pytest.mark.slow
def test_rungs_and_a_worker_failure_continue_one_train_run_to_the_same_student(tmp_path, assets, clean_run):
    """Early stopping's rungs: the run stopped at half its steps and called again by name continues
    from its checkpoint (not from step 0); a worker that dies at the first step of that second call
    takes the worker group down, Ray Train restarts it from the latest checkpoint (the rung
    boundary), and the run ends with the student of an uninterrupted one."""
    from distil.search.train import distill_student

    whole, whole_dir = clean_run
    job = DistillJob(**assets, distill=SETTING, storage=str(tmp_path / "train"), seed=0)
    first = distill_student("rungs", PARAMS, job, tmp_path / "rung0", stop_at_fraction=1 / 2)
    # Step 3 is no multiple of checkpoint_every (2): a rung boundary gets its own checkpoint.
    assert first["step"] == 3 and first["total_steps"] == 6 and first["resumed_from_step"] == 0
    marker = tmp_path / "failed-once"
    failing = replace(job, fail_once_at_step=3, fail_once_marker=str(marker))
    last = distill_student("rungs", PARAMS, failing, tmp_path / "rung1", stop_at_fraction=1.0)
    assert marker.exists()  # the failure really happened, and the run still finished
    # Restarted from the rung boundary's checkpoint: had the call begun at step 0, the failure at
    # step 3 would have restarted it from the checkpoint at step 2.
    assert last["step"] == 6 and last["resumed_from_step"] == 3
    assert last["tokens"] == whole["tokens"]  # tokens seen are counted across the calls and the restart
    assert whole["resumed_from_step"] == 0 and last["loss"] == pytest.approx(whole["loss"], rel=1e-5)
    # SETTING leaves bf16 at auto: each worker resolved it on its device and said so.
    assert whole["bf16"] is last["bf16"] is resolve_bf16("auto", "cpu")
    _assert_same_weights(whole_dir, tmp_path / "rung1")


@pytest.mark.slow
def test_nan_loss_stops_the_run_with_its_step(tmp_path, assets, ray_cluster):
    """A loss that becomes NaN ends the run at once (no retries) with the step in the message."""
    from distil.search.train import NonFiniteLoss, distill_student

    d = DistillSpec(num_workers=2, batch_size=4, steps=6, checkpoint_every=2)
    job = DistillJob(**assets, distill=d, storage=str(tmp_path / "train"), seed=0)
    # beyond float32: the weighted loss is inf at once
    overflowing = replace(PARAMS, weights=replace(PARAMS.weights, alpha_cos=1e39))
    with pytest.raises(NonFiniteLoss, match=r"loss is inf at step 1\b"):
        distill_student("nan", overflowing, job, tmp_path / "nan")


def _assert_same_weights(a_dir, b_dir):
    a, b = load_file(a_dir / "model.safetensors"), load_file(b_dir / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k
