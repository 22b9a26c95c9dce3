"""What a model expects, for the person writing records: ``schema`` and ``example``.

``edge-runtime schema ARTIFACT`` prints one line per input (name, type, unit, required under the
strict contract, allowed values or training range, an example value, its meaning);
``edge-runtime example ARTIFACT`` writes one JSONL record that the strict contract accepts, so
``edge-runtime example A | edge-runtime classify --artifact A --dry-run`` works on any model.
Both read ``manifest.json`` without verifying the signature: they describe, they do not serve.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, TextIO

from edge_runtime.artifact import InputSpec, Manifest, StringReference, read_manifest
from edge_runtime.cli._common import UsageError
from edge_runtime.exceptions import ModelLoadError

__all__ = ["example_record", "example_records", "input_rows", "register"]

_MAX_SHOWN_CATEGORIES = 12
_EXAMPLE_ID = "17850"  # a customer id of the bundled log's shape (any string works)
_FACTORS = (1.0, 2.0, 4.0, 0.5, 8.0)  # example --count: how golden customers' numbers are scaled


def register(sub: Any) -> None:
    """Add ``schema`` and ``example`` to ``edge-runtime``'s subparsers."""
    p = sub.add_parser("schema", help="print the inputs a model expects (type, unit, required, range, example)")
    p.add_argument("artifact_dir", type=Path)
    p.add_argument("--json", action="store_true", help="one JSON object per input instead of a table")
    p.set_defaults(handler=run_schema)

    p = sub.add_parser("example", help="write valid JSONL records for a model (one by default)")
    p.add_argument("artifact_dir", type=Path)
    p.add_argument(
        "--count", type=int, default=1,
        help="records to write: the model's golden customers, their numbers scaled by 1, 2, 4, 0.5, 8 "
        "(clipped to the training range) so a demo sees several segments; ids 10001, 10002, …",
    )  # fmt: skip
    p.set_defaults(handler=run_example)


def _manifest(artifact_dir: Path) -> Manifest:
    try:
        return read_manifest(artifact_dir)
    except ModelLoadError:
        raise
    except OSError as exc:
        raise UsageError(f"cannot read the model at {str(artifact_dir)!r}: {exc.strerror or exc}") from exc


def _required(spec: InputSpec) -> bool:
    """Required under the strict contract (``edge_runtime._schema``)."""
    return spec.required or spec.missing_in_training == 0.0


def _number(x: float) -> float | int:
    """A readable example or bound: 6 significant digits, an int when whole."""
    rounded = float(f"{x:.6g}")
    return int(rounded) if rounded.is_integer() else rounded


def _example_value(manifest: Manifest, spec: InputSpec) -> Any:
    """A real customer's value (the first golden sample that has one), else a typical value."""
    for golden in manifest.golden_samples:
        value = golden.record.get(spec.name)
        if value is not None and value != "":
            return _number(float(value)) if spec.type == "number" else value
    reference = manifest.reference.get(spec.name)
    if isinstance(reference, StringReference) and reference.categories:
        shares = list(reference.proportions)
        return reference.categories[shares.index(max(shares))]
    if spec.type == "string":
        return (spec.categories or ("text",))[0]
    low, high = spec.min or 0.0, spec.max if spec.max is not None else 1.0
    return _number((low + high) / 2)


def example_record(manifest: Manifest) -> dict[str, Any]:
    """One record the strict contract accepts: the id field, then every input in manifest order."""
    record: dict[str, Any] = {}
    if manifest.id_field is not None:
        record[manifest.id_field] = _EXAMPLE_ID
    for spec in manifest.inputs:
        record[spec.name] = _example_value(manifest, spec)
    return record


