"""Model families wired into the run (issue 26): the spec's alpha_clm, the loss terms each family takes,
corpus framing by the family's tokens, teacher preparation, the models a worker loads and the Distiller's
causal (no-mask) step. Tiny random-init RoBERTa and GPT-2 teachers saved to tmp dirs with GPT-2's real BPE
(../shared/models/gpt2-bpe); no Ray, each test a few seconds at most."""

import math
from pathlib import Path

import pytest
import torch
import yaml

from distil.config.families import FAMILIES
from distil.config.settings import LossWeights
from distil.config.spec import SpecError, load_spec
from tests.conftest import dry_run_shipped

ROOT = Path(__file__).resolve().parents[1]


def _spec(tmp_path, **search):
    """sweeps/smoke.yaml with `search` keys replaced (points_to_evaluate dropped unless given)."""
    raw = yaml.safe_load((ROOT / "sweeps" / "smoke.yaml").read_text())
    raw["search"] = {**raw["search"], "points_to_evaluate": [], **search}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_spec(path)


# ---------------------------------------------------------------- the spec's alpha_clm
def test_alpha_clm_is_left_out_of_every_existing_spec(tmp_path):
    for name in ("smoke", "cpu", "distilbert-base", "distilroberta-base", "news-emotions", "smoke-tasks",
                 "bench-early-stopping", "narrow"):
        spec = load_spec(ROOT / "sweeps" / f"{name}.yaml")
        assert spec.search.alpha_clm == 0.0
        assert "alpha_clm" not in spec.search.fixed() and "alpha_clm" not in spec.space()
    for zero in ({"choices": [0.0]}, {"low": 0.0, "high": 0.0}):  # can only be 0: left out as well
        spec = _spec(tmp_path, alpha_clm=zero)
        assert "alpha_clm" not in spec.search.fixed() and "alpha_clm" not in spec.space()


def test_the_distilroberta_spec_validates_offline_with_the_papers_recipe(tmp_path, monkeypatch, capsys):
    """sweeps/distilroberta-base.yaml: --dry-run validates it without network (roberta-base's config is fetched,
    and its family checked, when the run starts); the paper defaults are DistilRoBERTa's (Sanh et al. 2019)."""
    from distil.config.layers import select_layers
    from distil.config.rules import check_family_terms
    dry_run_shipped("distilroberta-base", tmp_path, monkeypatch, capsys)
    spec = load_spec(ROOT / "sweeps" / "distilroberta-base.yaml")
    assert spec.teacher.model == "roberta-base" and spec.student.n_layers == 6
    assert spec.search.points_to_evaluate[0] == {"alpha_ce": 5.0, "alpha_mlm": 2.0, "alpha_cos": 1.0,
                                                 "temperature": 2.0, "layer_selection": "distilbert"}
    assert select_layers("distilbert", 12, 6) == [0, 2, 4, 7, 9, 11]
    check_family_terms(spec, FAMILIES["roberta"])  # no causal or layer-wise term can be positive


def test_the_distilgpt2_spec_validates_offline_with_the_papers_recipe(tmp_path, monkeypatch, capsys):
    """sweeps/distilgpt2.yaml: --dry-run validates it without network (gpt2's config is fetched, and its family
    checked, when the run starts); the paper defaults are DistilGPT2's (5·KL + 2·causal LM + 1·cos, T = 2) and
    its evaluation WikiText perplexity with the window and stride stated, minimised."""
    from distil.config.layers import select_layers
    from distil.config.rules import check_family_evaluation, check_family_terms
    out = dry_run_shipped("distilgpt2", tmp_path, monkeypatch, capsys)
    assert "perplexity on" in out
    spec = load_spec(ROOT / "sweeps" / "distilgpt2.yaml")
    assert spec.teacher.model == "gpt2" and spec.student.n_layers == 6
    assert spec.search.points_to_evaluate[0] == {"alpha_ce": 5.0, "alpha_clm": 2.0, "alpha_cos": 1.0,
                                                 "temperature": 2.0, "layer_selection": "distilbert"}
    assert spec.search.objectives == ["perplexity"] and spec.glue.tasks == []
    assert (spec.lm_eval.window, spec.lm_eval.stride) == (1024, 512)
    assert "alpha_mlm" not in spec.space() and {"alpha_ce", "alpha_clm", "alpha_cos"} <= set(spec.space())
    assert select_layers("distilbert", 12, 6) == [0, 2, 4, 7, 9, 11]
    check_family_terms(spec, FAMILIES["gpt2"])  # alpha_mlm 0, no layer-wise term
    check_family_evaluation(spec, FAMILIES["gpt2"])  # lm_eval, no GLUE or confirmation; the perplexity proxy
    assert spec.perplexity_proxy() and spec.search.early_stopping.rungs == 3
    assert spec.corpus.max_seq_len <= FAMILIES["roberta"].max_seq_len({"max_position_embeddings": 514,
                                                                       "pad_token_id": 1})


