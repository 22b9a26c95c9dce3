"""The artifact contract: file names, format versions, key folder and the typed manifest.

This module is the reference for ``manifest.json`` (docs/ARTIFACT.md explains it in prose).
The factory writes through it, the edge runtime and central's registry read through it, so a
manifest is validated in one place and one way: :meth:`Manifest.from_json` refuses a missing
field, a field of the wrong type, an unknown field or an unsupported ``format_version`` with a
:class:`~edge_runtime.exceptions.ManifestError` whose ``field`` is the path of the offending
field (``inputs[3].type``). Unknown fields are an error on purpose: a typo in a writer or a
field a newer factory added must not be silently dropped by an older reader; a new field comes
with a new release of this module (and a CHANGELOG entry).

Rules of the typed form:

* a *required* field must be present; some required fields may be ``null`` (``id_field``,
  ``target.label_rule``), which is then ``None`` here;
* an *optional* field may be absent (``None`` here) and, when present, has its declared type;
  the sections added after the first format-1 release (``explain``, ``preprocessing``,
  ``metrics.baseline``, ``search.rejected_at_export``, ``segments``, ``few_labels``) are
  optional, so artifacts built before them still load;
* :meth:`Manifest.to_json` writes exactly what was read: ``Manifest.from_json(d).to_json()
  == d`` for every valid ``d`` (absent stays absent, ``null`` stays ``null``), and
  :func:`manifest_bytes` gives the canonical file bytes that are signed.

Sections only the factory's reports read (``metrics.test``, ``search.config``, ``data``,
``preprocessing``, ``segments``, ``few_labels``, …) are kept as JSON mappings: typing them would
couple every device to the factory's report layout without any reader gaining from it.

Only the standard library here (no numpy): central and the benchmarks import it cheaply.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from edge_runtime.exceptions import ManifestError

__all__ = [
    "CARD_FILE",
    "CARD_HTML_FILE",
    "FORMAT_VERSION",
    "MANIFEST_FILE",
    "MODEL_FILE",
    "PRIVATE_KEY_NAME",
    "PUBLIC_KEY_NAME",
    "SEARCH_LOG_FILE",
    "SIGNATURE_FILE",
    "SUPPORTED_FORMAT_VERSIONS",
    "Budgets",
    "Explain",
    "GoldenSample",
    "InputLayout",
    "InputSpec",
    "Manifest",
    "MeasuredBudget",
    "Metrics",
    "NumberReference",
    "Parity",
    "Reference",
    "Search",
    "Signing",
    "StringReference",
    "Target",
    "default_key_dir",
    "default_public_key_path",
    "manifest_bytes",
    "parse_manifest",
    "read_manifest",
]

FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS: tuple[int, ...] = (1,)

MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
SIGNATURE_FILE = "manifest.sig"
CARD_FILE = "card.md"
CARD_HTML_FILE = "card.html"
SEARCH_LOG_FILE = "search_log.jsonl"

PUBLIC_KEY_NAME = "signing_key.pub.pem"
PRIVATE_KEY_NAME = "signing_key.pem"
KEY_DIR_ENV = "EDGESEG_KEY_DIR"


def default_key_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The key folder: ``$EDGESEG_KEY_DIR``, else ``~/.config/edgeseg/keys``.

    One rule for the factory (which keeps the private key there), the device and central
    (which read the public key there). ``environ`` defaults to ``os.environ``.
    """
    env = os.environ if environ is None else environ
    configured = env.get(KEY_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path("~/.config/edgeseg/keys").expanduser()


def default_public_key_path(environ: Mapping[str, str] | None = None) -> Path:
    """Where the trusted public key is looked for when none is given."""
    return default_key_dir(environ) / PUBLIC_KEY_NAME


# ---------------------------------------------------------------------------- JSON reading
T = TypeVar("T")
_ABSENT: Any = object()


def _json_copy(value: Any) -> Any:
    """A deep copy of a JSON value: a Manifest never shares mutable state with its caller."""
    return copy.deepcopy(value)


class _Fields:
    """Reads one JSON object field by field, naming the path in every error.

    ``done()`` refuses the keys no reader asked for (unknown fields).
    """

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, Mapping):
            raise ManifestError(path or "<manifest>", f"must be an object, got {_kind(data)}")
        self.data = data
        self.path = path
        self.seen: set[str] = set()

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def raw(self, key: str, *, required: bool) -> Any:
        self.seen.add(key)
        if key in self.data:
            return self.data[key]
        if required:
            raise ManifestError(self.at(key), "is missing")
        return _ABSENT

    def get(self, key: str, check: Callable[[Any, str], T]) -> T:
        return check(self.raw(key, required=True), self.at(key))

    def nullable(self, key: str, check: Callable[[Any, str], T]) -> T | None:
        value = self.raw(key, required=True)
        return None if value is None else check(value, self.at(key))

    def optional(self, key: str, check: Callable[[Any, str], T]) -> T | None:
        value = self.raw(key, required=False)
        if value is _ABSENT:
            return None
        return check(value, self.at(key))

    def done(self) -> None:
        unknown = sorted(str(k) for k in self.data if k not in self.seen)
        if unknown:
            raise ManifestError(self.at(unknown[0]), f"is not a field of the format (unknown fields: {unknown})")


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _str(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise ManifestError(path, f"must be a string, got {_kind(value)}")
    return value


def _int(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ManifestError(path, f"must be an integer, got {_kind(value)}")
    return value


def _float(value: Any, path: str) -> float:
    # ints are kept as ints (JSON has one number type; keeping them keeps the bytes identical)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ManifestError(path, f"must be a number, got {_kind(value)}")
    return value


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise ManifestError(path, f"must be true or false, got {_kind(value)}")
    return value


def _object(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ManifestError(path, f"must be an object, got {_kind(value)}")
    return _json_copy(dict(value))  # type: ignore[no-any-return]


def _any(value: Any, path: str) -> Any:
    return _json_copy(value)


def _list_of(check: Callable[[Any, str], T]) -> Callable[[Any, str], tuple[T, ...]]:
    def read(value: Any, path: str) -> tuple[T, ...]:
        if not isinstance(value, list):
            raise ManifestError(path, f"must be a list, got {_kind(value)}")
        return tuple(check(item, f"{path}[{i}]") for i, item in enumerate(value))

    return read


_str_list = _list_of(_str)
_float_list = _list_of(_float)
_object_list = _list_of(_object)


def _put(out: dict[str, Any], key: str, value: Any) -> None:
    """Write an optional field only when it was present (None = absent)."""
    if value is not None:
        out[key] = value


# ---------------------------------------------------------------------------- the parts
@dataclass(frozen=True)
class InputLayout:
    """Column order and missing token of the graph's grouped inputs (``num`` then ``cat``)."""

    num: tuple[str, ...]
    cat: tuple[str, ...]
    missing_token: str

    def __post_init__(self) -> None:  # accept lists from callers; store tuples (hashable, frozen)
        object.__setattr__(self, "num", tuple(self.num))
        object.__setattr__(self, "cat", tuple(self.cat))

    @classmethod
    def from_json(cls, data: Any, path: str = "input_layout") -> InputLayout:
        f = _Fields(data, path)
        layout = cls(
            num=f.get("num", _str_list), cat=f.get("cat", _str_list), missing_token=f.get("missing_token", _str)
        )
        f.done()
        return layout

    @classmethod
    def from_manifest(cls, manifest: Manifest | Mapping[str, Any]) -> InputLayout:
        """The layout of a typed manifest or of a manifest's JSON mapping."""
        if isinstance(manifest, Manifest):
            return manifest.input_layout
        return cls.from_json(manifest.get("input_layout"))

    def to_json(self) -> dict[str, Any]:
        return {"num": list(self.num), "cat": list(self.cat), "missing_token": self.missing_token}


@dataclass(frozen=True)
class InputSpec:
    """One raw input column: its type, whether required, and what training saw.

    Numbers carry ``min``/``max`` (training range); strings carry ``categories`` (seen in
    training) and ``max_length``.
    """

    name: str
    type: Literal["number", "string"]
    required: bool
    missing_in_training: float | None = None
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] | None = None
    max_length: int | None = None

    @classmethod
    def from_json(cls, data: Any, path: str) -> InputSpec:
        f = _Fields(data, path)
        kind = f.get("type", _str)
        if kind not in ("number", "string"):
            raise ManifestError(f.at("type"), f"must be 'number' or 'string', got {kind!r}")
        spec = cls(
            name=f.get("name", _str),
            type="number" if kind == "number" else "string",
            required=f.get("required", _bool),
            missing_in_training=f.optional("missing_in_training", _float),
            min=f.optional("min", _float),
            max=f.optional("max", _float),
            categories=f.optional("categories", _str_list),
            max_length=f.optional("max_length", _int),
        )
        f.done()
        return spec

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "required": self.required}
        _put(out, "missing_in_training", self.missing_in_training)
        _put(out, "min", self.min)
        _put(out, "max", self.max)
        _put(out, "categories", None if self.categories is None else list(self.categories))
        _put(out, "max_length", self.max_length)
        return out


@dataclass(frozen=True)
class Target:
    """What the model predicts: the label column's name and the classes (output order)."""

    name: str
    classes: tuple[str, ...]
    profiles: Mapping[str, Any] | None = None  # per class: count, share, medians (the card)
    label_rule: Mapping[str, Any] | None = None  # how labels were made; null for a given column
    has_label_rule: bool = field(default=True, repr=False)  # absent vs null, for to_json

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))

    @classmethod
    def from_json(cls, data: Any, path: str = "target") -> Target:
        f = _Fields(data, path)
        rule = f.raw("label_rule", required=False)
        target = cls(
            name=f.get("name", _str),
            classes=f.get("classes", _str_list),
            profiles=f.optional("profiles", _object),
            label_rule=None if rule is _ABSENT or rule is None else _object(rule, f.at("label_rule")),
            has_label_rule=rule is not _ABSENT,
        )
        if not target.classes:
            raise ManifestError(f.at("classes"), "must name at least one class")
        f.done()
        return target

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "classes": list(self.classes)}
        _put(out, "profiles", _json_copy(self.profiles))
        if self.has_label_rule:
            out["label_rule"] = _json_copy(self.label_rule)
        return out


