"""Checks on the user documentation: the generated CLI reference and relative links."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = sorted((REPO_ROOT / "docs").glob("*.md")) + [REPO_ROOT / "README.md"]

# Inline links and images: [text](target) or ![alt](target "title").
_INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
# Reference definitions: [name]: target
_REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
_CODE_SPAN = re.compile(r"`[^`\n]*`")


def _load_generator():
    path = REPO_ROOT / "scripts" / "gen_cli_docs.py"
    spec = importlib.util.spec_from_file_location("gen_cli_docs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _relative_links(markdown: str) -> list[str]:
    """Return the link targets of a Markdown text that point into the repository."""
    text = _CODE_SPAN.sub("", _FENCE.sub("", markdown))
    targets = _INLINE_LINK.findall(text) + _REFERENCE_LINK.findall(text)
    relative = []
    for target in targets:
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL (https:, mailto:) or an anchor on the same page
        relative.append(target.split("#", 1)[0])
    return relative


def test_cli_docs_up_to_date():
    generator = _load_generator()
    assert generator.main(["--check"]) == 0, (
        "docs/cli.md is stale; run `python scripts/gen_cli_docs.py`"
    )


def test_cli_docs_check_detects_stale_file(tmp_path):
    generator = _load_generator()
    stale = tmp_path / "cli.md"
    stale.write_text(generator.render().replace("dejavu audit", "dejavu audits"))
    assert generator.main(["--check", "--output", str(stale)]) == 1


def test_cli_docs_cover_every_command():
    from dejavu.cli import main

    text = _load_generator().render()
    missing = [name for name in main.commands if f"### `dejavu {name}`" not in text]
    assert missing == []


def test_relative_links_parser_finds_links():
    markdown = (
        "See [a](docs/a.md#part), ![img](images/x.png), [web](https://x.org), "
        "[here](#top) and `[code](not/a/link.md)`.\n\n[ref]: other.md\n"
    )
    assert _relative_links(markdown) == ["docs/a.md", "images/x.png", "other.md"]


@pytest.mark.parametrize(
    "doc", DOC_FILES, ids=[str(p.relative_to(REPO_ROOT)) for p in DOC_FILES]
)
def test_docs_relative_links_exist(doc):
    targets = _relative_links(doc.read_text(encoding="utf-8"))
    broken = [t for t in targets if t and not (doc.parent / t).exists()]
    assert broken == [], f"{doc.relative_to(REPO_ROOT)} links to missing files"
