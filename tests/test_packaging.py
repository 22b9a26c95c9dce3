"""Packaging metadata a user's pip sees (issue 14, item 8): an SPDX license string with its
files (setuptools deprecates the ``project.license`` table), and no notes to the lead in the tree."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_license_is_an_spdx_string_with_its_files() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"]
    for name in project["license-files"]:
        assert (ROOT / name).is_file(), name
    assert "Apache License" in (ROOT / "LICENSE").read_text(encoding="utf-8")


def test_no_requests_to_the_lead_in_the_repository() -> None:
    assert not (ROOT / "central" / "REQUIREMENTS-FOR-LEAD.txt").exists()
