"""The docs site's sources, checked without building it (``mkdocs build --strict`` runs in CI).

Policy: every public module of ``src/infomax`` (no ``_`` in its dotted name; not ``__main__``)
has an API page. A top-level module or package ``infomax.x`` is documented on
``docs/api/x.md`` by a ``::: infomax.x`` directive, and each public submodule of a package on
its package's page; ``infomax.cli`` is documented by the CLI reference (``docs/cli.md``, filled
at build time from the typer app).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "infomax"
DOCS = ROOT / "docs"
#: documented elsewhere than on an API page
NOT_ON_API_PAGES = {"cli": DOCS / "cli.md"}


def public_modules() -> dict[str, list[str]]:
    """``{top-level name: [its public dotted module names]}`` under ``src/infomax``."""
    found: dict[str, list[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if not parts or any(part.startswith("_") for part in parts):
            continue
        found.setdefault(parts[0], []).append(".".join(["infomax", *parts]))
    return found


def directives(page: Path) -> set[str]:
    return set(re.findall(r"^::: (\S+)\s*$", page.read_text(encoding="utf-8"), re.M))


def test_every_public_module_has_an_api_page() -> None:
    modules = public_modules()
    for required in ("losses", "estimate", "bounds", "divergences", "identifiability", "rpm"):
        assert required in modules
    missing = []
    for top, names in modules.items():
        if top in NOT_ON_API_PAGES:
            assert NOT_ON_API_PAGES[top].exists()
            continue
        page = DOCS / "api" / f"{top}.md"
        documented = directives(page) if page.exists() else set()
        missing += [f"{name} (docs/api/{top}.md)" for name in names if name not in documented]
    assert not missing, f"modules without an API directive: {missing}"


def test_the_cli_page_is_generated() -> None:
    assert "<!-- infomax-cli -->" in (DOCS / "cli.md").read_text(encoding="utf-8")
    assert "docs/_ext/cli_hook.py" in (ROOT / "mkdocs.yml").read_text(encoding="utf-8")


def test_every_nav_page_exists_and_every_api_page_is_in_the_nav() -> None:
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = config[config.index("\nnav:") :]
    pages = re.findall(r"^\s*-\s+(?:[^\n]*?:\s+)?([\w./-]+\.md)\s*$", nav, re.M)
    assert "index.md" in pages and "api/estimate.md" in pages
    assert [page for page in pages if not (DOCS / page).is_file()] == []
    api_pages = {f"api/{page.name}" for page in (DOCS / "api").glob("*.md")}
    assert api_pages - set(pages) == set()


def load_extension():
    spec = importlib.util.spec_from_file_location("griffe_rst", DOCS / "_ext" / "griffe_rst.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rewrite_turns_rest_markup_into_markdown() -> None:
    ext = load_extension()
    text = "\n".join(
        [
            "Fit ``x`` with :class:`~a.b.C` and :func:`a.f`.",
            "",
            ">>> f(1)",
            "... # more",
            "2",
            "",
            "After ``y``.",
        ]
    )
    expected = "\n".join(
        [
            'Fit `x` with <autoref identifier="a.b.C" optional>`C`</autoref> and '
            '<autoref identifier="a.f" optional>`a.f`</autoref>.',
            "",
            "```pycon",
            ">>> f(1)",
            "... # more",
            "2",
            "```",
            "",
            "After `y`.",
        ]
    )
    assert ext.rewrite(text) == expected
    assert ext.rewrite(expected) == expected  # idempotent: fenced blocks are kept as they are
    assert ext.rewrite(":mod:`m`", {"m": "pkg.m"}.get) == (
        '<autoref identifier="pkg.m" optional>`m`</autoref>'
    )
    assert ext.rewrite(":meth:`!x.y`  ``a`b``") == "`x.y`  `` a`b ``"


def test_comment_doc_reads_sphinx_attribute_comments() -> None:
    ext = load_extension()
    lines = ["#: first", "#: second", "X = 1", "Y = 2  #: trailing", "Z = 3"]
    assert ext.comment_doc(lines, 3) == "first\nsecond"
    assert ext.comment_doc(lines, 4) == "trailing"
    assert ext.comment_doc(lines, 5) is None