@dataclass(frozen=True)
class MeasuredBudget:
    """Latency and size the factory measured on the exported graph."""

    latency_p50_us: float
    latency_p99_us: float
    size_bytes: int
    device_profile: Mapping[str, Any] | None  # the calibrated device the latency was scaled to
    scale: float
    runs: int | None = None

    @classmethod
    def from_json(cls, data: Any, path: str) -> MeasuredBudget:
        f = _Fields(data, path)
        measured = cls(
            latency_p50_us=f.get("latency_p50_us", _float),
            latency_p99_us=f.get("latency_p99_us", _float),
            size_bytes=f.get("size_bytes", _int),
            device_profile=f.nullable("device_profile", _object),
            scale=f.get("scale", _float),
            runs=f.optional("runs", _int),
        )
        f.done()
        return measured

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "latency_p50_us": self.latency_p50_us,
            "latency_p99_us": self.latency_p99_us,
            "size_bytes": self.size_bytes,
            "device_profile": _json_copy(self.device_profile),
            "scale": self.scale,
        }
        _put(out, "runs", self.runs)
        return out


@dataclass(frozen=True)
class Budgets:
    """The single-record latency and size budgets, what was measured, and whether both held."""

    latency_p99_us: float
    size_bytes: int
    measured: MeasuredBudget
    met: bool

    @classmethod
    def from_json(cls, data: Any, path: str = "budgets") -> Budgets:
        f = _Fields(data, path)
        budgets = cls(
            latency_p99_us=f.get("latency_p99_us", _float),
            size_bytes=f.get("size_bytes", _int),
            measured=f.get("measured", MeasuredBudget.from_json),
            met=f.get("met", _bool),
        )
        f.done()
        return budgets

    def to_json(self) -> dict[str, Any]:
        return {
            "latency_p99_us": self.latency_p99_us,
            "size_bytes": self.size_bytes,
            "measured": self.measured.to_json(),
            "met": self.met,
        }