def test_alpha_clm_is_fixed_or_searched_once_it_can_be_positive(tmp_path):
    spec = _spec(tmp_path, alpha_mlm=0.0, alpha_clm=2.0)
    assert spec.search.fixed()["alpha_clm"] == 2.0 and spec.search.can_be_positive("alpha_clm")
    spec = _spec(tmp_path, alpha_mlm=0.0, alpha_clm={"low": 0.5, "high": 3.0},
                 points_to_evaluate=[{"alpha_ce": 5.0, "alpha_cos": 1.0, "temperature": 2.0,
                                      "layer_selection": "every_other", "alpha_clm": 2.0}])
    assert spec.space()["alpha_clm"].high == 3.0 and "alpha_clm" not in spec.search.fixed()


@pytest.mark.parametrize("search, message", [
    ({"alpha_clm": -1.0}, r"alpha_clm: -1\.0 is out of range"),
    ({"alpha_ce": 0.0, "alpha_mlm": 0.0, "alpha_cos": 0.0, "alpha_clm": {"choices": [0.0]}},
     r"alpha_mse, alpha_clm, .* can all only be 0: nothing to learn"),
    ({"alpha_ce": 0.0, "alpha_mlm": 0.0, "alpha_cos": 0.0, "alpha_clm": {"choices": [0.0, 2.0]}},
     r"can all be 0 in one draw"),
    ({"points_to_evaluate": [{"alpha_clm": 2.0}]}, r"points_to_evaluate\[0\] names \['alpha_clm'\], which are not"),
])
def test_alpha_clm_is_validated_like_the_other_alphas(tmp_path, search, message):
    with pytest.raises(SpecError, match=message):
        _spec(tmp_path, **search)


def test_a_spec_with_clm_alone_validates(tmp_path):
    spec = _spec(tmp_path, alpha_ce=0.0, alpha_mlm=0.0, alpha_cos=0.0, alpha_clm=1.0)
    assert spec.search.fixed()["alpha_clm"] == 1.0


def test_candidate_params_carry_alpha_clm_only_when_positive(tmp_path):
    from distil.search.train import CandidateParams

    bert = CandidateParams.from_values({**_spec(tmp_path).search.fixed(), "alpha_ce": 5.0, "alpha_mlm": 2.0,
                                        "alpha_cos": 1.0, "temperature": 2.0, "layer_selection": "first",
                                        "n_layers": 2})
    assert bert.weights.alpha_clm == 0.0 and "alpha_clm" not in bert.to_json()  # as every sweep recorded it
    gpt2 = CandidateParams.from_values({**bert.to_json(), "alpha_mlm": 0.0, "alpha_clm": 2.0})
    assert gpt2.weights.alpha_clm == 2.0 and gpt2.to_json()["alpha_clm"] == 2.0
    assert CandidateParams.from_values(gpt2.to_json()) == gpt2


@pytest.mark.parametrize("family, search, message", [
    ("bert", {"alpha_clm": 2.0}, r"^search\.alpha_clm: a bert teacher is a masked LM, trained with alpha_mlm; set "
                                 r"alpha_clm to 0"),
    ("roberta", {"alpha_clm": {"low": 0.0, "high": 1.0}}, r"^search\.alpha_clm: a roberta teacher is a masked LM"),
    ("gpt2", {}, r"^search\.alpha_mlm: a gpt2 teacher is a causal LM, trained with alpha_clm; set alpha_mlm to 0"),
    ("gpt2", {"alpha_mlm": 0.0, "alpha_clm": 2.0, "alpha_hidden": 1.0},
     r"^search\.alpha_hidden: the layer-wise terms are built for DistilBERT students"),
    ("roberta", {"alpha_relation": 1.0}, r"^search\.alpha_relation: the layer-wise terms"),
])
def test_each_family_takes_its_own_lm_term(tmp_path, family, search, message):
    from distil.config.rules import check_family_terms

    with pytest.raises(SpecError, match=message):
        check_family_terms(_spec(tmp_path, **search), FAMILIES[family])


