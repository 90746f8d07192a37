"""The README and docs/ stay short, current and pointing at things that exist (fast: no Ray, no model).

- docs/spec-reference.md is what `python -m distil.config.reference` prints now (a field added to the
  spec without regenerating the page fails here);
- README.md has at most 250 lines;
- every relative link in README.md and docs/**.md names an existing file (and, for a `#anchor` into a
  Markdown file, an existing heading);
- every project path (`distil/...py`, `tests/...`, `sweeps/...`, `benchmarks/...`, `cluster/...`,
  `docs/...`) and every dotted module (`distil.report.leaderboard`) they mention exists;
- no machine-specific absolute path (a home or work directory) appears in them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from distil.config import reference

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
PROJECT_PATH = re.compile(r"(?<![\w/.~$-])((?:distil|tests|sweeps|benchmarks|cluster|docs)/[\w./-]*\w)")
MODULE = re.compile(r"(?<![\w/.])(distil(?:\.\w+)+)")
MACHINE_PATH = re.compile(r"(?<![\w.])/(?:work|home|root|Users|tmp)/\S*")


def _rel(page: Path) -> str:
    return str(page.relative_to(ROOT))


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    return {_slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", page.read_text(), re.M)}


def test_docs_pages_exist():
    for name in ("pipeline.md", "cluster.md", "reading-the-numbers.md", "spec-reference.md"):
        assert (ROOT / "docs" / name).is_file(), f"docs/{name} is missing"
    assert list((ROOT / "docs" / "measurements").glob("20??-??-??-*.md")), "no dated measurement pages"


def test_spec_reference_is_current():
    committed = (ROOT / "docs" / "spec-reference.md").read_text()
    assert committed == reference.render(), (
        "docs/spec-reference.md is stale; regenerate it: python -m distil.config.reference > docs/spec-reference.md")


def test_spec_reference_lists_every_field():
    text = reference.render()
    for model, _ in reference.walk():
        for name in reference.fields_of(model):
            assert f"| `{name}` |" in text, f"{model.__name__}.{name} is not in the reference"


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move detail into docs/"


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_relative_links_resolve(page):
    bad = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if not dest.exists():
            bad.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            bad.append(f"{target} (no heading #{anchor})")
    assert not bad, f"{_rel(page)}: broken links: {bad}"


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_mentioned_paths_exist(page):
    text = page.read_text()
    missing = [p for p in set(PROJECT_PATH.findall(text))
               if "*" not in p and "<" not in p and not (ROOT / p.rstrip(".")).exists()]
    assert not missing, f"{_rel(page)} names project paths that do not exist: {sorted(missing)}"


def _module_exists(dotted: str) -> bool:
    """Whether `distil.a.b...` names a package or module (what follows a module is an attribute)."""
    node = ROOT / "distil"
    for part in dotted.split(".")[1:]:
        if (node / part / "__init__.py").is_file():
            node = node / part
        elif (node / f"{part}.py").is_file():
            return True
        else:
            return False
    return True


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_mentioned_modules_exist(page):
    missing = sorted(m for m in set(MODULE.findall(page.read_text())) if not _module_exists(m))
    assert not missing, f"{_rel(page)} names modules that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_no_machine_paths(page):
    found = MACHINE_PATH.findall(page.read_text())
    assert not found, f"{_rel(page)} holds machine-specific paths: {found[:5]}"


def test_checks_can_fail(tmp_path):
    """The link and module checks reject what they should (so a green run means something)."""
    assert not _module_exists("distil.leaderboard")  # moved to distil.report.leaderboard in 4a27128
    assert _module_exists("distil.report.leaderboard.load")
    assert _slug("Reading the numbers (`pct_teacher`)") == "reading-the-numbers-pct_teacher"
    assert LINK.findall("see [a](docs/x.md#y) and ![img](p.png)") == ["docs/x.md#y"]
    assert MACHINE_PATH.findall("under /work/shared/data and ../shared") == ["/work/shared/data"]
