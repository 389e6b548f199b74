"""The project's own documents stay true to the repository.

- every ``file::test`` that ``docs/architecture.md`` names as the proof of something is
  a test function in that file;
- every relative link in it, in the README and in ``docs/decisions/*.md`` leads to a
  file or folder that exists, and to a heading that exists when it names one; so does
  every ``docs/architecture.md#<heading>`` cited anywhere (code comments included);
- no file cites numbered sections of the design document that was never in the
  repository: a citation points into ``docs/architecture.md`` or a decision.
"""

from __future__ import annotations

import ast
import re
import subprocess
from collections import Counter
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARCHITECTURE = ROOT / "docs" / "architecture.md"
DECISIONS = sorted((ROOT / "docs" / "decisions").glob("*.md"))
LINKED_DOCS = [ARCHITECTURE, ROOT / "README.md", *DECISIONS]

_TEST_REF = re.compile(r"\b(tests/[\w/]+\.py)::(\w+)")
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_ANCHOR_CITE = re.compile(r"docs/architecture\.md#([\w-]+)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)
# Citations of the outside design document's numbering. Built from pieces so that this
# file does not match itself.
_OLD_CITATIONS = [
    re.compile("ARCHITE" + r"CTURE(?:\.md)?[\s,]*(?:sections?|§)\s*\d"),
    re.compile("guaran" + r"tee 9\.\d", re.IGNORECASE),
    re.compile("section" + r" \d+ of the architecture", re.IGNORECASE),
]


def _lines_outside_code(text: str) -> list[tuple[int, str]]:
    """(line number, line) of the lines that are not inside a fenced code block."""
    out, fenced = [], False
    for number, line in enumerate(text.splitlines(), start=1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            out.append((number, line))
    return out


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: link text kept, lower case, punctuation dropped
    (``-`` and ``_`` kept), each space a ``-``."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@cache
def _anchors(path: Path) -> frozenset[str]:
    seen: Counter[str] = Counter()
    anchors = set()
    for _, line in _lines_outside_code(path.read_text(encoding="utf-8")):
        match = _HEADING.match(line)
        if match is None:
            continue
        slug = _slug(match.group(2))
        anchors.add(slug if not seen[slug] else f"{slug}-{seen[slug]}")
        seen[slug] += 1
    html = re.findall(r"<a\s+(?:id|name)=\"([^\"]+)\"", path.read_text(encoding="utf-8"))
    return frozenset(anchors | set(html))


@cache
def _test_functions(path: Path) -> frozenset[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return frozenset(node.name for node in ast.walk(tree)
                     if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef))


def _repository_files() -> list[Path]:
    """Tracked files and new ones git does not ignore (other engineers' work included)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode()
    return [ROOT / name for name in listed.split("\0") if name and (ROOT / name).is_file()]


def _text(path: Path) -> str | None:
    data = path.read_bytes()
    return None if b"\0" in data else data.decode("utf-8", errors="replace")


def test_every_test_the_architecture_names_exists() -> None:
    refs = _TEST_REF.findall(ARCHITECTURE.read_text(encoding="utf-8"))
    assert len(refs) >= 20, "the guarantees name the tests that prove them"
    missing = [f"{file}::{name}" for file, name in refs
               if not (ROOT / file).is_file() or name not in _test_functions(ROOT / file)]
    assert not missing, f"docs/architecture.md names tests that do not exist: {missing}"


def test_every_relative_link_resolves() -> None:
    broken = []
    for doc in LINKED_DOCS:
        for number, line in _lines_outside_code(doc.read_text(encoding="utf-8")):
            for target in _LINK.findall(line):
                if _SCHEME.match(target):
                    continue
                path_part, _, fragment = target.partition("#")
                dest = (doc.parent / path_part).resolve() if path_part else doc
                where = f"{doc.relative_to(ROOT)}:{number}: {target}"
                if not dest.exists():
                    broken.append(f"{where} (no such file)")
                elif fragment and dest.suffix == ".md" and fragment not in _anchors(dest):
                    broken.append(f"{where} (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_readme_points_at_the_architecture() -> None:
    assert "(docs/architecture.md)" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_citations_point_into_the_projects_own_docs() -> None:
    old, dangling = [], []
    anchors = _anchors(ARCHITECTURE)
    for path in _repository_files():
        text = _text(path)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            where = f"{path.relative_to(ROOT)}:{number}: {line.strip()[:120]}"
            if any(p.search(line) for p in _OLD_CITATIONS):
                old.append(where)
            dangling += [f"{where} (#{a})" for a in _ANCHOR_CITE.findall(line)
                         if a not in anchors]
    assert not old, ("cite docs/architecture.md#<section> or a decision, not a document "
                     "outside the repository:\n" + "\n".join(old))
    assert not dangling, "docs/architecture.md has no such section:\n" + "\n".join(dangling)
