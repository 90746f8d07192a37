"""Model families (issue 26): RoBERTa and GPT-2 students built by the layer rules, their tokens and masking,
the causal LM objective. Randomly initialised tiny teachers (4 layers, hidden 64) with GPT-2's real BPE
(../shared/models/gpt2-bpe, as GPT-2's tokenizer and in RoBERTa's special-token layout): no weights of
either family exist offline."""

import pytest
import torch
from transformers import (GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast, RobertaConfig, RobertaForMaskedLM,
                          RobertaTokenizerFast)

from distil.config.families import FAMILIES, family_of, supported_model_types
from distil.config.layers import select_layers
from distil.config.spec import SpecError
from distil.config.settings import StudentShape
from distil.science.families import token_ids
from distil.science.student import build_student, count_parameters
from tests.conftest import SHARED

BPE = SHARED / "models" / "gpt2-bpe"
RULES = ["distilbert", "every_other", "uniform", "first", "last", [3, 0]]


@pytest.fixture(scope="module")
def gpt2_tokenizer():
    return GPT2TokenizerFast.from_pretrained(BPE)


@pytest.fixture(scope="module")
def roberta_tokenizer():
    return RobertaTokenizerFast.from_pretrained(BPE / "roberta")


@pytest.fixture(scope="module")
def roberta_teacher(roberta_tokenizer):
    """4 layers, hidden 64; two token types (the student keeps row 0); positions offset by pad id 1."""
    t = roberta_tokenizer
    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=len(t), hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                           intermediate_size=128, max_position_embeddings=64 + t.pad_token_id + 1, type_vocab_size=2,
                           pad_token_id=t.pad_token_id, bos_token_id=t.bos_token_id, eos_token_id=t.eos_token_id)
    return RobertaForMaskedLM(config).eval()


@pytest.fixture(scope="module")
def gpt2_teacher(gpt2_tokenizer):
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(gpt2_tokenizer), n_embd=64, n_layer=4, n_head=4, n_positions=64)
    return GPT2LMHeadModel(config).eval()


@pytest.fixture
def teachers(roberta_teacher, gpt2_teacher):
    return {"roberta": roberta_teacher, "gpt2": gpt2_teacher}


TEXTS = ["Hello world, the capital of France is Paris.", "A short one"]


def _gpt2_batch(tokenizer):
    """Right-padded (B, L) ids and attention mask, padded with <|endoftext|>."""
    rows = [torch.tensor(tokenizer(t).input_ids) for t in TEXTS]
    ids = torch.full((len(rows), max(map(len, rows))), tokenizer.eos_token_id)
    attn = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, : len(r)], attn[i, : len(r)] = r, 1
    return ids, attn


# ---------------------------------------------------------------- the table
def test_the_table_names_the_three_families_and_refuses_others_in_one_line(gpt2_tokenizer):
    assert supported_model_types() == ("bert", "roberta", "gpt2")
    assert [FAMILIES[m].objective for m in supported_model_types()] == ["mlm", "mlm", "clm"]
    with pytest.raises(SpecError) as e:
        family_of("llama", "teacher.model: meta-llama/Llama-3.2-1B")
    message = str(e.value)
    assert message.startswith("teacher.model: meta-llama/Llama-3.2-1B is a 'llama' model;") and "\n" not in message
    assert "'bert', 'roberta', 'gpt2'" in message


def test_a_teacher_outside_the_table_gets_the_same_error_from_build_student():
    from transformers import DistilBertConfig, DistilBertForMaskedLM

    teacher = DistilBertForMaskedLM(DistilBertConfig(vocab_size=10, dim=8, n_layers=2, n_heads=2, hidden_dim=16,
                                                     max_position_embeddings=8))
    with pytest.raises(SpecError, match=r"a 'distilbert' model; .*'bert', 'roberta', 'gpt2'"):
        build_student(teacher, 1, "first")


