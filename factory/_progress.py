"""Show a long search as it runs: trials, best in-budget quality, its latency and size, time left."""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from factory._search import Trial

__all__ = ["SearchProgress"]


class SearchProgress:
    """A rich progress bar over the time budget; use as a context manager and pass as hook."""

    def __init__(self, time_budget_s: float, *, console: Console | None = None) -> None:
        self.time_budget_s = time_budget_s
        self.console = console or Console(stderr=True)
        self.trials = 0
        self.feasible = 0
        self._progress = Progress(
            TextColumn("[bold]search[/]"),
            BarColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
            console=self.console,
            transient=False,
        )
        self._task: Any = None
        self._started = time.monotonic()

    def __enter__(self) -> SearchProgress:
        self._progress.__enter__()
        self._task = self._progress.add_task("search", total=self.time_budget_s, status="starting…")
        self._started = time.monotonic()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._progress.update(self._task, completed=self.time_budget_s)
        self._progress.__exit__(kind, error, trace)

    def __call__(self, trial: Trial, best: Trial | None, elapsed_s: float) -> None:
        self.trials += 1
        self.feasible += trial.feasible
        if best is None:
            status = f"{self.trials} trials, none within budget yet"
        else:
            status = (
                f"{self.trials} trials ({self.feasible} in budget) · best {best.learner} "
                f"q={best.quality:.4f} p99={best.latency_p99_us:.1f}µs {best.size_bytes / 1024:.1f}KB"
            )
        elapsed = time.monotonic() - self._started
        self._progress.update(self._task, completed=min(elapsed, self.time_budget_s), status=status)