def test_each_family_accepts_its_terms(tmp_path):
    from distil.config.rules import check_family_terms

    check_family_terms(_spec(tmp_path, alpha_hidden=1.0), FAMILIES["bert"])  # every BERT spec as before
    check_family_terms(_spec(tmp_path), FAMILIES["roberta"])
    check_family_terms(_spec(tmp_path, alpha_mlm=0.0, alpha_clm=2.0), FAMILIES["gpt2"])


def test_loss_weights_take_clm_alone_and_it_needs_no_teacher():
    w = LossWeights(alpha_ce=0.0, alpha_mlm=0.0, alpha_cos=0.0, temperature=1.0, alpha_clm=1.0)
    assert not w.needs_teacher
    with pytest.raises(ValueError, match="every alpha is 0"):
        LossWeights(alpha_ce=0.0, alpha_mlm=0.0, alpha_cos=0.0, temperature=1.0)


# ---------------------------------------------------------------- saved tiny teachers, a tiny corpus
from tests.test_families import (BPE, gpt2_teacher, gpt2_tokenizer, roberta_teacher,  # noqa: E402,F401 (fixtures)
                                 roberta_tokenizer)

TEXT = ("The quick brown fox jumps over the lazy dog near the river bank, and the dog, who had been asleep in the "
        "sun all afternoon, does not move at all while the fox runs on into the wood beyond the old stone wall. ")


@pytest.fixture(scope="module")
def saved(tmp_path_factory, roberta_teacher, roberta_tokenizer, gpt2_teacher, gpt2_tokenizer):  # noqa: F811
    """family -> the dir of its tiny random-init teacher, saved with its tokenizer as a sweep finds it."""
    out = {}
    for family, model, tokenizer in [("roberta", roberta_teacher, roberta_tokenizer),
                                     ("gpt2", gpt2_teacher, gpt2_tokenizer)]:
        d = tmp_path_factory.mktemp(family)
        model.save_pretrained(d)
        tokenizer.save_pretrained(d)
        out[family] = str(d)
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A local corpus dir of 40 train and 12 validation rows of real English (~50 tokens each)."""
    import pandas as pd

    d = tmp_path_factory.mktemp("corpus")
    for split, n in (("train", 40), ("validation", 12)):
        pd.DataFrame({"text": [f"{i}. {TEXT}" for i in range(n)]}).to_parquet(d / f"{split}.parquet")
    return d


def _corpus_spec(corpus, max_seq_len=32):
    from distil.config.spec import CorpusSpec

    return CorpusSpec(path=str(corpus), max_seq_len=max_seq_len, min_tokens=8, max_sequences=64)


# ---------------------------------------------------------------- corpus framing
@pytest.mark.parametrize("family, bos, eos", [("bert", "[CLS]", "[SEP]"), ("roberta", "<s>", "</s>"),
                                              ("gpt2", "<|endoftext|>", "<|endoftext|>")])
def test_corpus_sequences_are_framed_by_the_familys_tokens(tmp_path, corpus, family, bos, eos,
                                                            roberta_tokenizer, gpt2_tokenizer):  # noqa: F811
    from transformers import AutoTokenizer

    from distil.config.rules import corpus_pieces
    from distil.science.data import load_sequences, prepare_corpus

    tokenizer = {"roberta": roberta_tokenizer, "gpt2": gpt2_tokenizer,
                 "bert": AutoTokenizer.from_pretrained(BPE.parents[0] / "bert-base-uncased-vocab")}[family]
    out = prepare_corpus(_corpus_spec(corpus), tokenizer, tmp_path, 8, num_proc=1, family=FAMILIES[family])
    seqs = load_sequences(out)
    vocab = tokenizer.get_vocab()
    first = tokenizer(f"0. {TEXT}", add_special_tokens=False).input_ids
    start, end = corpus_pieces(len(first), 32, 8)[0]
    assert seqs[0].tolist() == [vocab[bos], *first[start:end], vocab[eos]] and max(seqs.lengths) <= 32
    assert all(s[0] == vocab[bos] and s[-1] == vocab[eos] for s in seqs[:])


def test_a_bert_corpus_keeps_its_cache_key_and_bytes(tmp_path, corpus):
    """The key of a BERT corpus is the one every sweep before families computed, and its sequences are
    [CLS] piece [SEP] with the tokenizer's cls/sep ids, as _cut built them."""
    import hashlib
    import json

    from transformers import AutoTokenizer

    from distil.config.rules import corpus_pieces
    from distil.science.data import _key, load_sequences, prepare_corpus

    tokenizer = AutoTokenizer.from_pretrained(BPE.parents[0] / "bert-base-uncased-vocab")
    spec = _corpus_spec(corpus)
    vocab = hashlib.sha256(json.dumps(sorted(tokenizer.get_vocab().items())).encode()).hexdigest()
    before = hashlib.sha256(f"{spec.model_dump_json()}|{vocab}|eval=8|v2".encode()).hexdigest()[:16]
    assert _key(spec, tokenizer, 8, FAMILIES["bert"]) == before
    out = prepare_corpus(spec, tokenizer, tmp_path, 8, num_proc=1)  # the default family: BERT's
    assert out.name == f"corpus-{before}"
    rows = tokenizer([f"{i}. {TEXT}" for i in range(40)], add_special_tokens=False).input_ids
    old = [[tokenizer.cls_token_id, *ids[a:b], tokenizer.sep_token_id] for ids in rows
           for a, b in corpus_pieces(len(ids), 32, 8)][:64]
    assert [s.tolist() for s in load_sequences(out)[:]] == old