# ---------------------------------------------------------------- students by layer rule
@pytest.mark.parametrize("family", ["roberta", "gpt2"])
@pytest.mark.parametrize("rule", RULES, ids=str)
def test_the_student_is_the_selected_teacher_layers_parameter_by_parameter(teachers, family, rule):
    teacher, row = teachers[family], FAMILIES[family]
    student = build_student(teacher, 2, rule)
    assert type(student) is type(teacher) and getattr(student.config, row.depth_key) == 2
    t, s = teacher.state_dict(), student.state_dict()
    for i, j in enumerate(select_layers(rule, 4, 2)):
        prefix = row.student_layers.format(i) + "."
        names = [k for k in s if k.startswith(prefix)]
        assert len(names) == len([k for k in t if k.startswith(row.teacher_layers.format(j) + ".")]) > 0
        for k in names:
            assert torch.equal(s[k], t[row.teacher_layers.format(j) + "." + k[len(prefix):]]), k
    kept = [k for k in s if not k.startswith(row.student_layers.format("").rstrip("."))]
    for k in kept:  # embeddings, ln_f, LM head
        expected = t[k][:1] if k.endswith("token_type_embeddings.weight") else t[k]
        assert torch.equal(s[k], expected), k
    assert count_parameters(student.base_model) < count_parameters(teacher.base_model)


def test_the_roberta_student_keeps_the_teachers_embeddings_offset_and_head(roberta_teacher):
    student = build_student(roberta_teacher, 2, "distilbert")
    e, te = student.roberta.embeddings, roberta_teacher.roberta.embeddings
    assert student.config.type_vocab_size == 1 and e.token_type_embeddings.weight.shape == (1, 64)
    assert torch.equal(e.token_type_embeddings.weight[0], te.token_type_embeddings.weight[0])
    assert e.padding_idx == te.padding_idx == 1 and student.config.pad_token_id == 1  # positions from 2
    assert torch.equal(e.position_embeddings.weight, te.position_embeddings.weight)
    for name in ("dense.weight", "layer_norm.bias", "bias"):
        assert torch.equal(student.lm_head.get_parameter(name), roberta_teacher.lm_head.get_parameter(name))
    assert student.lm_head.decoder.weight.data_ptr() == e.word_embeddings.weight.data_ptr()  # tied


def test_the_gpt2_student_keeps_ln_f_and_ties_its_head(gpt2_teacher):
    student = build_student(gpt2_teacher, 2, "last")
    assert torch.equal(student.transformer.ln_f.weight, gpt2_teacher.transformer.ln_f.weight)
    assert torch.equal(student.transformer.wpe.weight, gpt2_teacher.transformer.wpe.weight)
    assert student.lm_head.weight.data_ptr() == student.transformer.wte.weight.data_ptr()
    assert torch.equal(student.lm_head.weight, gpt2_teacher.lm_head.weight)


@pytest.mark.parametrize("family", ["roberta", "gpt2"])
def test_a_full_depth_student_is_the_teacher_on_a_padded_batch(teachers, family, gpt2_tokenizer, roberta_tokenizer):
    teacher = teachers[family]
    if family == "gpt2":
        ids, attn = _gpt2_batch(gpt2_tokenizer)
    else:
        enc = roberta_tokenizer(TEXTS, padding=True, return_tensors="pt")
        ids, attn = enc.input_ids, enc.attention_mask
    student = build_student(teacher, 4, [0, 1, 2, 3]).eval()
    with torch.no_grad():
        t = teacher(input_ids=ids, attention_mask=attn).logits
        s = student(input_ids=ids, attention_mask=attn).logits
    real = attn.bool()
    assert torch.allclose(t[real], s[real], atol=1e-5)


@pytest.mark.parametrize("family", ["roberta", "gpt2"])
def test_random_init_shares_no_teacher_weight_and_narrow_students_are_refused(teachers, family):
    teacher = teachers[family]
    torch.manual_seed(1)
    student = build_student(teacher, 2, "random_init")
    emb = student.get_input_embeddings().weight
    assert emb.shape == teacher.get_input_embeddings().weight.shape
    assert not torch.equal(emb, teacher.get_input_embeddings().weight)
    assert build_student(teacher, 2, "first", StudentShape(hidden_size=64, num_attention_heads=4)) is not None
    with pytest.raises(ValueError, match="narrower students are built from BERT teachers only"):
        build_student(teacher, 2, "first", StudentShape(hidden_size=32))


