"""Griffe extension for the docs site: render infomax's reST-flavoured docstrings as Markdown.

The docstrings of ``src/infomax`` are prose with reST inline markup. :func:`rewrite` turns

- ``double backticks`` into Markdown code spans;
- Sphinx roles (``:func:`x```, ``:class:`~a.b.C```, ``:mod:``, ``:meth:``, ``:data:``, ...)
  into code spans wrapped in an *optional* autorefs cross-reference: a link where the target
  is rendered on the site, plain code otherwise, and never an unresolved-reference warning;
- ``>>>`` examples (with their output, up to the next blank line) into ```` ```pycon ````
  fences;

and gives an attribute documented by a Sphinx ``#:`` comment that comment as its docstring.

:class:`RstDocstrings` applies it to every docstring of a loaded package, and hides, in a
submodule, the objects that its package re-exports (they are documented once, under the
package's name; the API pages use ``filters: public``).

``rewrite`` is a pure function of strings (tested by ``tests/test_docs_site.py``, which does
not need griffe installed).
"""

from __future__ import annotations

import re
from collections.abc import Callable

# :role:`target`, :py:role:`target`, :role:`title <target>`
_ROLE = re.compile(r":(?:py:)?(?:func|class|mod|meth|data|attr|exc|obj|const|type):`([^`]+)`")
_LITERAL = re.compile(r"``(.+?)``")
_FENCE = re.compile(r"^\s*(```|~~~)")
_EXPLICIT = re.compile(r"^(?P<title>.+?)\s*<(?P<target>[^<>]+)>$")


def _code(text: str) -> str:
    """A Markdown code span for ``text`` (which may hold a backtick)."""
    if "`" in text:
        return f"`` {text} ``"
    return f"`{text}`"


def _role(content: str, resolve: Callable[[str], str]) -> str:
    content = content.strip()
    explicit = _EXPLICIT.match(content)
    if explicit:
        title, target = explicit["title"], explicit["target"].strip()
    else:
        target = content.lstrip("~!")
        title = target.rsplit(".", 1)[-1] if content.startswith("~") else target
    if content.startswith("!"):
        return _code(title)
    identifier = resolve(target.removesuffix("()"))
    return f'<autoref identifier="{identifier}" optional>{_code(title)}</autoref>'


def _inline(line: str, resolve: Callable[[str], str]) -> str:
    line = _ROLE.sub(lambda m: _role(m[1], resolve), line)
    return _LITERAL.sub(lambda m: _code(m[1]), line)


def comment_doc(lines: list[str], lineno: int) -> str | None:
    """The Sphinx ``#:`` doc-comment of the assignment on line ``lineno`` (1-based), if any.

    ``#:`` lines right above the assignment, or a trailing ``#:`` on the line itself.
    """
    above: list[str] = []
    i = lineno - 2
    while i >= 0 and lines[i].lstrip().startswith("#:"):
        above.insert(0, lines[i].lstrip()[2:].strip())
        i -= 1
    if above:
        return "\n".join(above)
    line = lines[lineno - 1] if 0 < lineno <= len(lines) else ""
    if "  #: " in line:
        return line.split("  #: ", 1)[1].strip()
    return None


def rewrite(text: str, resolve: Callable[[str], str] | None = None) -> str:
    """Markdown for one docstring's reST inline markup and ``>>>`` examples.

    ``resolve`` maps a role's target (as written) to the identifier of its cross-reference;
    by default the target itself. Existing fenced blocks are left as they are, which makes the
    rewrite idempotent.
    """
    resolve = resolve or (lambda target: target)
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence:  # copy a fenced block verbatim
            out.append(line)
            i += 1
            while i < len(lines):
                out.append(lines[i])
                i += 1
                if lines[i - 1].strip().startswith(fence[1]):
                    break
            continue
        if line.lstrip().startswith(">>>"):  # a doctest block: through the next blank line
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}```pycon")
            while i < len(lines) and lines[i].strip():
                out.append(lines[i])
                i += 1
            out.append(f"{indent}```")
            continue
        out.append(_inline(line, resolve))
        i += 1
    return "\n".join(out)


try:
    import griffe
except ImportError:  # the tests import ``rewrite`` without the docs extras
    griffe = None  # type: ignore[assignment]

if griffe is not None:

    def _resolver(obj: griffe.Object, exported: dict[str, str]) -> Callable[[str], str]:
        """Qualify a role's target from ``obj``'s scope; a re-exported object by its package."""

        def resolve(target: str) -> str:
            head, _, rest = target.partition(".")
            if head != obj.package.name:
                try:
                    path = obj.resolve(head)
                except Exception:  # unknown name: an optional reference, left unresolved
                    return target
                target = f"{path}.{rest}" if rest else path
            return exported.get(target, target)

        return resolve

    class RstDocstrings(griffe.Extension):
        """Rewrite every docstring of a package (see :func:`rewrite`), once."""

        def __init__(self) -> None:
            super().__init__()
            self._done: set[str] = set()
            #: canonical path -> the package path it is documented under
            self._exported: dict[str, str] = {}

        def on_package(self, *, pkg: griffe.Module, **kwargs: object) -> None:
            self._hide_reexported(pkg)
            self._walk(pkg)

        def _walk(self, obj: griffe.Object) -> None:
            if obj.path in self._done:
                return
            self._done.add(obj.path)
            if obj.docstring is None and obj.is_attribute and obj.lineno and obj.filepath:
                doc = comment_doc(obj.lines_collection[obj.filepath], obj.lineno)  # type: ignore[index]
                if doc:
                    obj.docstring = griffe.Docstring(doc, lineno=obj.lineno, parent=obj)
            if obj.docstring is not None:
                resolve = _resolver(obj, self._exported)
                obj.docstring.value = rewrite(obj.docstring.value, resolve)
            for member in list(obj.members.values()):
                if not member.is_alias:
                    self._walk(member)  # type: ignore[arg-type]

        def _hide_reexported(self, module: griffe.Module) -> None:
            """An object that a package exports from its own submodule is shown once, there."""
            for name in module.exports or ():
                alias = module.members.get(str(name))
                if alias is None or not alias.is_alias:
                    continue
                try:
                    target = alias.final_target
                except Exception:  # an export griffe cannot follow: nothing to hide
                    continue
                if target.path.startswith(f"{module.path}.") and not target.is_module:
                    target.public = False
                    self._exported[target.path] = alias.path
            for member in module.members.values():
                if not member.is_alias and member.is_module:
                    self._hide_reexported(member)  # type: ignore[arg-type]