def test_a_roberta_corpus_fits_its_positions_after_the_pad_id(corpus, roberta_teacher, gpt2_teacher):  # noqa: F811
    from distil.config.rules import check_max_seq_len

    roberta = roberta_teacher.config.to_dict()  # max_position_embeddings 66, pad id 1: 64 tokens
    assert FAMILIES["roberta"].max_seq_len(roberta) == 64
    check_max_seq_len(_corpus_spec(corpus, 64), FAMILIES["roberta"], roberta)
    with pytest.raises(SpecError, match=r"^corpus\.max_seq_len: 65 tokens, and this roberta teacher takes at most 64 "
                                        r"\(max_position_embeddings 66 - pad id 1 - 1: its positions start after the "
                                        r"pad id\); use at most 64$"):
        check_max_seq_len(_corpus_spec(corpus, 65), FAMILIES["roberta"], roberta)
    gpt2 = gpt2_teacher.config.to_dict()
    assert FAMILIES["gpt2"].max_seq_len(gpt2) == 64
    with pytest.raises(SpecError, match=r"takes at most 64 \(n_positions 64\)"):
        check_max_seq_len(_corpus_spec(corpus, 128), FAMILIES["gpt2"], gpt2)
    assert FAMILIES["bert"].max_seq_len({"max_position_embeddings": 512, "pad_token_id": 0}) == 512


# ---------------------------------------------------------------- teacher preparation and the worker's models
def test_a_teacher_with_its_lm_head_skips_the_head_fit(tmp_path, saved, roberta_teacher):  # noqa: F811
    from transformers import RobertaModel

    from distil.config.spec import HeadFitSpec
    from distil.science.teacher import prepare_teacher

    for family in ("roberta", "gpt2"):
        assert prepare_teacher(saved[family], tmp_path, HeadFitSpec(), tmp_path) == (saved[family],
                                                                                    {"fitted_head": False})
    headless = tmp_path / "headless"
    RobertaModel(roberta_teacher.config).save_pretrained(headless)
    with pytest.raises(ValueError, match=r"has no trained LM head \(lm_head\..* missing\); a roberta teacher must be"):
        prepare_teacher(str(headless), tmp_path, HeadFitSpec(), tmp_path)
    assert not list(tmp_path.glob("teacher-*"))  # nothing fitted, nothing cached


PARAMS = dict(alpha_ce=5.0, alpha_cos=1.0, temperature=2.0)


def _params(family, **weights):
    from distil.search.train import CandidateParams

    lm = {"alpha_mlm": 0.0, "alpha_clm": 2.0} if family == "gpt2" else {"alpha_mlm": 2.0}
    return CandidateParams(LossWeights(**{**PARAMS, **lm, **weights}), "every_other", 2)