@dataclass(frozen=True)
class Metrics:
    """Held-out quality of the exported graph (``test`` is the factory's report mapping)."""

    metric: str
    test: Mapping[str, Any]
    n_train: int
    n_val: int
    n_test: int
    validation_quality: float | None = None
    baseline: Mapping[str, Any] | None = None  # interpretable baselines on the same test rows

    @classmethod
    def from_json(cls, data: Any, path: str = "metrics") -> Metrics:
        f = _Fields(data, path)
        metrics = cls(
            metric=f.get("metric", _str),
            test=f.get("test", _object),
            n_train=f.get("n_train", _int),
            n_val=f.get("n_val", _int),
            n_test=f.get("n_test", _int),
            validation_quality=f.optional("validation_quality", _float),
            baseline=f.optional("baseline", _object),
        )
        f.done()
        return metrics

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "metric": self.metric,
            "test": _json_copy(self.test),
            "n_train": self.n_train,
            "n_val": self.n_val,
            "n_test": self.n_test,
        }
        _put(out, "validation_quality", self.validation_quality)
        _put(out, "baseline", _json_copy(self.baseline))
        return out


@dataclass(frozen=True)
class Search:
    """How the model was chosen: the winning trial and the search that found it."""

    learner: str
    config: Mapping[str, Any]
    trial_index: int
    trials: int
    feasible_trials: int
    time_budget_s: float
    wall_time_s: float
    seed: int
    estimator_list: tuple[str, ...]
    rejected_at_export: tuple[Mapping[str, Any], ...] | None = None  # better trials passed over

    @classmethod
    def from_json(cls, data: Any, path: str = "search") -> Search:
        f = _Fields(data, path)
        search = cls(
            learner=f.get("learner", _str),
            config=f.get("config", _object),
            trial_index=f.get("trial_index", _int),
            trials=f.get("trials", _int),
            feasible_trials=f.get("feasible_trials", _int),
            time_budget_s=f.get("time_budget_s", _float),
            wall_time_s=f.get("wall_time_s", _float),
            seed=f.get("seed", _int),
            estimator_list=f.get("estimator_list", _str_list),
            rejected_at_export=f.optional("rejected_at_export", _object_list),
        )
        f.done()
        return search

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "learner": self.learner,
            "config": _json_copy(self.config),
            "trial_index": self.trial_index,
            "trials": self.trials,
            "feasible_trials": self.feasible_trials,
            "time_budget_s": self.time_budget_s,
            "wall_time_s": self.wall_time_s,
            "seed": self.seed,
            "estimator_list": list(self.estimator_list),
        }
        if self.rejected_at_export is not None:
            out["rejected_at_export"] = [_json_copy(r) for r in self.rejected_at_export]
        return out


