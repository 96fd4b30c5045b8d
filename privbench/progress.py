"""Rich progress bars for long work, behind the plain :class:`~privbench.api.ProgressReporter`.

Bars go to stderr so stdout stays clean for tables and JSON. Nested tasks (a
suite, its jobs, a job's iterations) share one live display.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from privbench.api import ProgressReporter


def _format_fields(fields: dict[str, Any]) -> str:
    parts = []
    for key, value in fields.items():
        if isinstance(value, float):
            parts.append(f"{key}={value:.4g}")
        else:
            parts.append(f"{key}={value}")
    return " ".join(parts)


class _RichTask:
    def __init__(self, progress: Progress, task_id: Any, description: str):
        self.progress = progress
        self.task_id = task_id
        self.description = description
        self.failed = False

    def fail(self, message: str = "") -> None:
        """Mark the task failed: it ends in red at the count it reached, never shown complete."""
        self.failed = True
        note = f": {message}" if message else ""
        self.progress.update(self.task_id, description=f"[red]failed[/red] {escape(self.description)}{escape(note)}")

    def advance(self, steps: int = 1, **fields: Any) -> None:
        if fields:
            self.progress.update(self.task_id, advance=steps, info=escape(_format_fields(fields)))
        else:
            self.progress.update(self.task_id, advance=steps)


class RichProgress(ProgressReporter):
    """Progress bars on stderr; ``quiet`` keeps only warnings."""

    def __init__(self, console: Console | None = None, quiet: bool = False):
        self.console = console or Console(stderr=True)
        self.quiet = quiet
        self._progress: Progress | None = None
        self._depth = 0
        self._failed_bar = False

    def _ensure(self) -> Progress:
        if self._progress is None:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                console=self.console,
                transient=False,
            )
            self._progress.start()
        return self._progress

    @contextmanager
    def task(self, description: str, total: int | None = None) -> Iterator[_RichTask]:
        if self.quiet:
            yield _QuietTask()
            return
        progress = self._ensure()
        self._depth += 1
        task_id = progress.add_task(escape(description), total=total, info="")
        handle = _RichTask(progress, task_id, description)
        try:
            yield handle
        except BaseException as exc:
            # The bar where the failure happened is marked failed; on a terminal it stays above the error
            # line, the bars around it vanish. In a log or a pipe every bar vanishes: stderr holds one line.
            first = isinstance(exc, Exception) and not getattr(exc, "_privbench_bar_failed", False)
            if first:
                handle.fail()
                self._failed_bar = True
                try:
                    exc._privbench_bar_failed = True  # type: ignore[attr-defined]
                except AttributeError:  # pragma: no cover - an exception type without a __dict__
                    pass
            else:
                progress.remove_task(task_id)
            self._depth -= 1
            if self._depth == 0:
                keep = getattr(self, "_failed_bar", False) and self.console.is_terminal
                progress.live.transient = not keep
                progress.stop()
                self._progress = None
                self._failed_bar = False
            raise
        else:
            # Task ids are not list positions once nested tasks have been removed.
            done = next(t for t in progress.tasks if t.id == task_id)
            if not handle.failed:
                progress.update(task_id, completed=done.total or done.completed)
            if self._depth > 1 and not handle.failed:
                progress.remove_task(task_id)
            self._depth -= 1
            if self._depth == 0:
                progress.stop()
                self._progress = None
                self._failed_bar = False

    @contextmanager
    def worker_rows(self) -> Iterator[Any]:
        """A callable that shows one line per task a worker runs (worker, what, seconds) under the open bars.

        A job waiting for the pieces it fanned out keeps its line beside theirs.
        """
        if self.quiet or self._progress is None:
            yield lambda rows: None
            return
        progress = self._progress
        shown: dict[tuple[str, str], Any] = {}

        def show(rows: list[tuple[str, str, float]]) -> None:
            busy = {(worker, what): f"{worker}: {what} ({seconds:.0f} s)" for worker, what, seconds in rows}
            for key in [k for k in shown if k not in busy]:
                progress.remove_task(shown.pop(key))
            for key, text in sorted(busy.items()):
                if key in shown:
                    progress.update(shown[key], description=escape(text))
                else:
                    shown[key] = progress.add_task(escape(text), total=None, info="")

        try:
            yield show
        finally:
            for task_id in shown.values():
                progress.remove_task(task_id)

    def warn(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/yellow] {escape(message)}", soft_wrap=True)  # one line each, for logs and grep


class _QuietTask:
    def advance(self, steps: int = 1, **fields: Any) -> None:
        pass

    def fail(self, message: str = "") -> None:
        pass