@pytest.mark.parametrize("family, teacher_class, student_class, pad, mask", [
    ("roberta", "RobertaForMaskedLM", "RobertaForMaskedLM", 1, 50261),
    ("gpt2", "GPT2LMHeadModel", "GPT2LMHeadModel", 50256, None),
])
def test_a_worker_loads_teacher_and_student_by_family(saved, family, teacher_class, student_class, pad, mask, tmp_path):
    from distil.science.distill import CausalLMStudent, MaskedLMStudent, wrap_student
    from distil.search.train import load_models

    m = load_models(saved[family], _params(family), seed=0)
    assert type(m.teacher).__name__ == teacher_class and not m.teacher.training
    assert not any(p.requires_grad for p in m.teacher.parameters())
    assert type(m.student).__name__ == student_class
    assert getattr(m.student.config, FAMILIES[family].depth_key) == 2
    assert (m.tokens.pad, m.tokens.mask) == (pad, mask)
    wrapper = wrap_student(m.student, _params(family).weights, m.teacher.config)
    assert type(wrapper) is (CausalLMStudent if family == "gpt2" else MaskedLMStudent)
    m.student.save_pretrained(tmp_path)
    again = m.load_student(tmp_path)
    assert type(again) is type(m.student) and all(torch.equal(v, m.student.state_dict()[k])
                                                  for k, v in again.state_dict().items())
    if family == "gpt2":
        assert m.masking_probs(tmp_path, 0.7) is None  # no masking: no corpus counts read


def test_a_bert_worker_loads_what_it_always_loaded(teacher_source, tmp_path):
    """BertForMaskedLM teacher, DistilBertForMaskedLM student, pad/mask ids and masking weights as the
    worker took them from the tokenizer before families."""
    import numpy as np
    from transformers import AutoTokenizer, BertForMaskedLM, DistilBertForMaskedLM

    from distil.science.distill import StudentForDistillation, wrap_student
    from distil.science.masking import token_probs
    from distil.search.train import load_models

    m = load_models(teacher_source, _params("bert"), seed=0)
    tokenizer = AutoTokenizer.from_pretrained(teacher_source)
    assert type(m.teacher) is BertForMaskedLM and type(m.student) is DistilBertForMaskedLM
    assert (m.tokens.pad, m.tokens.mask) == (tokenizer.pad_token_id, tokenizer.mask_token_id)
    counts = np.arange(len(tokenizer), dtype=np.int64)
    np.save(tmp_path / "counts.npy", counts)
    expected = token_probs(torch.from_numpy(counts), 0.7, tokenizer.all_special_ids)
    assert torch.equal(m.masking_probs(tmp_path, 0.7), expected)
    assert type(wrap_student(m.student, _params("bert").weights, m.teacher.config)) is StudentForDistillation


def test_parameter_counts_compare_teacher_and_student_bodies(saved, models, tmp_path):
    from distil.science.student import count_parameters
    from distil.search.context import encoder_parameters

    for family, m in models.items():
        m.student.save_pretrained(tmp_path / family)
        body = m.teacher.base_model  # RobertaForMaskedLM's has no pooler; GPT-2's transformer has none
        token_type = body.embeddings.token_type_embeddings.weight.numel() if family == "roberta" else 0
        assert encoder_parameters(saved[family]) == count_parameters(body) - token_type
        assert encoder_parameters(str(tmp_path / family)) < encoder_parameters(saved[family])


# ---------------------------------------------------------------- the Distiller by family
@pytest.fixture(scope="module")
def models(saved):
    """family -> its WorkerModels (distil.search.train.load_models), loaded once; each Distiller copies the student."""
    from distil.search.train import load_models

    return {family: load_models(saved[family], _params(family), seed=0) for family in saved}


