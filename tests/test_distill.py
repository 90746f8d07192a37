"""The pure distillation step and batch stream (no Ray), on the real teacher and real Wikipedia text."""

import pytest
import torch

from distil.config.settings import LossWeights
from distil.science.distill import BatchStream, StudentForDistillation, distill_step
from distil.science.masking import token_probs
from distil.science.student import build_student
from tests.conftest import CORPUS


@pytest.fixture(scope="module")
def sequences(tokenizer, tmp_path_factory):
    from distil.science.data import load_sequences, prepare_corpus
    from distil.config.spec import CorpusSpec

    spec = CorpusSpec(path=str(CORPUS), train_split="validation", max_seq_len=48, max_sequences=64)
    return load_sequences(prepare_corpus(spec, tokenizer, tmp_path_factory.mktemp("cache"), 16))


def test_tokenised_corpus_is_real_text_framed_by_cls_sep(sequences, tokenizer):
    assert len(sequences) == 64
    assert all(s[0] == tokenizer.cls_token_id and s[-1] == tokenizer.sep_token_id and 12 + 2 <= len(s) <= 48
               for s in sequences)
    assert len(tokenizer.decode(sequences[0][1:-1]).split()) >= 5


def test_batch_stream_is_a_pure_function_of_the_step(sequences):
    a = BatchStream(sequences, 8, seed=0, rank=1, world=2)
    b = BatchStream(sequences, 8, seed=0, rank=1, world=2)
    later = [a(s, 0)[0] for s in range(10)]  # walks past an epoch boundary (8 batches, 2 ranks)
    assert torch.equal(b(7, 0)[0], later[7]) and torch.equal(b(2, 0)[0], later[2])
    other_rank = BatchStream(sequences, 8, seed=0, rank=0, world=2)
    assert not torch.equal(other_rank(0, 0)[0], later[0])


@pytest.mark.parametrize("restrict", [True, False])
@pytest.mark.slow
def test_distill_step_learns(teacher, tokenizer, sequences, restrict):
    torch.manual_seed(0)
    student = StudentForDistillation(build_student(teacher, 3, "every_other"))
    opt = torch.optim.AdamW(student.parameters(), lr=1e-3)
    probs = token_probs(torch.ones(len(tokenizer)), 0.7, tokenizer.all_special_ids)
    stream = BatchStream(sequences[:16], 16, seed=0, rank=0, world=1)
    w = LossWeights(alpha_ce=5.0, alpha_mlm=2.0, alpha_cos=1.0, temperature=2.0)
    losses = []
    for step in range(6):  # the same batch and masks each step: the loss must fall
        ids, attn = stream(0, tokenizer.pad_token_id)
        terms = distill_step(teacher, student, ids, attn, probs, w, mask_id=tokenizer.mask_token_id, mask_prob=0.15,
                             restrict_ce_to_mask=restrict, generator=torch.Generator().manual_seed(0))
        opt.zero_grad()
        terms["loss"].backward()
        opt.step()
        losses.append(terms["loss"].item())
        assert all(torch.isfinite(v) for v in terms.values())
    assert losses[-1] < 0.8 * losses[0]


def test_bf16_autocast_step_is_finite_and_close_to_fp32(teacher, tokenizer, sequences):
    torch.manual_seed(0)
    student = StudentForDistillation(build_student(teacher, 3, "every_other"))
    probs = token_probs(torch.ones(len(tokenizer)), 0.7, tokenizer.all_special_ids)
    ids, attn = BatchStream(sequences[:8], 8, seed=0, rank=0, world=1)(0, tokenizer.pad_token_id)
    w = LossWeights(alpha_ce=5.0, alpha_mlm=2.0, alpha_cos=1.0, temperature=2.0)
    kwargs = dict(mask_id=tokenizer.mask_token_id, mask_prob=0.15, restrict_ce_to_mask=True)
    fp32 = distill_step(teacher, student, ids, attn, probs, w, generator=torch.Generator().manual_seed(0), **kwargs)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = distill_step(teacher, student, ids, attn, probs, w, generator=torch.Generator().manual_seed(0), **kwargs)
    assert torch.isfinite(bf16["loss"])
    assert bf16["loss"].item() == pytest.approx(fp32["loss"].item(), rel=0.05)
