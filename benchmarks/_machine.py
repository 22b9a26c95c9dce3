"""What the numbers were measured on: CPU, cores, threads, load, library versions, commit.

A latency number without its machine is useless a year later; every report starts with this.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["LIBRARIES", "THREAD_ENV", "load_average", "machine_info"]

LIBRARIES = (
    "edgeseg",
    "numpy",
    "pandas",
    "scikit-learn",
    "flaml",
    "lightgbm",
    "xgboost-cpu",
    "onnxruntime",
    "onnx",
    "skl2onnx",
    "onnxmltools",
    "matplotlib",
)
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "ORT_NUM_THREADS")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_total_mb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError):
        pass
    return None


def load_average() -> list[float] | None:
    """1/5/15-minute load: tells a reader how busy the shared machine was during the run."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git_commit(repo: Path) -> dict[str, Any]:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        return {"commit": commit, "dirty": bool(dirty)}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def machine_info(repo: Path) -> dict[str, Any]:
    """CPU model, cores (online and usable), memory, OS, Python, thread env, library versions."""
    usable: int | None
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count()
    return {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cores": usable,
        "memory_total_mb": _memory_total_mb(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "thread_env": {name: os.environ.get(name) for name in THREAD_ENV},
        "libraries": {name: _version(name) for name in LIBRARIES},
        "git": _git_commit(repo),
    }
