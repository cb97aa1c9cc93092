"""What every command shares: the typer apps, the consoles, one-line errors, the ``--out``
check, and :func:`config_options`, which declares a command's options from the fields of a
frozen config dataclass (name, type and default), so that no default is written twice.

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Cfg:
...     steps: int = 100
...     sizes: tuple[int, ...] = (8, 16)
>>> @config_options(Cfg, {"steps": "Training steps.", "sizes": "Batch sizes."}, into="cfg")
... def cmd(*, cfg: Fields) -> Fields:
...     return cfg
>>> params = inspect.signature(cmd).parameters
>>> [(name, params[name].default.default) for name in ("steps", "sizes")]
[('steps', 100), ('sizes', '8,16')]
>>> cmd(steps=5, sizes="4, 32")
{'steps': 5, 'sizes': (4, 32)}
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import typing
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

# rich_markup_mode=None: help text is shown as written (``[n, dx]`` is a shape, not markup)
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Contrastive and InfoMax learning.",
)
bench_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=None, help="Benchmarks: accuracy, speed and memory."
)
app.add_typer(bench_app, name="bench")
console = Console()
#: warnings go to stderr, so that ``--json`` output on stdout stays valid JSON
warn_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])
#: The values of a command's config options, by field name (what :func:`config_options` passes).
Fields = dict[str, Any]

# help strings that several commands share
SEED = "Random seed."
DEVICE = "auto, cpu, cuda ..."
#: the spellings of a ``memory_efficient: bool | None`` field's option
MEMORY_EFFICIENT = ("--memory-efficient/--dense",)


def error_line(err: BaseException) -> str:
    """One line for an input or output problem: what went wrong and, where known, on which path."""
    if isinstance(err, OSError) and err.strerror:
        return f"{err.strerror}: {err.filename}" if err.filename else err.strerror
    if isinstance(err, MemoryError):
        return "not enough memory for this run: lower the sizes (batch, samples, test sizes)"
    return str(err) or type(err).__name__


def friendly_errors(fn: F) -> F:
    """Turn input / output errors into one red line and exit code 2 (no traceback).

    ``ValueError`` (bad input, found by the library's checks), every ``OSError`` (unreadable
    input, an output folder that cannot be written), ``MemoryError`` and torch's out-of-memory
    error. Anything else is a bug: one line saying so, exit code 1, and the traceback only
    with ``INFOMAX_TRACEBACK=1``.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except (ValueError, OSError, MemoryError) as err:
            console.print(f"[bold red]error:[/] {escape(error_line(err))}", soft_wrap=True)
            raise typer.Exit(code=2) from None
        except Exception as err:
            import torch

            if isinstance(err, torch.OutOfMemoryError):
                msg = "out of device memory: lower --batch-size (or use --memory-efficient)"
                console.print(f"[bold red]error:[/] {msg}", soft_wrap=True)
                raise typer.Exit(code=2) from None
            if os.environ.get("INFOMAX_TRACEBACK"):
                raise
            console.print(
                f"[bold red]internal error:[/] {escape(type(err).__name__)}: {escape(str(err))} "
                "(a bug: please report it; INFOMAX_TRACEBACK=1 shows the traceback)",
                soft_wrap=True,
            )
            raise typer.Exit(code=1) from None

    return wrapper  # type: ignore[return-value]


def out_dir(path: str | None, option: str = "--out") -> str | None:
    """Check an output folder before any work (creating nothing): fail now, not after the run,
    when it is an existing file or cannot be written (:func:`reports.prepare_out_dir`)."""
    if path is None:
        return None
    from ..reports import prepare_out_dir

    prepare_out_dir(path, option)
    return path


def warn(message: str) -> None:
    """One yellow ``warning:`` line on stderr."""
    warn_console.print(f"[yellow]warning:[/] {escape(message)}", soft_wrap=True)


# --- options from config dataclasses ----------------------------------------------------------


#: ``parse(text, flag)``: the value of an option's text (``flag`` names it in errors)
Parser = Callable[[str, str], Any]