def _distiller(models, family, weights=None, *, n_sequences=16, lr=1e-3, total_steps=6, **kwargs):
    """A Distiller over `n_sequences` real sequences of 10..20 tokens framed by the family's bos and eos
    (batches of 4, 2 micro-batches a step), a copy of the loaded student wrapped as a worker wraps it."""
    import copy

    from distil.config.spec import DistillSpec
    from distil.science.distill import BatchStream, wrap_student
    from distil.science.distiller import Distiller
    from distil.science.masking import token_probs

    m = models[family]
    g = torch.Generator().manual_seed(2)
    words = m.tokenizer(TEXT * 2, add_special_tokens=False).input_ids
    sequences = []
    for n in torch.randint(10, 21, (n_sequences,), generator=g).tolist():
        start = int(torch.randint(0, len(words) - n, (1,), generator=g))
        sequences.append(torch.tensor([m.tokens.bos, *words[start:start + n], m.tokens.eos]))
    counts = torch.ones(len(m.tokenizer), dtype=torch.long)
    probs = None if m.tokens.mask is None else token_probs(counts, 0.7, list(m.tokens.special))
    weights = weights or _params(family).weights
    d = DistillSpec(lr=lr, warmup_ratio=0.0, grad_accumulation=2)
    return Distiller(m.teacher, wrap_student(copy.deepcopy(m.student), weights, m.teacher.config),
                     BatchStream(sequences, 4, seed=0, rank=0, world=1), probs, weights, d, total_steps=total_steps,
                     seed=0, pad_id=m.tokens.pad, mask_id=m.tokens.mask, **kwargs)


def test_a_gpt2_distiller_takes_steps_and_its_loss_falls(models):
    dist = _distiller(models, "gpt2", n_sequences=8, lr=3e-3, total_steps=6)  # an epoch is a step: the same batches
    assert dist.causal and dist.max_len == max(dist.batches.lengths)  # the longest sequence (n_positions 64 is more)
    batch = dist.batch(0)
    assert batch.input_ids.shape[1] == int(batch.attention_mask.sum(1).max())  # padded to its own length on a CPU
    losses = []
    for _ in range(6):
        dist.step()
        losses.append(dist.interval()["terms"])
    assert set(losses[0]) == {"loss", "ce", "clm", "cos", "mse"} and losses[0]["mse"] == 0.0
    # a random-init teacher is near uniform, so its student starts close to it (ce ~ 0.004) and clm leads
    assert losses[-1]["loss"] < 0.95 * losses[0]["loss"] and losses[-1]["clm"] < losses[0]["clm"]
    state = dist.state_dict()
    assert state["step"] == 6 and state["projections"] == {}
    # tokens: every real token of the 2 micro-batches of each step (the same 8 sequences each step)
    assert state["tokens"] == dist.tokens == 6 * sum(int(s.numel()) for s in dist.batches.sequences)


def test_a_gpt2_distiller_stops_on_a_non_finite_loss_before_the_update(models):
    from distil.science.distiller import NonFiniteLoss

    w = LossWeights(alpha_ce=5.0, alpha_mlm=0.0, alpha_clm=2.0, alpha_cos=1e39, temperature=2.0)
    dist = _distiller(models, "gpt2", w)
    before = {k: v.clone() for k, v in dist.student.state_dict().items()}
    with pytest.raises(NonFiniteLoss, match=r"^loss is inf at step 1$"):
        dist.step()
    assert dist.steps_done == 0 and dist.state_dict()["tokens"] == 0
    assert all(torch.equal(v, before[k]) for k, v in dist.student.state_dict().items())


def test_a_gpt2_distiller_resumed_from_its_state_dict_repeats_the_run(models):
    one = _distiller(models, "gpt2")
    for _ in range(3):
        one.step()
    terms = one.interval()["terms"]
    two = _distiller(models, "gpt2")
    two.step()
    two.interval()
    student, state = {k: v.clone() for k, v in two.student.state_dict().items()}, two.state_dict()
    three = _distiller(models, "gpt2")
    three.student.load_state_dict(student)
    three.load_state_dict(state)
    three.step()
    three.step()
    again = three.interval()["terms"]
    assert one.steps_done == three.steps_done == 3
    for k, v in one.student.state_dict().items():
        assert torch.allclose(v, three.student.state_dict()[k], atol=1e-6), k
    assert terms.keys() == again.keys()


def test_a_gpt2_student_refuses_the_masked_terms(models):
    with pytest.raises(ValueError, match="set alpha_mlm, alpha_hidden, alpha_attn and alpha_relation to 0"):
        _distiller(models, "gpt2", LossWeights(**PARAMS, alpha_mlm=2.0))  # refused by CausalLMStudent


def test_a_masked_lm_step_refuses_alpha_clm(models):
    dist = _distiller(models, "roberta", LossWeights(**PARAMS, alpha_mlm=2.0, alpha_clm=1.0))
    with pytest.raises(ValueError, match="alpha_clm is a causal teacher's term; .* set alpha_clm to 0"):
        dist.step()


