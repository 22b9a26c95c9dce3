"""ModelWatcher (issue 12): a device long-polls central for its store's model, switches after a
random jitter, and falls back to polling when central has no long-poll route."""

from __future__ import annotations

from typing import Any

import pytest

from edge_runtime.exceptions import SyncError
from edge_runtime.model_watch import WAIT_PATH, ModelWatcher
from edge_runtime.updates import UpdateReport


class _HeadOffice:
    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers
        self.timeout = 5.0
        self.asked: list[str] = []

    def request_json(self, method: str, path: str) -> dict[str, Any]:
        self.asked.append(path)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return dict(answer)


class _Updater:
    def __init__(self, head_office: _HeadOffice, status: str = "installed") -> None:
        self.head_office = head_office
        self.status = status
        self.updates = 0

    def installed_version(self) -> str:
        return "retail-tier/20261126T120000Z"

    def update(self, runtime: Any = None) -> UpdateReport:
        self.updates += 1
        return UpdateReport(self.status, "retail-tier/20261201T000000Z")


def _watcher(
    answers: list[Any], status: str = "installed", **kwargs: Any
) -> tuple[ModelWatcher, _Updater, list[float]]:
    slept: list[float] = []
    updater = _Updater(_HeadOffice(answers), status)
    watcher = ModelWatcher(updater, sleep=slept.append, random_state=0, **kwargs)  # type: ignore[arg-type]
    return watcher, updater, slept


def test_a_change_is_installed_after_a_jitter_within_the_bound() -> None:
    watcher, updater, slept = _watcher([{"changed": False}, {"changed": True}], long_poll_s=20, jitter_s=5)
    assert watcher.step() is None and updater.updates == 0  # no change by the timeout: nothing to do
    report = watcher.step()
    assert report is not None and report.status == "installed" and updater.updates == 1
    assert len(slept) == 1 and 0 <= slept[0] < 5 and watcher.last_jitter_s == slept[0]
    asked = updater.head_office.asked[-1]
    assert asked.startswith(WAIT_PATH) and "running=retail-tier%2F20261126T120000Z" in asked and "timeout=20" in asked
    assert watcher._waiter.timeout >= 30  # the socket outlasts central's wait


def test_jitter_spreads_a_fleet() -> None:
    jitters = []
    for seed in range(20):
        updater = _Updater(_HeadOffice([{"changed": True}]))
        watcher = ModelWatcher(updater, sleep=lambda s: None, random_state=seed, jitter_s=5)  # type: ignore[arg-type]
        watcher.step()
        jitters.append(round(watcher.last_jitter_s, 3))
    assert len(set(jitters)) == 20


def test_without_the_long_poll_route_it_polls_every_interval() -> None:
    watcher, updater, slept = _watcher([SyncError("HTTP 404", status=404)], status="up_to_date", poll_interval_s=60)
    assert watcher.step() is None  # polled, nothing new
    assert slept == [60] and updater.updates == 1
    off, updater, slept = _watcher([], long_poll_s=0, poll_interval_s=30)
    assert off.step() is not None and slept == [30] and updater.head_office.asked == []


def test_bad_intervals_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'jitter_s' parameter of ModelWatcher must be >= 0. Got -1"):
        _watcher([], jitter_s=-1)