@dataclasses.dataclass(frozen=True)
class Opt:
    """How one config field appears on the command line; a plain string is ``Opt(help)``.

    ``decls``: the option's spellings when not ``--field-name`` (``("--sync-bn",)``,
    ``("--memory-efficient/--dense",)``). ``parse(text, flag)`` / ``show(default)``: the value
    of a text option and the text of its default, for fields whose option syntax is not the
    value itself (tuple fields are comma lists without them). ``aliases``: earlier spellings
    (``("--divergence",)``), still accepted but not shown by ``--help``; giving both an alias
    and the option with different values is an error.
    """

    help: str
    decls: tuple[str, ...] = ()
    parse: Parser | None = None
    show: Callable[[Any], str] | None = None
    aliases: tuple[str, ...] = ()


def _tuple_item(annotation: Any) -> type | None:
    """``int`` for ``tuple[int, ...]`` (the item type of a homogeneous tuple), else ``None``."""
    if typing.get_origin(annotation) is tuple:
        args = typing.get_args(annotation)
        if len(args) == 2 and args[1] is Ellipsis and isinstance(args[0], type):
            return args[0]
    return None


def comma_list(item: type, noun: str, example: str) -> Callable[[str, str], tuple[Any, ...]]:
    """Parser of a comma list of ``item`` values; one-line ``ValueError`` naming the option."""
    kind = {int: "integers", float: "numbers"}.get(item, "names")

    def parse(text: str, flag: str) -> tuple[Any, ...]:
        try:
            values = tuple(item(v.strip()) for v in text.split(",") if v.strip())
        except ValueError:
            raise ValueError(f"{flag} must be a comma list of {kind}, got {text!r}") from None
        if not values:
            raise ValueError(
                f"{flag} {text!r} names no {noun}: give a comma list such as {example!r}"
            )
        return values

    return parse


def _flag(name: str, opt: Opt) -> str:
    """The option's main spelling (``--field-name`` unless ``opt.decls`` says otherwise)."""
    return opt.decls[0].split("/")[0] if opt.decls else "--" + name.replace("_", "-")


def _option(
    name: str, annotation: Any, default: Any, opt: Opt
) -> tuple[inspect.Parameter, tuple[Parser, str] | None, list[inspect.Parameter]]:
    """The typer option of one field, ``(parser, flag)`` of its text (``None``: typer's own
    conversion) and one hidden option per alias (default ``None``: not given)."""
    flag = _flag(name, opt)
    item = _tuple_item(annotation)
    parse = None
    if opt.parse is not None or item is not None:
        text = opt.show(default) if opt.show else ",".join(str(v) for v in default)
        noun = name.split("_")[-1].removesuffix("s")
        parse = (opt.parse or comma_list(item or str, noun, text), flag)
        annotation, default = str, text
    info = typer.Option(default, *opt.decls, help=opt.help)
    param = inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=info)
    aliases = []
    for alias in opt.aliases:
        if annotation is bool:
            raise TypeError(f"{flag}: a switch cannot have aliases")
        hidden = typer.Option(None, alias, hidden=True, help=f"Earlier name of {flag}.")
        alias_param = inspect.Parameter(
            _alias_name(name, alias), inspect.Parameter.KEYWORD_ONLY, default=hidden
        )
        aliases.append(alias_param.replace(annotation=annotation | None))
    return param.replace(annotation=annotation), parse, aliases


def _alias_name(name: str, alias: str) -> str:
    """The parameter that receives alias ``alias`` of field ``name``."""
    return f"{name}__as_{alias.lstrip('-').replace('-', '_')}"


