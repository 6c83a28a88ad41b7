"""Every relative link in the project's markdown pages (README.md, docs/, and the
demo's and benchmarks' READMEs) leads somewhere: the file exists and, for a
`#fragment` into a markdown file, a heading there has that anchor."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "demo" / "README.md",
    ROOT / "benchmarks" / "README.md",
]

FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")
# [text](target) and ![alt](target); a title after the target is allowed.
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)


def prose(text: str) -> str:
    """The text outside code blocks and code spans, where links are links."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for heading in HEADING.findall(FENCE.sub("", page.read_text(encoding="utf-8"))):
        base = anchor(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def relative_links(page: Path) -> list[str]:
    targets = LINK.findall(prose(page.read_text(encoding="utf-8")))
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t, re.I)]


@pytest.mark.parametrize(
    "heading, expected",
    [
        ("Quick start", "quick-start"),
        (
            "The command line: `tb-activations export` and `report`",
            "the-command-line-tb-activations-export-and-report",
        ),
        ("tf-explain 0.3.1 beside ActivationLogger", "tf-explain-031-beside-activationlogger"),
        ("`overview?run=`", "overviewrun"),
        ("Layer shapes: images, Dense, sequences", "layer-shapes-images-dense-sequences"),
    ],
)
def test_anchor_is_githubs(heading, expected):
    assert anchor(heading) == expected


def test_links_are_found_outside_code(tmp_path):
    text = '[a](x.md) `[b](y.md)` ![c](d.png "title")\n```\n[e](z.md)\n```\n[f](https://e.org)'
    page = tmp_path / "links.md"
    page.write_text(text, encoding="utf-8")
    assert relative_links(page) == ["x.md", "d.png"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    links = relative_links(page)
    assert links or page != ROOT / "README.md", "no links found: the pattern is broken"
    broken = []
    for link in links:
        path, _, fragment = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            broken.append(f"{link}: no file {target.relative_to(ROOT)}")
        elif fragment and target.suffix == ".md" and fragment not in anchors(target):
            broken.append(f"{link}: no heading with anchor #{fragment} in {target.name}")
    assert not broken, f"{page.relative_to(ROOT)} has broken links:\n" + "\n".join(broken)