def input_rows(manifest: Manifest) -> list[dict[str, Any]]:
    """One mapping per input: name, type, unit, required, allowed, example, meaning."""
    dictionary = manifest.feature_dictionary or {}
    rows = []
    for spec in manifest.inputs:
        entry = dictionary.get(spec.name) or {}
        if spec.type == "string":
            allowed: Any = list(spec.categories or ())
        else:
            allowed = [None if b is None else _number(b) for b in (spec.min, spec.max)]
        rows.append(
            {
                "name": spec.name,
                "type": spec.type,
                "unit": entry.get("unit", ""),
                "required": _required(spec),
                "allowed": allowed,
                "example": _example_value(manifest, spec),
                "meaning": entry.get("meaning", ""),
            }
        )
    return rows


def _allowed_text(row: dict[str, Any]) -> str:
    allowed = row["allowed"]
    if row["type"] == "number":
        low, high = ("…" if b is None else f"{b:g}" for b in allowed)
        return f"[{low}, {high}] in training"
    shown = ", ".join(allowed[:_MAX_SHOWN_CATEGORIES])
    more = len(allowed) - _MAX_SHOWN_CATEGORIES
    return shown + (f", … ({more} more)" if more > 0 else "") + " (others: counted as unseen)"


def run_schema(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    manifest = _manifest(args.artifact_dir)
    rows = input_rows(manifest)
    if args.json:
        for row in rows:
            stdout.write(json.dumps(row) + "\n")
        return 0
    stdout.write(f"model {manifest.model_version}: {len(rows)} inputs, classes {', '.join(manifest.classes)}\n")
    if manifest.id_field is not None:
        stdout.write(f"id field {manifest.id_field!r}: the customer id, pseudonymised on the device (not an input)\n")
    header = ("name", "type", "unit", "required", "example", "allowed values / range")
    table = [
        (row["name"], row["type"], row["unit"] or "-", "yes" if row["required"] else "no",
         json.dumps(row["example"]), _allowed_text(row))
        for row in rows
    ]  # fmt: skip
    widths = [max(len(str(line[i])) for line in (header, *table)) for i in range(len(header) - 1)]
    for line in (header, *table):
        cells = [str(cell).ljust(width) for cell, width in zip(line[:-1], widths, strict=True)]
        stdout.write("  ".join([*cells, str(line[-1])]).rstrip() + "\n")
    meanings = [(row["name"], row["meaning"]) for row in rows if row["meaning"]]
    if meanings:
        stdout.write("\nmeaning:\n")
        for name, meaning in meanings:
            stdout.write(f"  {name}: {meaning}\n")
    stdout.write(
        "\nrequired = the strict contract (default) refuses a record without it (training never had it "
        "missing); a field not listed here is refused naming the closest name (--contract lenient ignores it).\n"
    )
    return 0


def example_records(manifest: Manifest, count: int) -> list[dict[str, Any]]:
    """``count`` valid records: golden customers with scaled numbers (see ``example --count``)."""
    base = example_record(manifest)
    goldens = [g.record for g in manifest.golden_samples] or [base]
    out = []
    for i in range(count):
        golden, factor = goldens[i % len(goldens)], _FACTORS[(i // len(goldens)) % len(_FACTORS)]
        record = dict(base)
        if manifest.id_field is not None:
            record[manifest.id_field] = str(10001 + i)
        for spec in manifest.inputs:
            value = golden.get(spec.name)
            if value is None or value == "":
                continue  # keep the typical value: a required input is never left out
            if spec.type == "number":
                scaled = float(value) * factor
                low = spec.min if spec.min is not None else scaled
                high = spec.max if spec.max is not None else scaled
                value = min(max(_number(scaled), low), high)  # rounded, then inside the range
            record[spec.name] = value
        out.append(record)
    return out


def run_example(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    if args.count < 1:
        raise UsageError(f"--count must be >= 1, got {args.count}")
    manifest = _manifest(args.artifact_dir)
    records = [example_record(manifest)] if args.count == 1 else example_records(manifest, args.count)
    for record in records:
        stdout.write(json.dumps(record) + "\n")
    return 0
