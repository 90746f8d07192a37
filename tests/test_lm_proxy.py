"""The early-stopping proxy of a causal (gpt2) teacher's sweep (issue 26), fast tier: a rung scores the student's
perplexity on the distillation corpus' held-out eval split (the sequences the search selects on), as
proxy_score = −ln PPL = minus the mean NLL per token in nats, so that the rung's gain over the undistilled init is
ln PPL_init − ln PPL_student and successive halving keeps the lower perplexity. A real tiny GPT-2 (random init,
GPT-2's real BPE), a corpus tokenised by the sweep's own prepare_corpus from real Wikipedia parquet, transformers'
own `labels=` loss as the reference; no Ray (the sweep's Ray task runs the same held_out_perplexity:
tests/test_gpt2_sweep.py)."""

import math

import pytest
import torch
import yaml
from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

from distil.config.families import FAMILIES
from distil.config.rules import check_family_evaluation
from distil.config.spec import CorpusSpec, SpecError, load_spec
from distil.evaluation.perplexity import held_out_perplexity
from distil.science.data import load_sequences, prepare_corpus
from distil.search.finetune_runs import perplexity_point, proxy_tasks
from distil.search.halving import promoted, rung_score
from distil.store.records import Rung
from tests.conftest import CORPUS, ROOT, SHARED

BPE = SHARED / "models" / "gpt2-bpe"
EVAL_SEQUENCES = 6


@pytest.fixture(scope="module")
def tokenizer():
    return GPT2TokenizerFast.from_pretrained(BPE)


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory, tokenizer):
    """The held-out eval split as a sweep tokenises it for a gpt2 teacher (`<|endoftext|> piece <|endoftext|>`)."""
    corpus = CorpusSpec(path=str(CORPUS), max_seq_len=32, max_sequences=64)
    return prepare_corpus(corpus, tokenizer, tmp_path_factory.mktemp("cache"), EVAL_SEQUENCES, num_proc=1,
                          family=FAMILIES["gpt2"])


@pytest.fixture(scope="module")
def init_dir(tmp_path_factory, tokenizer):
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=32)
    d = tmp_path_factory.mktemp("gpt2-init")
    GPT2LMHeadModel(config).save_pretrained(d)
    return d


def test_the_proxy_score_is_minus_the_mean_nll_per_token_of_transformers_own_loss(init_dir, corpus_dir):
    """proxy_score = −Σ NLL / Σ scored tokens over the held-out sequences, each sequence's NLL taken from
    transformers' `labels=` loss (its mean over the sequence's len − 1 predicted tokens), unpadded."""
    point = perplexity_point(held_out_perplexity(str(init_dir), corpus_dir))
    model = GPT2LMHeadModel.from_pretrained(init_dir).eval()
    seqs = load_sequences(corpus_dir, "eval")
    nll = tokens = 0.0
    with torch.no_grad():
        for s in seqs[:]:
            loss = model(input_ids=s[None], labels=s[None]).loss.item()  # mean over len(s) - 1 tokens
            nll, tokens = nll + loss * (len(s) - 1), tokens + len(s) - 1
    assert len(seqs) == EVAL_SEQUENCES and point.proxy["sequences"] == EVAL_SEQUENCES
    assert point.proxy["tokens"] == tokens
    assert point.proxy_score == pytest.approx(-nll / tokens, rel=1e-5)
    assert point.proxy_score == pytest.approx(-math.log(point.proxy["perplexity"]))
    assert -point.proxy_score == pytest.approx(math.log(50257), rel=0.05)  # random init: ~uniform next token


def test_the_rung_score_keeps_the_lower_perplexity(init_dir, corpus_dir, tmp_path):
    """A student trained a few steps on the corpus' train split has a lower held-out perplexity than its
    undistilled init: its rung score (the gain over init, ln PPL_init − ln PPL_student nats per token) is
    positive, the init's is 0, and a successive-halving decision at rf 2 keeps the student, or both within a
    tolerance (nats per token) above the gap."""
    model = GPT2LMHeadModel.from_pretrained(init_dir)
    train = load_sequences(corpus_dir, "train")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for step in range(12):
        batch = [train[(8 * step + i) % len(train)] for i in range(8)]
        m = min(len(s) for s in batch)
        ids = torch.stack([s[:m] for s in batch])
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(tmp_path / "student")

    init = perplexity_point(held_out_perplexity(str(init_dir), corpus_dir))
    student = perplexity_point(held_out_perplexity(str(tmp_path / "student"), corpus_dir))
    assert student.proxy["perplexity"] < init.proxy["perplexity"]
    rungs = {name: Rung(rung=0, fraction=0.5, step=12, tokens=None, distill={}, distill_seconds=0.0, proxy=point,
                        init_proxy_score=init.proxy_score) for name, point in (("student", student), ("init", init))}
    gain = rungs["student"].gain_over_init
    assert gain == pytest.approx(math.log(init.proxy["perplexity"]) - math.log(student.proxy["perplexity"]))
    assert gain > 0 and rungs["init"].gain_over_init == 0
    scores = {name: rung_score(r.proxy_score, r.gain_over_init) for name, r in rungs.items()}
    assert promoted(scores, reduction_factor=2) == {"student"}
    assert promoted(scores, reduction_factor=2, tolerance=gain + 0.01) == {"student", "init"}
    assert rung_score(student.proxy_score, None) > rung_score(init.proxy_score, None)  # raw: same order


def _gpt2_spec(tmp_path, **search):
    """sweeps/distilgpt2.yaml with `search` keys added."""
    raw = yaml.safe_load((ROOT / "sweeps" / "distilgpt2.yaml").read_text())
    raw["search"] = {**raw["search"], **search}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_spec(path)


def test_a_gpt2_spec_takes_early_stopping_on_the_perplexity_proxy_and_no_glue_proxy(tmp_path):
    spec = _gpt2_spec(tmp_path, early_stopping={"rungs": 2, "reduction_factor": 2, "tolerance": 0.05})
    check_family_evaluation(spec, FAMILIES["gpt2"])
    assert spec.perplexity_proxy() and proxy_tasks(spec) == []  # no GLUE task is tokenised or run
    spec = _gpt2_spec(tmp_path, early_stopping={"proxy": {"tasks": ["sst2", "stsb"]}})  # the defaults, spelled out
    check_family_evaluation(spec, FAMILIES["gpt2"])
    for proxy, field in (({"tasks": ["rte"]}, "tasks"), ({"max_train_examples": 100}, "max_train_examples")):
        spec = _gpt2_spec(tmp_path, early_stopping={"proxy": proxy})
        with pytest.raises(SpecError, match=rf"^search\.early_stopping\.proxy\.{field}: a gpt2 teacher .*not GLUE "
                                            r"fine-tuning; drop search\.early_stopping\.proxy$"):
            check_family_evaluation(spec, FAMILIES["gpt2"])
    spec = _gpt2_spec(tmp_path, confirm={})
    with pytest.raises(SpecError, match=r"^search\.confirm: .*its reruns are scored on GLUE"):
        check_family_evaluation(spec, FAMILIES["gpt2"])


def test_a_bert_spec_keeps_its_glue_proxy():
    spec = load_spec(ROOT / "sweeps" / "smoke.yaml")
    assert spec.search.early_stopping is not None and not spec.perplexity_proxy()
    assert [t.name for t in proxy_tasks(spec)] == spec.search.early_stopping.proxy.tasks
