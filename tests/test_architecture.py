"""The floors stay separate: no package imports another package's ``_private`` module.

edge_runtime is at the bottom, factory and central above it, benchmarks on top. A module or
name whose path has a component starting with ``_`` is private to its top-level package; a
contract two packages share must be public (``edge_runtime.artifact``, ``factory.BuildResult``)
so its owner can see who depends on it. This test reads the source with ``ast`` (nothing is
imported, so a broken module cannot hide an offence) and lists every offending file:line.

Relative imports (``from ._x import y``) stay inside their own package and are always fine.
``importlib.import_module("pkg._x")`` with a literal name counts as an import.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("factory", "edge_runtime", "central", "benchmarks")


@dataclass(frozen=True)
class Offence:
    """One import of another package's private module or name."""

    file: str
    line: int
    module: str  # the full dotted path imported, e.g. "factory._build._split"

    def __str__(self) -> str:
        return f"{self.file}:{self.line} imports {self.module}"


def _is_private(part: str) -> bool:
    """``_x`` is private; dunders (``__init__``, ``__main__``, ``__version__``) are not."""
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def _foreign_private(dotted: str, own_package: str) -> bool:
    """True when ``dotted`` is inside another of our packages and has a private component."""
    parts = dotted.split(".")
    return parts[0] in PACKAGES and parts[0] != own_package and any(_is_private(p) for p in parts[1:])


def _imported_paths(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, dotted path) of every absolute import in ``tree``, including ``from m import n`` as
    ``m.n`` (``n`` may be a submodule or an attribute: either way it belongs to ``m``'s owner)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level or node.module is None:
                continue  # relative: stays inside the importing package
            yield node.lineno, node.module
            for alias in node.names:
                if alias.name != "*":
                    yield node.lineno, f"{node.module}.{alias.name}"
        elif (
            isinstance(node, ast.Call)
            and _call_name(node.func) in {"import_module", "importlib.import_module", "__import__"}
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.lineno, node.args[0].value


def _call_name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return f"{func.value.id}.{func.attr}"
    return ""


def find_offences(source: str, file: str, own_package: str) -> list[Offence]:
    """Every import in ``source`` (a file of ``own_package``) of another package's private part.

    ``from factory._build import build`` reports once, at the shallowest private path
    (``factory._build``), so the message names the module to stop importing.
    """
    tree = ast.parse(source, filename=file)
    offences: dict[tuple[int, str], Offence] = {}
    for line, dotted in _imported_paths(tree):
        if not _foreign_private(dotted, own_package):
            continue
        parts = dotted.split(".")
        first = next(i for i, p in enumerate(parts) if i > 0 and _is_private(p))
        shallow = ".".join(parts[: first + 1])
        offences.setdefault((line, shallow), Offence(file, line, shallow))
    return sorted(offences.values(), key=lambda o: (o.file, o.line, o.module))


def _source_files() -> Iterator[tuple[Path, str]]:
    """(file, owning package) for every .py file of our packages, tests excluded."""
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            relative = path.relative_to(REPO_ROOT)
            if "tests" in relative.parts or path.name.startswith("test_"):
                continue
            yield path, package


def test_no_package_imports_another_packages_private_modules() -> None:
    offences: list[Offence] = []
    for path, package in _source_files():
        source = path.read_text(encoding="utf-8")
        offences += find_offences(source, str(path.relative_to(REPO_ROOT)), package)
    assert not offences, (
        f"{len(offences)} import(s) of another package's private module (make it public, or use "
        "the public API):\n" + "\n".join(f"  {o}" for o in offences)
    )


def test_the_walk_sees_every_package() -> None:
    # A renamed folder must not make the check above pass by reading nothing.
    seen = {package for _, package in _source_files()}
    assert seen == set(PACKAGES)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from factory._build import _split\n", ["factory._build"]),
        ("import factory._build\n", ["factory._build"]),
        ("import factory._build as b\n", ["factory._build"]),
        ("from factory import _build\n", ["factory._build"]),
        ("from edge_runtime._encoding import encode_records, InputLayout\n", ["edge_runtime._encoding"]),
        ("from factory.features._customer import x\n", ["factory.features._customer"]),
        ("from factory.signing import _private_helper\n", ["factory.signing._private_helper"]),
        ("def f():\n    from central._x import y\n", ["central._x"]),
        ("import importlib\nimportlib.import_module('factory._search')\n", ["factory._search"]),
    ],
    ids=[
        "from-private",
        "import-dotted",
        "import-as",
        "from-pkg-import-private",
        "two-names",
        "nested",
        "private-name",
        "inside-function",
        "import-module-call",
    ],  # fmt: skip
)
def test_checker_flags_a_foreign_private_import(source: str, expected: list[str]) -> None:
    offences = find_offences(source, "benchmarks/fake.py", "benchmarks")
    assert [o.module for o in offences] == expected
    assert str(offences[0]).startswith("benchmarks/fake.py:")


@pytest.mark.parametrize(
    "source",
    [
        "from factory import BuildResult, build\n",  # public API
        "from benchmarks._job import Job\n",  # own package's private module
        "from ._job import Job\n",  # relative: always inside the package
        "from . import _job\n",
        "import pandas._libs\n",  # not one of our packages
        "from edge_runtime import __version__\n",  # dunders are not private
        "from factory.cli import *\n",
    ],
)
def test_checker_allows_public_own_and_relative_imports(source: str) -> None:
    assert find_offences(source, "benchmarks/fake.py", "benchmarks") == []


def test_failure_message_lists_file_line_and_module() -> None:
    source = "import json\n\nfrom factory._build import _split\n"
    (offence,) = find_offences(source, "benchmarks/_job.py", "benchmarks")
    assert str(offence) == "benchmarks/_job.py:3 imports factory._build"


def test_design_references_point_inside_the_repo() -> None:
    """A docstring's "DESIGN §N" must name docs/DESIGN.md: a clone has no ../shared beside it."""
    import re

    bare = re.compile(r"(?<!docs/)\bDESIGN(?:\.md)? §")
    found = [
        f"{path.relative_to(REPO_ROOT)}:{number}"
        for path, _ in _source_files()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if bare.search(line)
    ]
    assert (REPO_ROOT / "docs" / "DESIGN.md").is_file()
    assert not found, "DESIGN references outside the repo (write docs/DESIGN.md §N):\n" + "\n".join(found)