@dataclass(frozen=True)
class Parity:
    """The factory's parity gate: the exported graph against the native pipeline."""

    rows: int
    rows_with_missing: int
    rows_with_unseen_category: int
    label_agreement: float
    max_abs_prob_diff: float
    passed: bool

    @classmethod
    def from_json(cls, data: Any, path: str = "parity") -> Parity:
        f = _Fields(data, path)
        parity = cls(
            rows=f.get("rows", _int),
            rows_with_missing=f.get("rows_with_missing", _int),
            rows_with_unseen_category=f.get("rows_with_unseen_category", _int),
            label_agreement=f.get("label_agreement", _float),
            max_abs_prob_diff=f.get("max_abs_prob_diff", _float),
            passed=f.get("passed", _bool),
        )
        f.done()
        return parity

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "rows_with_missing": self.rows_with_missing,
            "rows_with_unseen_category": self.rows_with_unseen_category,
            "label_agreement": self.label_agreement,
            "max_abs_prob_diff": self.max_abs_prob_diff,
            "passed": self.passed,
        }


@dataclass(frozen=True)
class NumberReference:
    """Training histogram of a number: k+1 ``bin_edges``, k bin shares then the missing share.

    Value ``v`` is in bin ``i`` when ``edges[i] <= v < edges[i+1]``; below the first edge ->
    bin 0, at/above the last -> bin k-1 (docs/ARTIFACT.md, "Reference statistics").
    """

    bin_edges: tuple[float, ...]
    proportions: tuple[float, ...]

    @property
    def expected(self) -> tuple[float, ...]:
        """Shares in the order of the device's drift counts (k bins, then missing)."""
        return self.proportions

    @classmethod
    def from_json(cls, data: Any, path: str) -> NumberReference:
        f = _Fields(data, path)
        f.raw("type", required=True)  # checked by the caller
        ref = cls(bin_edges=f.get("bin_edges", _float_list), proportions=f.get("proportions", _float_list))
        f.done()
        if len(ref.bin_edges) < 2:
            raise ManifestError(f.at("bin_edges"), f"needs at least 2 edges, got {len(ref.bin_edges)}")
        if len(ref.proportions) != len(ref.bin_edges):
            raise ManifestError(
                f.at("proportions"),
                f"needs {len(ref.bin_edges)} entries (one per bin, then missing), got {len(ref.proportions)}",
            )
        return ref

    def to_json(self) -> dict[str, Any]:
        return {"type": "number", "bin_edges": list(self.bin_edges), "proportions": list(self.proportions)}


