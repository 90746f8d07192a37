"""Teacher head fitting on real Wikipedia text: it learns, it is cached, a teacher with a head is used as is."""

import pytest

from distil.science.data import prepare_corpus
from distil.config.spec import CorpusSpec, HeadFitSpec
from distil.science.teacher import prepare_teacher
from tests.conftest import CORPUS


@pytest.mark.slow
def test_head_fit_improves_accuracy_is_cached_and_skipped_when_present(tmp_path, teacher_source, tokenizer):
    corpus = CorpusSpec(path=str(CORPUS), max_seq_len=32, max_sequences=512)
    corpus_dir = prepare_corpus(corpus, tokenizer, tmp_path, 64)
    fit = HeadFitSpec(steps=25, batch_size=32, lr=5e-3, eval_sequences=64)
    fitted_dir, report = prepare_teacher(teacher_source, corpus_dir, fit, tmp_path)
    assert report["fitted_head"] and report["masked_token_acc_after"] > report["masked_token_acc_before"]
    # Same inputs -> the cached teacher, not a new fit.
    again_dir, again = prepare_teacher(teacher_source, corpus_dir, fit, tmp_path)
    assert again_dir == fitted_dir and again == report
    # Other settings -> another cache entry.
    other = HeadFitSpec(steps=1, batch_size=8, eval_sequences=8)
    other_dir, _ = prepare_teacher(teacher_source, corpus_dir, other, tmp_path)
    assert other_dir != fitted_dir
    # A checkpoint that has its MLM head is used as is.
    used_dir, used = prepare_teacher(fitted_dir, corpus_dir, fit, tmp_path)
    assert used_dir == fitted_dir and used == {"fitted_head": False}
