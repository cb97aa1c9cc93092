"""MkDocs hook: the CLI reference of ``docs/cli.md``, generated from the typer app at build time.

The marker ``<!-- infomax-cli -->`` in ``cli.md`` is replaced by one section per command and
subcommand (in ``--help``'s order): its help text, its usage line, and a list of its arguments
and options with their ``--help`` lines (metavar, help, default; ``--help`` itself left out).
The commands come from ``typer.main.get_command(infomax.cli.app)``; only click's public
``Command`` API is used (typer vendors its own click, so mkdocs-click cannot read the app).
"""

from __future__ import annotations

import inspect
import re
from typing import Any

MARKER = "<!-- infomax-cli -->"
_CODE = re.compile(r"(`[^`]*`)")


def _escape(text: str) -> str:
    """Markdown-safe help text: HTML and table characters escaped outside code spans."""
    parts = _CODE.split(text)
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return "".join(parts).replace("|", "\\|")


def _paragraphs(help_text: str | None) -> list[str]:
    text = inspect.cleandoc(help_text or "").replace("\b\n", "").replace("\b", "")
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip()]


def _subcommands(command: Any, ctx: Any) -> list[tuple[str, Any]]:
    if not hasattr(command, "list_commands"):
        return []
    found = ((name, command.get_command(ctx, name)) for name in command.list_commands(ctx))
    return [(name, sub) for name, sub in found if sub is not None and not sub.hidden]


def _section(command: Any, ctx: Any, level: int) -> list[str]:
    path = ctx.command_path
    lines = [f"{'#' * level} `{path}`", ""]
    for paragraph in _paragraphs(command.help):
        lines += [_escape(paragraph), ""]
    usage = " ".join([path, *command.collect_usage_pieces(ctx)])
    lines += ["```text", usage, "```", ""]
    items: dict[str, list[str]] = {"argument": [], "option": []}
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None or getattr(param, "hidden", False) or param.name == "help":
            continue
        name, help_line = record
        kind = "argument" if param.param_type_name == "argument" else "option"
        items[kind].append(f"- `{name}` — {_escape(' '.join(help_line.split()))}")
    for kind, title in (("argument", "Arguments"), ("option", "Options")):
        if items[kind]:
            lines += [f"**{title}**", "", *items[kind], ""]
    subs = _subcommands(command, ctx)
    if subs:
        lines += ["| command | summary |", "|---|---|"]
        for name, sub in subs:
            summary = (_paragraphs(sub.help) or [""])[0]
            anchor = f"{path} {name}".replace(" ", "-")
            lines.append(f"| [`{name}`](#{anchor}) | {_escape(summary)} |")
        lines.append("")
        for name, sub in subs:
            sub_ctx = sub.context_class(sub, info_name=name, parent=ctx)
            lines += _section(sub, sub_ctx, level + 1)
    return lines


def cli_markdown(prog_name: str = "infomax", level: int = 2) -> str:
    """The Markdown reference of every command of the ``infomax`` CLI."""
    import typer

    from infomax.cli import app

    command = typer.main.get_command(app)
    ctx = command.context_class(command, info_name=prog_name)
    return "\n".join(_section(command, ctx, level))


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    """Fill the marker of ``cli.md`` (any page holding it) with :func:`cli_markdown`."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, cli_markdown())