@dataclass(frozen=True)
class StringReference:
    """Training shares of a string: one per category, then ``other`` (unseen) and ``missing``."""

    categories: tuple[str, ...]
    proportions: tuple[float, ...]
    other: float
    missing: float

    @property
    def expected(self) -> tuple[float, ...]:
        """Shares in the order of the device's drift counts (categories, other, missing)."""
        return (*self.proportions, self.other, self.missing)

    @classmethod
    def from_json(cls, data: Any, path: str) -> StringReference:
        f = _Fields(data, path)
        f.raw("type", required=True)
        ref = cls(
            categories=f.get("categories", _str_list),
            proportions=f.get("proportions", _float_list),
            other=f.get("other", _float),
            missing=f.get("missing", _float),
        )
        f.done()
        if len(ref.proportions) != len(ref.categories):
            raise ManifestError(
                f.at("proportions"),
                f"needs {len(ref.categories)} entries (one per category), got {len(ref.proportions)}",
            )
        return ref

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "string",
            "categories": list(self.categories),
            "proportions": list(self.proportions),
            "other": self.other,
            "missing": self.missing,
        }


Reference = NumberReference | StringReference


def _reference(value: Any, path: str) -> Reference:
    if not isinstance(value, Mapping):
        raise ManifestError(path, f"must be an object, got {_kind(value)}")
    kind = value.get("type")
    if kind == "number":
        return NumberReference.from_json(value, path)
    if kind == "string":
        return StringReference.from_json(value, path)
    if "type" not in value:
        raise ManifestError(f"{path}.type", "is missing")
    raise ManifestError(f"{path}.type", f"must be 'number' or 'string', got {kind!r}")


def _references(value: Any, path: str) -> Mapping[str, Reference]:
    if not isinstance(value, Mapping):
        raise ManifestError(path, f"must be an object, got {_kind(value)}")
    return {str(name): _reference(ref, f"{path}.{name}") for name, ref in value.items()}


@dataclass(frozen=True)
class GoldenSample:
    """A record with the label and probabilities the graph must reproduce on every device."""

    record: Mapping[str, Any]
    label: str
    probabilities: tuple[float, ...]

    @classmethod
    def from_json(cls, data: Any, path: str) -> GoldenSample:
        f = _Fields(data, path)
        sample = cls(
            record=f.get("record", _object),
            label=f.get("label", _str),
            probabilities=f.get("probabilities", _float_list),
        )
        f.done()
        return sample

    def to_json(self) -> dict[str, Any]:
        return {"record": _json_copy(self.record), "label": self.label, "probabilities": list(self.probabilities)}


@dataclass(frozen=True)
class Explain:
    """What the device needs to explain a record, and the factory's global SHAP ranking."""

    global_importance: Any  # the factory's SHAP report (the card reads it)
    reference_record: Mapping[str, Any]  # per input: training median (numbers) / null (strings)
    device_method: str

    @classmethod
    def from_json(cls, data: Any, path: str = "explain") -> Explain:
        f = _Fields(data, path)
        explain = cls(
            global_importance=f.get("global_importance", _any),
            reference_record=f.get("reference_record", _object),
            device_method=f.get("device_method", _str),
        )
        f.done()
        return explain

    def to_json(self) -> dict[str, Any]:
        return {
            "global_importance": _json_copy(self.global_importance),
            "reference_record": _json_copy(self.reference_record),
            "device_method": self.device_method,
        }


