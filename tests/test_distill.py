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


# ---------------------------------------------------------------- the Distiller (the loop the worker wraps)
def _distiller(teacher, w, *, state=None, student_state=None, accum=2, bf16=False, total_steps=6):
    """A Distiller over 32 random sequences of 6..12 ids (batches of 4), the student built as a worker builds it."""
    from distil.config.spec import DistillSpec
    from distil.science.distill import BatchStream
    from distil.science.distiller import Distiller

    g = torch.Generator().manual_seed(2)
    sequences = [torch.randint(5, 100, (int(n),), generator=g) for n in torch.randint(6, 13, (32,), generator=g)]
    torch.manual_seed(0)
    model = StudentForDistillation(build_student(teacher, 2, "every_other"), w, teacher.config)
    if student_state is not None:
        model.student.load_state_dict(student_state)
    d = DistillSpec(lr=1e-3, grad_accumulation=accum, warmup_ratio=0.2, bf16=bf16)
    dist = Distiller(teacher, model, BatchStream(sequences, 4, seed=0, rank=0, world=1), _batch()[2], w, d,
                     total_steps=total_steps, seed=0, pad_id=0, mask_id=MASK_ID, bf16=bf16)
    if state is not None:
        dist.load_state_dict(state)
    return dist


LAYER_TERMS = LossWeights(alpha_ce=5.0, alpha_mlm=2.0, alpha_cos=1.0, temperature=2.0, alpha_hidden=1.0)


def test_a_distiller_resumed_from_its_state_dict_repeats_the_uninterrupted_run_bit_for_bit(tiny_teacher, tmp_path):
    import copy

    whole = _distiller(tiny_teacher, LAYER_TERMS)
    for _ in range(4):
        whole.step()
    first = _distiller(tiny_teacher, LAYER_TERMS)
    first.step()
    first.step()
    first.interval()  # a checkpoint follows a read of the metrics in the worker; state_dict() must not need one
    first.step()
    torch.save(first.state_dict(), tmp_path / "train_state.pt")  # as a checkpoint holds it
    state = torch.load(tmp_path / "train_state.pt", weights_only=True)
    assert set(state) == {"optimizer", "scheduler", "step", "tokens", "projections"} and state["step"] == 3
    later = _distiller(tiny_teacher, LAYER_TERMS, state=state, student_state=copy.deepcopy(first.student.state_dict()))
    later.step()
    assert later.steps_done == whole.steps_done == 4
    for (name, a), b in zip(whole.wrapper.named_parameters(), later.wrapper.parameters()):  # projections too
        assert torch.equal(a, b), name
    later.interval(), whole.interval()  # each folds its pending tokens into .tokens
    assert later.tokens == whole.tokens > 0


def test_a_distiller_step_is_the_loop_it_replaced(tiny_teacher):
    """The step of train_loop_per_worker as it was at 138449f (accumulation, dropout seeds, float sums,
    apply_update), fp32: the same weights bit for bit and the same mean loss terms."""
    from distil.science.distill import BatchStream, apply_update, optimizer_for, step_seed

    w = LossWeights(alpha_ce=5.0, alpha_mlm=2.0, alpha_cos=1.0, temperature=2.0)
    dist = _distiller(tiny_teacher, w)
    for _ in range(2):
        dist.step()
    got = dist.interval()
    old = _distiller(tiny_teacher, w)  # its model, stream and spec, driven by the old loop
    model, stream, d, probs = old.model, old.batches, old.d, _batch()[2]
    assert isinstance(stream, BatchStream)
    opt, sched = optimizer_for(model, d, 6)
    sums, tokens = {}, 0
    for step in range(2):
        model.train()
        for micro in range(step * 2, (step + 1) * 2):
            seed = step_seed(0, micro, 0, 1)
            torch.manual_seed(seed)
            ids, attn = stream(micro, 0)
            terms = distill_step(tiny_teacher, model, ids, attn, probs, w, mask_id=MASK_ID, mask_prob=0.15,
                                 restrict_ce_to_mask=True, generator=torch.Generator().manual_seed(seed))
            (terms["loss"] / 2).backward()
            tokens += int(attn.sum())
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) / 2
        apply_update(model, opt, sched, d.max_grad_norm)
    for (name, a), b in zip(dist.model.named_parameters(), model.parameters()):
        assert torch.equal(a, b), name
    assert got["tokens"] == tokens and got["steps"] == 2
    assert got["terms"] == pytest.approx({k: v / 2 for k, v in sums.items()}, rel=1e-12)


def test_a_non_finite_loss_stops_the_distiller_before_the_update_with_its_step(tiny_teacher):
    from distil.science.distiller import NonFiniteLoss

    dist = _distiller(tiny_teacher, LossWeights(alpha_ce=5.0, alpha_mlm=2.0, alpha_cos=1e39, temperature=2.0))
    before = {k: v.clone() for k, v in dist.student.state_dict().items()}
    with pytest.raises(NonFiniteLoss, match=r"^loss is inf at step 1$"):
        dist.step()
    assert dist.steps_done == 0 and dist.state_dict()["tokens"] == 0 and dist.interval()["terms"] == {}
    assert all(torch.equal(v, before[k]) for k, v in dist.student.state_dict().items())  # no update taken
    assert dist.sched.last_epoch == 0 and not dist.opt.state


def test_a_non_finite_gradient_with_a_finite_loss_is_named_as_such(tiny_teacher):
    from distil.science.distiller import NonFiniteLoss

    dist = _distiller(tiny_teacher, LossWeights(alpha_ce=5.0, alpha_mlm=2.0, alpha_cos=1.0, temperature=2.0))
    dist.step()
    dist.student.distilbert.embeddings.word_embeddings.weight.register_hook(lambda g: g * float("nan"))
    with pytest.raises(NonFiniteLoss, match=r"^gradient norm is not finite at step 2 \(loss \d.* finite on this"):
        dist.step()
    assert dist.steps_done == 1


def test_the_teacher_cast_once_to_bf16_gives_autocast_s_numbers(tiny_teacher):
    from distil.science.distiller import cast_frozen_linears
    from distil.science.teacher import mlm_logits_at

    ids, attn, _ = _batch()
    cast = cast_frozen_linears(tiny_teacher, torch.bfloat16)
    assert cast.cls.predictions.decoder.weight.dtype == torch.bfloat16
    assert cast.bert.embeddings.word_embeddings.weight is tiny_teacher.bert.embeddings.word_embeddings.weight  # shared
    assert tiny_teacher.cls.predictions.decoder.weight.dtype == torch.float32  # the original is left as it was
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        a = mlm_logits_at(tiny_teacher, ids, attn, attn.bool())
        b = mlm_logits_at(cast, ids, attn, attn.bool())
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_a_bf16_distiller_resumes_exactly_and_stays_near_fp32(tiny_teacher):
    import copy

    w = LossWeights(alpha_ce=5.0, alpha_mlm=2.0, alpha_cos=1.0, temperature=2.0)
    whole, fp32 = _distiller(tiny_teacher, w, bf16=True), _distiller(tiny_teacher, w)
    for _ in range(2):
        whole.step()
        fp32.step()
    first = _distiller(tiny_teacher, w, bf16=True)
    first.step()
    later = _distiller(tiny_teacher, w, bf16=True, state=first.state_dict(),
                       student_state=copy.deepcopy(first.student.state_dict()))
    later.step()
    for (name, a), b in zip(whole.model.named_parameters(), later.model.parameters()):
        assert torch.equal(a, b), name
    assert whole.interval()["terms"]["loss"] == pytest.approx(fp32.interval()["terms"]["loss"], rel=0.05)