# ---------------------------------------------------------------- tokens and masking
def test_token_ids_of_each_family(roberta_tokenizer, gpt2_tokenizer):
    from transformers import BertTokenizerFast

    bert = token_ids(FAMILIES["bert"], BertTokenizerFast.from_pretrained(SHARED / "models" / "bert-base-uncased-vocab"))
    assert (bert.bos, bert.eos, bert.pad, bert.mask) == (101, 102, 0, 103)
    rob = token_ids(FAMILIES["roberta"], roberta_tokenizer)
    assert (rob.bos, rob.eos, rob.pad, rob.mask) == (0, 2, 1, 50261) and set(rob.special) == {0, 1, 2, 3, 50261}
    gpt = token_ids(FAMILIES["gpt2"], gpt2_tokenizer)
    assert (gpt.bos, gpt.eos, gpt.pad, gpt.mask, gpt.special) == (50256, 50256, 50256, None, (50256,))
    with pytest.raises(ValueError, match="has no <s>, </s>, <pad>, <mask> token"):
        token_ids(FAMILIES["roberta"], gpt2_tokenizer)  # GPT-2's id order, not RoBERTa's layout


def test_roberta_masking_uses_mask_and_never_picks_special_tokens(roberta_tokenizer):
    from distil.science.masking import mask_tokens, token_probs

    ids = token_ids(FAMILIES["roberta"], roberta_tokenizer)
    enc = roberta_tokenizer(TEXTS * 8, padding=True, return_tensors="pt")
    probs = token_probs(torch.ones(len(roberta_tokenizer)), 0.7, list(ids.special))
    corrupted, labels = mask_tokens(enc.input_ids, probs, mask_id=ids.mask, mask_prob=0.5,
                                    generator=torch.Generator().manual_seed(0))
    chosen = labels != -100
    assert chosen.any() and not torch.isin(enc.input_ids[chosen], torch.tensor(ids.special)).any()
    assert (corrupted == ids.mask).any() and torch.equal(corrupted[~chosen], enc.input_ids[~chosen])


# ---------------------------------------------------------------- the causal objective (GPT-2)
def test_the_causal_lm_loss_is_transformers_own_labels_loss_on_a_padded_batch(gpt2_teacher, gpt2_tokenizer):
    from distil.science.losses import causal_labels, clm_loss

    ids, attn = _gpt2_batch(gpt2_tokenizer)
    assert (attn == 0).any()  # the short row is padded
    labels = causal_labels(ids, attn)
    with torch.no_grad():
        out = gpt2_teacher(input_ids=ids, attention_mask=attn, labels=labels)
    assert torch.allclose(clm_loss(out.logits, labels), out.loss, rtol=1e-6, atol=1e-6)


def test_causal_terms_are_the_original_distillers_on_the_real_positions(gpt2_tokenizer):
    """KL·T² and 1 − cos over the real positions picked out as distiller.py does (masked_select), the
    weighted sum of the four terms."""
    from distil.config.settings import LossWeights
    from distil.science.losses import (causal_distillation_loss, causal_labels, ce_loss, clm_loss, cosine_loss,
                                       mse_loss)

    ids, attn = _gpt2_batch(gpt2_tokenizer)
    torch.manual_seed(0)
    s, t = torch.randn(*ids.shape, 50), torch.randn(*ids.shape, 50)
    hs, ht = torch.randn(*ids.shape, 8), torch.randn(*ids.shape, 8)
    s[attn == 0], hs[attn == 0] = float("nan"), float("nan")  # a pad's value never enters a term
    labels = causal_labels(ids, attn).clamp(max=49).masked_fill(attn == 0, -100)
    w = LossWeights(alpha_ce=5.0, alpha_mlm=0.0, alpha_clm=2.0, alpha_cos=1.0, temperature=2.0, alpha_mse=0.5)
    out = causal_distillation_loss(student_logits=s, teacher_logits=t, labels=labels, student_hidden=hs,
                                   teacher_hidden=ht, attention_mask=attn, weights=w)
    real = attn.bool()
    expected = {"ce": ce_loss(s[real], t[real], 2.0), "clm": clm_loss(s[:, :], labels),
                "cos": cosine_loss(hs[real], ht[real]), "mse": mse_loss(s[real], t[real])}
    # clm by hand: position l of row b predicts token l + 1 where that token is real
    pairs = [(b, i) for b in range(ids.shape[0]) for i in range(ids.shape[1] - 1) if attn[b, i + 1]]
    by_hand = -torch.stack([s[b, i].log_softmax(-1)[labels[b, i + 1]] for b, i in pairs]).mean()
    assert torch.allclose(expected["clm"], by_hand, atol=1e-6)
    for k, v in expected.items():
        assert torch.allclose(out[k], v, atol=1e-6), k
    assert torch.allclose(out["loss"], 5 * out["ce"] + 2 * out["clm"] + out["cos"] + 0.5 * out["mse"])
    with pytest.raises(ValueError, match="every alpha is 0"):
        LossWeights(alpha_ce=0.0, alpha_mlm=0.0, alpha_clm=0.0, alpha_cos=0.0, temperature=1.0)
    with pytest.raises(ValueError, match="set alpha_mlm, alpha_hidden, alpha_attn and alpha_relation to 0"):
        causal_distillation_loss(student_logits=s, teacher_logits=t, labels=labels, student_hidden=hs,
                                 teacher_hidden=ht, attention_mask=attn, weights=LossWeights(
                                     alpha_ce=5.0, alpha_mlm=2.0, alpha_cos=1.0, temperature=2.0))


