"""Ray Train distillation on real Ray: token budget, and exact resume after a worker failure."""

import pytest
import torch
from safetensors.torch import load_file

from distil.spec import CorpusSpec, DistillSpec, HeadFitSpec
from distil.train import planned_steps
from tests.conftest import CORPUS

PARAMS = {"alpha_ce": 5.0, "alpha_mlm": 2.0, "alpha_cos": 1.0, "temperature": 2.0, "layer_selection": "every_other"}


def test_token_budget_sets_equal_steps_for_every_candidate():
    d = DistillSpec(token_budget=10_000, batch_size=4, grad_accumulation=2)
    # mean length 25 -> 25 · 4 · 2 workers · 2 micro-batches = 400 tokens per step
    assert planned_steps(d, [20, 30], world=2) == 25
    assert planned_steps(DistillSpec(steps=7), [20, 30], world=2) == 7


@pytest.fixture(scope="module")
def assets(tmp_path_factory, teacher_source, tokenizer):
    from distil.data import prepare_corpus
    from distil.teacher import prepare_teacher

    cache = tmp_path_factory.mktemp("cache")
    corpus_dir = prepare_corpus(CorpusSpec(path=str(CORPUS), max_seq_len=32, max_sequences=128), tokenizer, cache, 16)
    teacher_dir, _ = prepare_teacher(teacher_source, corpus_dir, HeadFitSpec(steps=2, batch_size=4, eval_sequences=8), cache)
    return {"teacher_dir": teacher_dir, "corpus_dir": str(corpus_dir)}


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


def test_worker_failure_resumes_to_the_same_student(tmp_path, assets, ray_cluster):
    from distil.train import distil_student

    d = DistillSpec(num_workers=2, batch_size=4, steps=6, checkpoint_every=2, max_failures=1, grad_accumulation=2)
    ctx = {**assets, "n_layers": 2, "seed": 0, "distill": d.model_dump(), "storage": str(tmp_path / "train")}
    clean = distil_student("clean", PARAMS, ctx, tmp_path / "clean")
    marker = tmp_path / "failed-once"
    failed = distil_student("failed", PARAMS, {**ctx, "fail_once_at_step": 3, "fail_once_marker": str(marker)}, tmp_path / "failed")
    assert marker.exists()  # the failure really happened, and the run still finished
    assert clean["step"] == failed["step"] == 6
    # It resumed from the checkpoint at step 2 (redoing at most one interval), not from scratch.
    assert clean["resumed_from_step"] == 0 and failed["resumed_from_step"] == 2
    assert failed["loss"] == pytest.approx(clean["loss"], rel=1e-5)  # same loss over steps 4-6
    a, b = load_file(tmp_path / "clean" / "model.safetensors"), load_file(tmp_path / "failed" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k
