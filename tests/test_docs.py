"""The README's and docs' relative links lead to files that exist and to headings that exist in them, and
the ``benchmarks/`` files they name exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~)")
BENCHMARK_FILE = re.compile(r"benchmarks/[\w./-]+\.(?:yaml|py|sh)\b")
REMOVED = "recipe removed; see git history"


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line.lstrip()):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered."""
    seen: dict[str, int] = {}
    found = set()
    for line in prose_lines(page.read_text(encoding="utf-8")):
        heading = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not heading:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def relative_links(page: Path) -> list[str]:
    """Link targets outside code, other than URLs."""
    return [target for line in prose_lines(page.read_text(encoding="utf-8"))
            for target in LINK.findall(re.sub(r"`[^`]*`", "", line)) if not re.match(r"[a-z]+:", target)]


def missing_benchmark_files(text: str) -> list[str]:
    """``benchmarks/`` files named in the text that do not exist, unless their paragraph (a table row, or
    lines up to a blank one) says the recipe was removed."""
    paragraphs = [block for part in re.split(r"\n\s*\n", text)
                  for block in (part.splitlines() if part.lstrip().startswith("|") else [part])]
    return sorted({path for paragraph in paragraphs if REMOVED not in paragraph
                   for path in BENCHMARK_FILE.findall(paragraph) if not (REPO / path).exists()})


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(REPO).as_posix())
def test_benchmark_files_exist(page: Path) -> None:
    missing = missing_benchmark_files(page.read_text(encoding="utf-8"))
    assert not missing, f"{page.name} names files that do not exist (mark them '{REMOVED}'): " + ", ".join(missing)


def test_missing_benchmark_files_rule() -> None:
    text = ("`benchmarks/davis2016.yaml` and `benchmarks/gone.yaml`\n\n"
            "`benchmarks/gone-too.yaml`\n(recipe removed; see git history)\n\n| `benchmarks/row.yaml` |")
    assert missing_benchmark_files(text) == ["benchmarks/gone.yaml", "benchmarks/row.yaml"]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(REPO).as_posix())
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no such heading")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def test_anchor_rules(tmp_path: Path) -> None:
    """GitHub's slugs for headings like the docs' own: accents kept, punctuation and backticks dropped."""
    page = tmp_path / "page.md"
    page.write_text("# A, b (c)\n## Mirroring (`--flip`), the Lovász hinge\n# A, b (c)\n```\n# not a heading\n```\n",
                    encoding="utf-8")
    assert anchors(page) == {"a-b-c", "mirroring---flip-the-lovász-hinge", "a-b-c-1"}