def config_options(source: Any, options: Mapping[str, str | Opt], *, into: str) -> Callable[[F], F]:
    """Declare a command's options from a config dataclass (or instance: its values are the
    defaults): one option per field named in ``options`` (its help, or an :class:`Opt`), with
    the field's name, type and default. The command declares a keyword-only placeholder
    parameter ``into``; the options replace it in the signature typer reads, and their values
    reach the command as one :data:`Fields` dict under that name.
    """
    cls = source if isinstance(source, type) else type(source)
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    generated, parsers, hidden = [], {}, []
    #: field -> [(alias parameter, alias flag)], with the option's flag and default
    aliases: dict[str, tuple[str, Any, list[tuple[str, str]]]] = {}
    for name, spec in options.items():
        if name not in fields:
            raise TypeError(f"{cls.__name__} has no field {name!r}")
        field = fields[name]
        if not isinstance(source, type):
            default = getattr(source, name)
        elif field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            raise TypeError(f"{cls.__name__}.{name} has no default")
        opt = Opt(spec) if isinstance(spec, str) else spec
        param, parse, alias_params = _option(name, hints[name], default, opt)
        generated.append(param)
        if parse is not None:
            parsers[name] = parse
        if alias_params:
            hidden.extend(alias_params)
            names = [(a.name, flag) for a, flag in zip(alias_params, opt.aliases, strict=True)]
            aliases[name] = (_flag(name, opt), param.default.default, names)

    def decorate(fn: F) -> F:
        sig = inspect.signature(fn, eval_str=True)
        params = list(sig.parameters.values())
        names = [p.name for p in params]
        if into not in names or sig.parameters[into].kind is not inspect.Parameter.KEYWORD_ONLY:
            raise TypeError(f"{fn.__name__} needs a keyword-only parameter {into!r}")
        clash = set(names) & ({*options} | {p.name for p in hidden})
        if clash:
            raise TypeError(f"{fn.__name__}: options {sorted(clash)} are declared twice")
        at = names.index(into)
        # the innermost of stacked config_options declares the context parameter and removes it
        owns_context = _CONTEXT not in names
        context = [
            inspect.Parameter(
                _CONTEXT, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=typer.Context
            )
        ]
        new = sig.replace(
            parameters=[
                *params[:at],
                *generated,
                *hidden,
                *(context if owns_context else []),
                *params[at + 1 :],
            ]
        )

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in options}
            ctx = kwargs.pop(_CONTEXT, None) if owns_context else kwargs.get(_CONTEXT)
            explicit = _given_on_command_line(ctx, options)
            if explicit is not None:
                explicit |= _GIVEN.get() or set()  # an outer config_options' options
            for name, (flag, default, names) in aliases.items():
                for param_name, alias in names:
                    given = kwargs.pop(param_name, None)
                    if given is None:
                        continue
                    if explicit is not None:
                        explicit.add(name)
                    if values[name] not in (default, given):
                        raise ValueError(
                            f"{alias} is an earlier name of {flag}: give one of them, "
                            f"not both ({alias} {given}, {flag} {values[name]})"
                        )
                    values[name] = given
            for name, (parse, flag) in parsers.items():
                values[name] = parse(values[name], flag)
            token = _GIVEN.set(explicit)
            try:
                return fn(*args, **kwargs, **{into: values})
            finally:
                _GIVEN.reset(token)

        wrapper.__signature__ = new  # type: ignore[attr-defined]
        wrapper.__annotations__ = {
            p.name: p.annotation for p in new.parameters.values() if p.annotation is not p.empty
        }
        wrapper.__annotations__["return"] = sig.return_annotation
        return wrapper  # type: ignore[return-value]

    return decorate


#: the hidden parameter through which typer hands :func:`config_options` the click context
_CONTEXT = "_click_context"
#: the config options the user gave to the command running now (``None``: called from Python)
_GIVEN: ContextVar[set[str] | None] = ContextVar("infomax_given_options", default=None)


def _given_on_command_line(ctx: Any, names: Mapping[str, Any]) -> set[str] | None:
    """The ``names`` whose option the user gave (click's parameter source is not the default:
    command line or environment); ``None`` without a click context (called from Python)."""
    if ctx is None:
        return None
    given = set()
    for name in names:
        source = ctx.get_parameter_source(name)
        if source is not None and source.name != "DEFAULT":
            given.add(name)
    return given


def preset_options(settings: Fields, defaults: Any) -> Fields:
    """The options the user set: with a ``preset``, options the user did not give come from
    the preset instead of overriding it; one given on the command line wins even when it
    equals the default. Called from Python (no click context), an option counts as given when
    it differs from the ``defaults`` config's value."""
    if not settings.get("preset"):
        return settings
    given = _GIVEN.get()
    if given is None:
        return {k: v for k, v in settings.items() if k == "preset" or v != getattr(defaults, k)}
    return {k: v for k, v in settings.items() if k == "preset" or k in given}
