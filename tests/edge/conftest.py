"""Fixtures of the edge runtime tests: a toy signed artifact (no factory needed).

Tests on the real factory's artifact use the repo-level ``small_artifact`` /
``signing_public_key`` / ``other_artifact`` fixtures (tests/conftest.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from edge_toy_artifact import build_toy_artifact, generate_key  # noqa: E402


@pytest.fixture(scope="session")
def toy_key(tmp_path_factory: pytest.TempPathFactory):
    key, pem = generate_key()
    path = tmp_path_factory.mktemp("edge_keys") / "signing_key.pub.pem"
    path.write_bytes(pem)
    return key, path


@pytest.fixture(scope="session")
def toy_artifact(tmp_path_factory: pytest.TempPathFactory, toy_key) -> Path:
    return build_toy_artifact(tmp_path_factory.mktemp("edge_models"), toy_key[0], seed=0)


@pytest.fixture(scope="session")
def toy_artifact_b(tmp_path_factory: pytest.TempPathFactory, toy_key) -> Path:
    return build_toy_artifact(tmp_path_factory.mktemp("edge_models_b"), toy_key[0], version="20261127T010000Z", seed=1)


@pytest.fixture(scope="session")
def toy_public_key(toy_key) -> Path:
    return toy_key[1]
