"""Every relative link and anchor in README.md and docs/ resolves, and every page is
reachable.
"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def without_code_blocks(text: str) -> str:
    return re.sub(r"^[ \t]*```.*?^[ \t]*```", "", text, flags=re.S | re.M)


def prose(text: str) -> str:
    """The text without code blocks and inline code, where brackets are not links."""
    return re.sub(r"`[^`\n]*`", "", without_code_blocks(text))


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors of a page: lower case, punctuation dropped, spaces to
    hyphens.
    """
    found, seen = set(), {}
    for heading in re.findall(
        r"^#{1,6}\s+(.+?)\s*#*$", without_code_blocks(page.read_text()), flags=re.M
    ):
        slug = re.sub(r"[^\w\- ]", "", heading.replace("`", "").lower()).replace(
            " ", "-"
        )
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def relative_links(page: Path) -> list[str]:
    return [
        t for t in LINK.findall(prose(page.read_text())) if not re.match(r"[a-z]+:", t)
    ]


def test_anchors_follow_githubs_rule_on_a_hand_built_heading(tmp_path):
    # "## Studies: `eoid sweep`" -> "studies-eoid-sweep"; the second "## Notes" gets
    # "-1"
    page = tmp_path / "p.md"
    page.write_text(
        "## Studies: `eoid sweep`\n\n## Notes\n\n## Notes\n\n```\n# not a"
        " heading\n```\n"
    )
    assert anchors(page) == {"studies-eoid-sweep", "notes", "notes-1"}


def test_every_relative_link_and_anchor_resolves():
    broken = []
    for page in PAGES:
        for target in relative_links(page):
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}: no such file")
            elif anchor and (file.suffix != ".md" or anchor not in anchors(file)):
                broken.append(
                    f"{page.relative_to(ROOT)}: {target}: no heading #{anchor}"
                )
    assert not broken, "\n".join(broken)


def test_every_docs_page_is_linked_from_the_readme():
    linked = {
        (ROOT / t.partition("#")[0]).resolve()
        for t in relative_links(ROOT / "README.md")
    }
    missing = [p.name for p in PAGES[1:] if p.resolve() not in linked]
    assert not missing, f"README.md's table of docs pages lacks {missing}"
