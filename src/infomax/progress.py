"""The one progress bar of the library: a rich bar over a number of steps, or nothing.

``ProgressBar(description, total)`` shows ``description  ━━━━━━━  completed/total  info  elapsed
remaining``; ``update(completed=..., info=...)`` moves it and replaces the free text ``info``
(loss, held-out estimate, ...). With ``enabled=False`` every call is a no-op, so callers never
branch on whether a bar is shown. Used by the training loop's :class:`infomax.train.Progress`
callback (``estimate_mi``, SSL, identifiability, RPM, DM) and by the benchmark runners.

>>> with ProgressBar("demo", total=3, enabled=False) as bar:
...     bar.update(advance=1, info="loss 0.5")
>>> bar.completed
1
"""

from __future__ import annotations

from types import TracebackType
from typing import Any


class ProgressBar:
    """A rich progress bar (``enabled=True``) or a silent stand-in; a context manager.

    ``total``: number of steps (``None``: unknown until :meth:`update` gives one);
    ``transient``: remove the bar when it closes.
    """

    def __init__(
        self,
        description: str,
        total: int | None = None,
        *,
        enabled: bool = True,
        transient: bool = False,
    ) -> None:
        self.completed = 0
        self._bar: Any = None
        if not enabled:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            transient=transient,
        )
        self._task = self._bar.add_task(description, total=total, info="")
        self._bar.start()

    def update(
        self,
        completed: int | None = None,
        *,
        advance: int = 0,
        total: int | None = None,
        info: str | None = None,
    ) -> None:
        """Set the step count to ``completed`` (or move it by ``advance``), the ``total`` and
        the free text ``info``; arguments left out keep their value."""
        self.completed = (self.completed if completed is None else completed) + advance
        if self._bar is None:
            return
        fields: dict[str, Any] = {"completed": self.completed}
        if total is not None:
            fields["total"] = total
        if info is not None:
            fields["info"] = info
        self._bar.update(self._task, **fields)

    def close(self) -> None:
        """Stop drawing (idempotent)."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
