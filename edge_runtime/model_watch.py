"""Learn of a rollout promptly: long-poll central for a change of this store's model, poll as a
fall-back, and spread the fleet's switches with jitter (issue 12).

    watcher = ModelWatcher(updater, runtime=runtime, poll_interval_s=300, long_poll_s=25, jitter_s=5)
    watcher.run(stop_event)             # or watcher.step() from the device's own loop

Each round asks ``GET /v1/models/wait?running=<version>&timeout=<long_poll_s>``: central answers
as soon as the store should run another version (a canary start, a promotion, a rollback) or at
the timeout. On a change the device waits a random ``[0, jitter_s)`` seconds, so a fleet does not
download and switch in the same second, then runs the ordinary verified
:meth:`ModelUpdater.update`. ``long_poll_s=0`` (or a central without the route) falls back to
plain polling every ``poll_interval_s``. A round that cannot reach central backs off to the
polling interval; the watcher never raises out of :meth:`run`.

Why long-poll and not MQTT: it needs nothing besides central (no broker to run, secure and
authorise per store), reuses the device token and TLS of every other call, and measured a switch
within the jitter window (docs in the README, "A model that keeps learning").
"""

from __future__ import annotations

import copy
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import quote

from edge_runtime.exceptions import SyncError
from edge_runtime.updates import ModelUpdater, UpdateReport

if TYPE_CHECKING:
    from edge_runtime.runtime import Runtime

__all__ = ["WAIT_PATH", "ModelWatcher"]

log = logging.getLogger(__name__)

WAIT_PATH = "/v1/models/wait"


class ModelWatcher:
    """Long-poll (or poll) central and update the model when the store's version changes."""

    def __init__(
        self,
        updater: ModelUpdater,
        *,
        runtime: Runtime | None = None,
        random_state: int | None = None,
        poll_interval_s: float = 300.0,
        sleep: Callable[[float], object] = time.sleep,
        long_poll_s: float = 25.0,
        jitter_s: float = 5.0,
    ) -> None:
        for name, value in (("poll_interval_s", poll_interval_s), ("long_poll_s", long_poll_s), ("jitter_s", jitter_s)):
            if not value >= 0:
                raise ValueError(f"The '{name}' parameter of ModelWatcher must be >= 0. Got {value!r} instead.")
        self.updater = updater
        self.runtime = runtime
        self.poll_interval_s = poll_interval_s
        self.long_poll_s = long_poll_s
        self.jitter_s = jitter_s
        self._random = random.Random(random_state)
        self._sleep = sleep
        # The long-poll's own client: its socket timeout must outlast central's wait.
        self._waiter = copy.copy(updater.head_office)
        self._waiter.timeout = max(float(updater.head_office.timeout), long_poll_s + 10.0)
        self.last_jitter_s = 0.0

    def running(self) -> str | None:
        return self.runtime.model_version if self.runtime is not None else self.updater.installed_version()

    def wait_for_change(self) -> bool | None:
        """True: central says the store should switch; False: no change by the timeout; None:
        central has no long-poll route (or long-polling is off): the caller polls instead."""
        if self.long_poll_s <= 0:
            return None
        path = f"{WAIT_PATH}?running={quote(self.running() or '', safe='')}&timeout={self.long_poll_s:g}"
        try:
            answer = self._waiter.request_json("GET", path)
        except SyncError as exc:
            if exc.status in (404, 405):
                return None
            raise
        return bool(answer.get("changed"))

    def step(self) -> UpdateReport | None:
        """One round: wait for a change (or one polling interval), then update after the jitter.
        Returns the update's report, or None when nothing changed."""
        changed = self.wait_for_change()
        if changed is None:
            self._sleep(self.poll_interval_s)
        elif not changed:
            return None
        self.last_jitter_s = self._random.uniform(0.0, self.jitter_s) if changed else 0.0
        if self.last_jitter_s:
            self._sleep(self.last_jitter_s)
        report = self.updater.update(self.runtime)
        if changed is None and report.status == "up_to_date":
            return None
        return report

    def run(self, stop: threading.Event, on_report: Callable[[UpdateReport], object] | None = None) -> None:
        """Rounds until ``stop`` is set; central away -> wait one polling interval and retry."""
        while not stop.is_set():
            try:
                report = self.step()
            except SyncError as exc:
                log.warning("model watch: central not reachable (%s); retrying in %g s", exc, self.poll_interval_s)
                stop.wait(self.poll_interval_s)
                continue
            if report is not None and on_report is not None:
                on_report(report)