def test_a_gpt2_step_a_full_depth_student_has_nothing_to_learn_from_and_a_shallow_one_learns(gpt2_teacher,
                                                                                               gpt2_tokenizer):
    from distil.config.settings import LossWeights
    from distil.science.distill import causal_loss_terms

    ids, attn = _gpt2_batch(gpt2_tokenizer)
    w = LossWeights(alpha_ce=5.0, alpha_mlm=0.0, alpha_clm=2.0, alpha_cos=1.0, temperature=2.0)
    with torch.no_grad():
        same = causal_loss_terms(gpt2_teacher, build_student(gpt2_teacher, 4, "first").eval(), ids, attn, w)
        own = gpt2_teacher(input_ids=ids, attention_mask=attn, labels=ids.masked_fill(attn == 0, -100)).loss
    assert same["ce"].abs() < 1e-6 and same["cos"].abs() < 1e-5 and torch.allclose(same["clm"], own, atol=1e-5)
    torch.manual_seed(0)
    student = build_student(gpt2_teacher, 2, "distilbert").train()
    opt = torch.optim.AdamW(student.parameters(), lr=1e-3)
    losses = []
    for _ in range(2):  # the same batch twice: one update must lower its loss
        terms = causal_loss_terms(gpt2_teacher, student, ids, attn, w)
        opt.zero_grad()
        terms["loss"].backward()
        opt.step()
        losses.append(terms["loss"].item())
    assert all(torch.isfinite(v) for v in terms.values()) and losses[-1] < losses[0]


# ---------------------------------------------------------------- the masked objective (RoBERTa)
def test_a_roberta_step_masks_with_mask_and_projects_only_the_masked_rows(roberta_teacher, roberta_tokenizer):
    from distil.config.settings import LossWeights
    from distil.science.batch import prepare_batch
    from distil.science.distill import MaskedLMStudent, loss_terms
    from distil.science.masking import token_probs

    ids = token_ids(FAMILIES["roberta"], roberta_tokenizer)
    enc = roberta_tokenizer(TEXTS * 4, padding=True, return_tensors="pt")
    probs = token_probs(torch.ones(len(roberta_tokenizer)), 0.7, list(ids.special))
    batch = prepare_batch(enc.input_ids, enc.attention_mask, probs, mask_id=ids.mask, pad_id=ids.pad, mask_prob=0.15,
                          restrict_ce_to_mask=True, generator=torch.Generator().manual_seed(0))
    w = LossWeights(alpha_ce=5.0, alpha_mlm=2.0, alpha_cos=1.0, temperature=2.0)
    student = MaskedLMStudent(build_student(roberta_teacher, 2, "distilbert"), w).eval()
    with torch.no_grad():
        hidden, logits, _ = student(batch.corrupted, batch.attention_mask, batch.rows)
        full = student.student(input_ids=batch.corrupted, attention_mask=batch.attention_mask).logits
        terms = loss_terms(roberta_teacher, student, batch, w)
        same = loss_terms(roberta_teacher, MaskedLMStudent(build_student(roberta_teacher, 4, "first")).eval(), batch, w)
    assert torch.allclose(logits, full.flatten(0, 1)[batch.rows], atol=1e-5)
    assert all(torch.isfinite(v) for v in terms.values()) and terms["ce"] > 0
    assert same["ce"].abs() < 1e-5 and same["cos"].abs() < 1e-5  # the teacher itself: nothing to distil
    with pytest.raises(ValueError, match="DistilBERT students' only"):
        MaskedLMStudent(student.student, LossWeights(alpha_ce=1.0, alpha_mlm=0.0, alpha_cos=0.0, temperature=1.0,
                                                     alpha_hidden=1.0))