def test_a_roberta_distiller_step_masks_with_mask(models):
    dist = _distiller(models, "roberta")
    assert not dist.causal and dist.max_len == max(dist.batches.lengths)  # < 64 positions after the pad id
    batch = dist.batch(0)
    assert (batch.corrupted == 50261).any() and (batch.row_weight > 0).any()
    dist.step()
    terms = dist.interval()["terms"]
    assert set(terms) == {"loss", "ce", "mlm", "cos", "mse"} and all(math.isfinite(v) for v in terms.values())
    assert terms["ce"] > 0 and dist.state_dict()["projections"] == {}


# ---------------------------------------------------------------- the Ray Train worker's loop, without Ray
@pytest.mark.parametrize("family", ["gpt2", "roberta", "bert"])
def test_the_workers_loop_distils_and_resumes_a_candidate_of_each_family(tmp_path, monkeypatch, saved, corpus, family,
                                                                          teacher_source):
    """train_loop_per_worker with Ray Train's calls replaced in-process (one worker, CPU, no cluster): the
    candidate runs to a rung, reports checkpoints of its family's student, and a second call resumes from
    the last one (the student class loaded back by family) to the end."""
    import ray.train
    import ray.train.torch
    from transformers import AutoTokenizer

    from distil.config.spec import DistillSpec
    from distil.science.data import prepare_corpus
    from distil.search import train

    teacher_dir = teacher_source if family == "bert" else saved[family]  # BERT: the MiniLM teacher
    corpus_dir = prepare_corpus(_corpus_spec(corpus), AutoTokenizer.from_pretrained(teacher_dir), tmp_path / "cache",
                                8, num_proc=1, family=FAMILIES[family])
    reports, kept = [], tmp_path / "checkpoint"

    def report(metrics, checkpoint=None):
        reports.append(metrics)
        if checkpoint is not None:  # Ray copies it to storage before the worker's temporary dir goes
            import shutil
            shutil.rmtree(kept, ignore_errors=True)
            shutil.copytree(checkpoint.path, kept)

    context = type("Context", (), {"get_world_rank": lambda self: 0, "get_world_size": lambda self: 1})()
    monkeypatch.setattr(ray.train, "get_context", lambda: context)
    monkeypatch.setattr(ray.train, "report", report)
    monkeypatch.setattr(ray.train.torch, "get_device", lambda: torch.device("cpu"))
    prepared = []  # DDP's options, one per model the loop prepares (world 1 here: no DDP to wrap)
    monkeypatch.setattr(ray.train.torch, "prepare_model",
                        lambda model, parallel_strategy_kwargs=None: prepared.append(parallel_strategy_kwargs) or model)
    monkeypatch.setattr(ray.train, "get_checkpoint", lambda: None)
    job = train.DistillJob(teacher_dir=teacher_dir, corpus_dir=str(corpus_dir), storage=str(tmp_path),
                           distill=DistillSpec(steps=4, batch_size=4, num_workers=1, checkpoint_every=2, bf16=False))
    cfg = {"job": job, "params": _params(family), "stop_at_fraction": 0.5}
    train.train_loop_per_worker(cfg)
    assert [r["step"] for r in reports] == [2] and (kept / "train_state.pt").is_file()
    lm = "clm" if family == "gpt2" else "mlm"
    assert reports[0][lm] > 0 and all(math.isfinite(reports[0][k]) for k in ("loss", "ce", "cos", lm))
    monkeypatch.setattr(ray.train, "get_checkpoint", lambda: ray.train.Checkpoint.from_directory(str(kept)))
    train.train_loop_per_worker({**cfg, "stop_at_fraction": 1.0})
    assert [r["step"] for r in reports] == [2, 4] and reports[1]["resumed_from_step"] == 2
    # Every parameter is in the loss (a term reads the logits): DDP need not look for unused ones.
    assert prepared == [{"find_unused_parameters": False}] * 2
    assert reports[1]["tokens"] > reports[0]["tokens"] > 0
    student = train.model_class(FAMILIES[family].student_class).from_pretrained(kept)
    assert getattr(student.config, FAMILIES[family].depth_key if family != "bert" else "n_layers") == 2
