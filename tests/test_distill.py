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


# ---------------------------------------------------------------- the layer-wise terms in the step
MASK_ID = 3


@pytest.fixture(scope="module")
def tiny_teacher():
    """A random-init BERT masked LM small enough for a CPU step in well under a second: 4 layers, hidden 96,
    12 heads (d = 8), FFN 192, vocabulary 100."""
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=96, num_hidden_layers=4, num_attention_heads=12,
                        intermediate_size=192, max_position_embeddings=32)
    return BertForMaskedLM(config).eval()


def _batch():
    """(input_ids, attention_mask) (4, 12) with two padded rows, and uniform masking weights over ids 5..99."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 100, (4, 12), generator=g)
    attn = torch.ones(4, 12, dtype=torch.long)
    attn[1, 7:], attn[3, 4:] = 0, 0
    ids[attn == 0] = 0
    probs = torch.ones(100)
    probs[:5] = 0.0
    return ids, attn, probs


def _head_step(teacher, student, ids, attn, probs, w, generator):
    """distill_step and StudentForDistillation.forward as they were at e259774, before the layer-wise terms
    (restrict_ce_to_mask; the pure terms ce_loss, mlm_loss, cosine_loss are unchanged since)."""
    from distil.science.losses import ce_loss, cosine_loss, mlm_loss
    from distil.science.masking import mask_tokens
    from distil.science.teacher import mlm_logits_at

    corrupted, labels = mask_tokens(ids, probs, mask_id=MASK_ID, mask_prob=0.15, generator=generator)
    masked = labels != -100
    with torch.no_grad():
        t_hidden, t_logits = mlm_logits_at(teacher, corrupted, attn, masked)
    hidden = student.distilbert(input_ids=corrupted, attention_mask=attn).last_hidden_state
    s_logits = student.vocab_projector(student.vocab_layer_norm(student.activation(student.vocab_transform(
        hidden[masked]))))
    real = attn.bool()
    ce = ce_loss(s_logits, t_logits, w.temperature)
    mlm = mlm_loss(s_logits[masked[masked]], labels[masked])
    cos = cosine_loss(hidden[real], t_hidden[real])
    return w.alpha_ce * ce + w.alpha_mlm * mlm + w.alpha_cos * cos + w.alpha_mse * hidden.new_zeros(())


def test_with_the_new_terms_at_zero_the_step_is_the_one_before_them_bit_for_bit(tiny_teacher):
    import copy

    from distil.config.spec import DistillSpec
    from distil.science.distill import apply_update, optimizer_for

    torch.manual_seed(0)
    student = build_student(tiny_teacher, 2, "every_other")
    before = copy.deepcopy(student).train()
    w = LossWeights(alpha_ce=5.0, alpha_mlm=2.0, alpha_cos=1.0, temperature=2.0)  # alpha_hidden/attn/relation 0
    model = StudentForDistillation(student, w, tiny_teacher.config).train()
    assert not list(model.projections.parameters())  # no projection when no term needs one
    ids, attn, probs = _batch()
    d = DistillSpec(lr=1e-3)
    opt_new, sched_new = optimizer_for(model, d, 10)
    opt_old, sched_old = optimizer_for(before, d, 10)
    for step in range(2):  # dropout on: the same draws in the same order, or the numbers differ
        torch.manual_seed(100 + step)
        new = distill_step(tiny_teacher, model, ids, attn, probs, w, mask_id=MASK_ID, mask_prob=0.15,
                           restrict_ce_to_mask=True, generator=torch.Generator().manual_seed(step))
        torch.manual_seed(100 + step)
        old = _head_step(tiny_teacher, before, ids, attn, probs, w, torch.Generator().manual_seed(step))
        assert torch.equal(new["loss"], old) and set(new) == {"loss", "ce", "mlm", "cos", "mse"}
        new["loss"].backward()
        old.backward()
        apply_update(model, opt_new, sched_new, d.max_grad_norm)
        apply_update(before, opt_old, sched_old, d.max_grad_norm)
        for (name, a), b in zip(student.named_parameters(), before.parameters()):
            assert torch.equal(a, b), name


def test_a_narrow_student_learns_from_every_term(tiny_teacher, tmp_path):
    from safetensors.torch import load_file

    from distil.config.settings import StudentShape

    torch.manual_seed(0)
    student = build_student(tiny_teacher, 2, "every_other", StudentShape(hidden_size=48, intermediate_size=96))
    assert (student.config.dim, student.config.n_heads) == (48, 12)  # the teacher's 12 heads, of 4 units
    w = LossWeights(alpha_ce=5.0, alpha_mlm=2.0, alpha_cos=1.0, temperature=2.0, alpha_mse=0.01, alpha_hidden=1.0,
                    alpha_attn=1.0, alpha_relation=1.0, relation_heads=12, layer_map="uniform", relation_layer=-2)
    model = StudentForDistillation(student, w, tiny_teacher.config).train()
    start = {k: v.clone() for k, v in model.projections.state_dict().items()}
    assert set(start) == {"hidden.weight", "hidden.bias", "embeddings.weight", "embeddings.bias"}
    assert start["hidden.weight"].shape == (96, 48)  # W_h: student width -> teacher width
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    ids, attn, probs = _batch()
    losses = []
    for step in range(6):  # the same batch and masks each step: the loss must fall
        torch.manual_seed(step)
        terms = distill_step(tiny_teacher, model, ids, attn, probs, w, mask_id=MASK_ID, mask_prob=0.15,
                             restrict_ce_to_mask=False, generator=torch.Generator().manual_seed(0))
        assert set(terms) == {"loss", "ce", "mlm", "cos", "mse", "hidden", "attn", "relation"}
        assert all(torch.isfinite(v) for v in terms.values())
        assert all(terms[k] > 0 for k in ("hidden", "attn", "relation", "cos"))
        opt.zero_grad()
        terms["loss"].backward()
        opt.step()
        losses.append(terms["loss"].item())
    assert losses[-1] < 0.8 * losses[0], losses
    assert not torch.equal(model.projections["hidden"].weight, start["hidden.weight"])  # trained with the student
    student.save_pretrained(tmp_path)  # what a checkpoint's student dir holds: no projection in it
    saved = load_file(tmp_path / "model.safetensors")
    assert saved and not any("projection" in k or k.startswith(("hidden.", "embeddings.weight")) for k in saved)


def test_the_wrapper_must_be_built_for_the_terms_it_serves(tiny_teacher):
    from distil.config.settings import StudentShape
    from distil.config.spec import SpecError

    ids, attn, probs = _batch()
    w = LossWeights(alpha_ce=0.0, alpha_mlm=1.0, alpha_cos=0.0, temperature=2.0, alpha_hidden=1.0)
    plain = StudentForDistillation(build_student(tiny_teacher, 2, "every_other"))
    with pytest.raises(ValueError, match=r"gives no \['hidden'\]"):
        distill_step(tiny_teacher, plain, ids, attn, probs, w, mask_id=MASK_ID, mask_prob=0.15,
                     restrict_ce_to_mask=True, generator=torch.Generator().manual_seed(0))
    six_heads = build_student(tiny_teacher, 2, "every_other", StudentShape(hidden_size=48, num_attention_heads=6))
    with pytest.raises(SpecError, match="student.num_attention_heads: 6 heads, the teacher has 12"):
        StudentForDistillation(six_heads, LossWeights(alpha_ce=1.0, alpha_mlm=0.0, alpha_cos=0.0, temperature=2.0,
                                                      alpha_attn=1.0), tiny_teacher.config)