@dataclass(frozen=True)
class Signing:
    """Which key signed the manifest: the first 16 hex chars of sha256 of the raw public key."""

    key_id: str

    @classmethod
    def from_json(cls, data: Any, path: str = "signing") -> Signing:
        f = _Fields(data, path)
        signing = cls(key_id=f.get("key_id", _str))
        f.done()
        return signing

    def to_json(self) -> dict[str, Any]:
        return {"key_id": self.key_id}


# ---------------------------------------------------------------------------- the manifest
def _check_format_version(data: Mapping[str, Any]) -> int:
    if "format_version" not in data:
        raise ManifestError("format_version", "is missing")
    version = data["format_version"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise ManifestError("format_version", f"must be an integer, got {_kind(version)}")
    if version not in SUPPORTED_FORMAT_VERSIONS:
        raise ManifestError(
            "format_version",
            f"{version} is not supported (this runtime reads {list(SUPPORTED_FORMAT_VERSIONS)}); "
            "rebuild the artifact with a matching factory or update the runtime",
        )
    return version


@dataclass(frozen=True)
class Manifest:
    """A validated ``manifest.json`` (docs/ARTIFACT.md). Build it with :meth:`from_json`."""

    format_version: int
    name: str
    version: str
    model_version: str  # "<name>/<version>": the model's id everywhere
    input_layout: InputLayout
    inputs: tuple[InputSpec, ...]
    target: Target
    reference: Mapping[str, Reference]
    golden_samples: tuple[GoldenSample, ...]
    onnx_sha256: str
    created_at: str | None = None
    task: str | None = None
    id_field: str | None = None  # the record field the edge pseudonymises (may be null)
    onnx_bytes: int | None = None
    metrics: Metrics | None = None
    budgets: Budgets | None = None
    search: Search | None = None
    parity: Parity | None = None
    explain: Explain | None = None
    preprocessing: Mapping[str, Any] | None = None
    segments: Mapping[str, Any] | None = None
    few_labels: Mapping[str, Any] | None = None
    libraries: Mapping[str, str] | None = None
    data: Mapping[str, Any] | None = None
    signing: Signing | None = None
    has_id_field: bool = field(default=True, repr=False)  # absent vs null, for to_json

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "golden_samples", tuple(self.golden_samples))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Manifest:
        """Validate a parsed manifest.json; ManifestError names the first offending field."""
        if not isinstance(data, Mapping):
            raise ManifestError("<manifest>", f"must be a JSON object, got {_kind(data)}")
        _check_format_version(data)
        f = _Fields(data, "")
        id_field = f.raw("id_field", required=False)
        manifest = cls(
            format_version=f.get("format_version", _int),
            name=f.get("name", _str),
            version=f.get("version", _str),
            model_version=f.get("model_version", _str),
            input_layout=f.get("input_layout", InputLayout.from_json),
            inputs=f.get("inputs", _list_of(InputSpec.from_json)),
            target=f.get("target", Target.from_json),
            reference=f.get("reference", _references),
            golden_samples=f.get("golden_samples", _list_of(GoldenSample.from_json)),
            onnx_sha256=f.get("onnx_sha256", _str),
            created_at=f.optional("created_at", _str),
            task=f.optional("task", _str),
            id_field=None if id_field is _ABSENT or id_field is None else _str(id_field, "id_field"),
            has_id_field=id_field is not _ABSENT,
            onnx_bytes=f.optional("onnx_bytes", _int),
            metrics=f.optional("metrics", Metrics.from_json),
            budgets=f.optional("budgets", Budgets.from_json),
            search=f.optional("search", Search.from_json),
            parity=f.optional("parity", Parity.from_json),
            explain=f.optional("explain", Explain.from_json),
            preprocessing=f.optional("preprocessing", _object),
            segments=f.optional("segments", _object),
            few_labels=f.optional("few_labels", _object),
            libraries=f.optional("libraries", _libraries),
            data=f.optional("data", _object),
            signing=f.optional("signing", Signing.from_json),
        )
        f.done()
        manifest._check_consistency()
        return manifest

    def _check_consistency(self) -> None:
        """Cross-field rules a reader relies on (layout vs inputs, golden width vs classes)."""
        specs = {spec.name: spec for spec in self.inputs}
        for group, kind in (("num", "number"), ("cat", "string")):
            for i, name in enumerate(getattr(self.input_layout, group)):
                spec = specs.get(name)
                if spec is None:
                    raise ManifestError(f"input_layout.{group}[{i}]", f"names {name!r}, which is not in inputs")
                if spec.type != kind:
                    raise ManifestError(
                        f"inputs[{self.inputs.index(spec)}].type",
                        f"{name!r} is in input_layout.{group}, so its type must be {kind!r}, got {spec.type!r}",
                    )
        for i, golden in enumerate(self.golden_samples):
            if len(golden.probabilities) != len(self.target.classes):
                raise ManifestError(
                    f"golden_samples[{i}].probabilities",
                    f"has {len(golden.probabilities)} entries for {len(self.target.classes)} classes",
                )

    def to_json(self) -> dict[str, Any]:
        """The JSON mapping this manifest was read from (same fields, same values)."""
        out: dict[str, Any] = {
            "format_version": self.format_version,
            "name": self.name,
            "version": self.version,
            "model_version": self.model_version,
            "input_layout": self.input_layout.to_json(),
            "inputs": [spec.to_json() for spec in self.inputs],
            "target": self.target.to_json(),
            "reference": {name: ref.to_json() for name, ref in self.reference.items()},
            "golden_samples": [golden.to_json() for golden in self.golden_samples],
            "onnx_sha256": self.onnx_sha256,
        }
        _put(out, "created_at", self.created_at)
        _put(out, "task", self.task)
        if self.has_id_field:
            out["id_field"] = self.id_field
        _put(out, "onnx_bytes", self.onnx_bytes)
        for key in ("metrics", "budgets", "search", "parity", "explain", "signing"):
            part = getattr(self, key)
            _put(out, key, None if part is None else part.to_json())
        for key in ("preprocessing", "segments", "few_labels", "libraries", "data"):
            _put(out, key, _json_copy(getattr(self, key)))
        return out

    @property
    def classes(self) -> tuple[str, ...]:
        """The class names, in the order of the graph's probability columns."""
        return self.target.classes

    def input(self, name: str) -> InputSpec:
        """The spec of one input column (KeyError naming it when the model has none)."""
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise KeyError(f"model {self.model_version} has no input {name!r}")


