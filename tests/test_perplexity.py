"""Perplexity of a causal LM (distil.evaluation.perplexity): WikiText articles, the sliding window against
a perplexity computed by hand and against transformers' own recipe, bootstrap intervals over articles.
A randomly initialised tiny GPT-2 (2 layers, hidden 32) with GPT-2's real BPE (../shared/models/gpt2-bpe)."""

import math

import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

from distil.evaluation.perplexity import (ArticleNLL, article_nll, perplexity_interval, perplexity_ratio,
                                          read_wikitext, resampled_perplexities, wikitext_articles, window_spans)
from tests.conftest import SHARED

WIKITEXT = SHARED / "data" / "corpus" / "wikitext-2-raw-v1"
ROWS = ["", " = Alpha Centauri = \n", "", " Alpha Centauri is the closest star system to the Solar System . \n", "",
        " = = Name = = \n", "", " The name means the foot of the centaur in Latin . \n", " = Beta = \n", "",
        " Beta is the second letter of the Greek alphabet , after alpha . \n", ""]


@pytest.fixture(scope="module")
def tokenizer():
    return GPT2TokenizerFast.from_pretrained(SHARED / "models" / "gpt2-bpe")


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=32)).eval()


def test_wikitext_splits_at_top_level_titles_and_keeps_sections():
    articles = wikitext_articles(ROWS)
    assert [a.title for a in articles] == ["Alpha Centauri", "Beta"]
    assert articles[0].text.startswith(" = Alpha Centauri = \n\n Alpha") and " = = Name = = \n" in articles[0].text
    assert "".join(a.text for a in articles) == "".join(r or "\n" for r in ROWS[1:])  # nothing lost or added


def test_the_real_wikitext_2_test_split_has_its_62_articles():
    articles = read_wikitext(WIKITEXT)
    assert len(articles) == 62 and articles[0].title == "Robert Boulter"
    assert articles[-1].title == "The Hustler ( film )"
    assert any(" = Qualified for the next round \n" in a.text for a in articles)  # a table legend, not a title


def test_windows_score_each_token_once_with_at_least_window_minus_stride_context():
    for n, window, stride in [(1, 8, 4), (5, 8, 4), (8, 8, 4), (9, 8, 4), (50, 8, 3), (50, 16, 15)]:
        scored = [p for begin, end, first in window_spans(n, window, stride) for p in range(first, end)]
        assert scored == list(range(1, n))
        for begin, end, first in window_spans(n, window, stride):
            assert end - begin <= window and (first - begin >= window - stride or begin == 0)
    with pytest.raises(ValueError, match="below the window"):
        window_spans(10, 8, 8)


def _by_hand(model, tokenizer, articles, window, stride):
    """One forward per token: token p of [bos] + article is predicted from tokens [begin, p), begin the start
    of the window that scores it (0 while p < window, else the k-th, k = (p − window) // stride + 1)."""
    nll, count = [], []
    for article in articles:
        seq = [tokenizer.bos_token_id] + tokenizer(article.text).input_ids
        total = 0.0
        for p in range(1, len(seq)):
            begin = 0 if p < window else ((p - window) // stride + 1) * stride
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([seq[begin:p]])).logits[0, -1]
            total -= logits.log_softmax(-1)[seq[p]].item()
        nll.append(total)
        count.append(len(seq) - 1)
    return nll, count


@pytest.mark.parametrize("batch_size", [1, 3])
def test_perplexity_by_hand_equals_the_modules(model, tokenizer, batch_size):
    articles = wikitext_articles(ROWS)
    window, stride = 12, 5  # the articles are 17-36 tokens: several windows each
    result = article_nll(model, tokenizer, articles, window=window, stride=stride, batch_size=batch_size)
    nll, count = _by_hand(model, tokenizer, articles, window, stride)
    assert list(result.tokens) == count and max(count) > 2 * window
    assert np.allclose(result.nll, nll, rtol=1e-5)
    assert math.isclose(result.perplexity, math.exp(sum(nll) / sum(count)), rel_tol=1e-5)  # exp(mean NLL)


def test_without_bos_it_is_transformers_own_sliding_window_recipe(model, tokenizer):
    """The loop of transformers' "Perplexity of fixed-length models" guide (labels= loss times its tokens)."""
    article = wikitext_articles(ROWS)[:1]
    ids = tokenizer(article[0].text, return_tensors="pt").input_ids
    window, stride, total, n, prev_end = 12, 5, 0.0, 0, 0
    for begin in range(0, ids.size(1), stride):
        end = min(begin + window, ids.size(1))
        trg_len = end - prev_end
        input_ids = ids[:, begin:end]
        target_ids = input_ids.clone()
        target_ids[:, :-trg_len] = -100
        with torch.no_grad():
            loss = model(input_ids, labels=target_ids).loss
        scored = int((target_ids[:, 1:] != -100).sum())  # the loss's shift drops the window's first label
        total, n, prev_end = total + loss.item() * scored, n + scored, end
        if end == ids.size(1):
            break
    result = article_nll(model, tokenizer, article, window=window, stride=stride, bos=False)
    assert result.tokens[0] == n == ids.size(1) - 1 and math.isclose(result.nll[0], total, rel_tol=1e-5)
    with pytest.raises(ValueError, match="longer than the model's 32 positions"):
        article_nll(model, tokenizer, article, window=64, stride=32)


def _result(nll, tokens):
    return ArticleNLL(tuple(f"a{i}" for i in range(len(nll))), np.asarray(nll, float), np.asarray(tokens), 8, 4, 0)


def test_the_bootstrap_over_articles_is_seeded_and_covers_the_estimate():
    rng = np.random.default_rng(0)
    tokens = rng.integers(50, 500, size=40)
    r = _result(tokens * rng.uniform(3.0, 4.0, size=40), tokens)
    lo, hi = perplexity_interval(r, resamples=2000, seed=1)
    assert lo < r.perplexity < hi and (lo, hi) == perplexity_interval(r, resamples=2000, seed=1)
    assert (lo, hi) != perplexity_interval(r, resamples=2000, seed=2)
    one = resampled_perplexities([r], resamples=5, seed=1)[:, 0]
    assert all(math.exp(3.0) <= v <= math.exp(4.0) for v in one)  # each a ratio of drawn sums


def test_the_ratio_is_paired_over_the_same_article_draws():
    rng = np.random.default_rng(0)
    tokens = rng.integers(50, 500, size=40)
    teacher = _result(tokens * rng.uniform(3.0, 4.0, size=40), tokens)
    # a student exactly 1.25 times as perplexed on every article: every paired resample gives 1.25
    student = _result(teacher.nll + math.log(1.25) * tokens, tokens)
    ratio, lo, hi = perplexity_ratio(student, teacher, resamples=500)
    assert math.isclose(ratio, 1.25) and math.isclose(lo, 1.25) and math.isclose(hi, 1.25)
    noisy = _result(teacher.nll + rng.normal(0.2, 0.1, size=40) * tokens, tokens)
    ratio, lo, hi = perplexity_ratio(noisy, teacher, resamples=2000)
    assert lo < ratio < hi and lo > 1.0
    with pytest.raises(ValueError, match="cannot be paired"):
        perplexity_ratio(student, _result(teacher.nll, tokens + 1))