def _libraries(value: Any, path: str) -> Mapping[str, str]:
    mapping = _object(value, path)
    for name, version in mapping.items():
        _str(version, f"{path}.{name}")
    return mapping


def manifest_bytes(manifest: Manifest) -> bytes:
    """The canonical manifest.json bytes (sorted keys, 2-space indent, UTF-8, final newline).

    These are the exact bytes the factory writes and signs; NaN/inf are refused (not JSON).
    """
    return (json.dumps(manifest.to_json(), indent=2, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")


def parse_manifest(data: bytes | str, *, source: str = MANIFEST_FILE) -> Manifest:
    """Parse and validate manifest bytes (ManifestError when they are not a JSON object)."""
    try:
        parsed = json.loads(data)
    except ValueError as exc:
        raise ManifestError("<manifest>", f"{source} is not valid JSON: {exc}") from exc
    return Manifest.from_json(parsed)


def read_manifest(artifact_dir: str | Path) -> Manifest:
    """Read and validate ``<artifact_dir>/manifest.json`` (no signature check: see signing)."""
    path = Path(artifact_dir) / MANIFEST_FILE
    try:
        body = path.read_bytes()
    except OSError as exc:
        raise ManifestError("<manifest>", f"cannot read {str(path)!r}: {exc.strerror}") from exc
    return parse_manifest(body, source=str(path))
