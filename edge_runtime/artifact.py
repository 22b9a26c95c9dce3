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
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from edge_runtime.exceptions import ManifestError

__all__ = [
    "CARD_FILE",
    "CARD_HTML_FILE",
    "DEVICE_GRAPHS",
    "FLOAT_MODEL_FILE",
    "FORMAT_VERSION",
    "MANIFEST_FILE",
    "MODEL_FILE",
    "PRIVATE_KEY_NAME",
    "PUBLIC_KEY_NAME",
    "SEARCH_LOG_FILE",
    "SIGNATURE_FILE",
    "SUPPORTED_FORMAT_VERSIONS",
    "Budgets",
    "DateInput",
    "Explain",
    "FloatGraph",
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
FLOAT_MODEL_FILE = "model_float.onnx"  # optional: the float-only graph (FloatGraph)
DEVICE_GRAPHS = ("raw", "float")  # manifest.device_graph: which graph the device runs

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


# ---------------------------------------------------------------------------- JSON checks
T = TypeVar("T")
Check = Callable[[Any, str], Any]  # (JSON value, field path) -> typed value, or ManifestError
_ABSENT: Any = object()


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _at(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


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
    """A JSON object, deep-copied: a Manifest never shares mutable state with its caller."""
    if not isinstance(value, Mapping):
        raise ManifestError(path, f"must be an object, got {_kind(value)}")
    return copy.deepcopy(dict(value))


def _any(value: Any, path: str) -> Any:
    return copy.deepcopy(value)


def _choice(*allowed: str) -> Callable[[Any, str], str]:
    def read(value: Any, path: str) -> str:
        text = _str(value, path)
        if text not in allowed:
            raise ManifestError(path, f"must be {' or '.join(map(repr, allowed))}, got {text!r}")
        return text

    return read


def _list_of(check: Callable[[Any, str], T]) -> Callable[[Any, str], tuple[T, ...]]:
    def read(value: Any, path: str) -> tuple[T, ...]:
        if not isinstance(value, list):
            raise ManifestError(path, f"must be a list, got {_kind(value)}")
        return tuple(check(item, f"{path}[{i}]") for i, item in enumerate(value))

    return read


_str_list = _list_of(_str)
_float_list = _list_of(_float)
_object_list = _list_of(_object)


def _libraries(value: Any, path: str) -> Mapping[str, str]:
    mapping = _object(value, path)
    for name, version in mapping.items():
        _str(version, _at(path, name))
    return mapping


# How a field may appear in JSON: "required" (present, not null), "nullable" (present, may be
# null), "optional" (may be absent, never null), "optional_nullable" (may be absent or null;
# which of the two is kept in the part's ``has_<name>`` flag so to_json writes it back).
Presence = Literal["required", "nullable", "optional", "optional_nullable"]


def _field(check: Check, presence: Presence = "required") -> Any:
    if presence in ("optional", "optional_nullable"):
        return field(default=None, metadata={"check": check, "presence": presence})
    return field(metadata={"check": check, "presence": presence})


def _presence_flag() -> Any:
    """``has_<name>`` of an optional_nullable field: True when the JSON held the key."""
    return field(default=True, repr=False)


def _to_json(value: Any) -> Any:
    if isinstance(value, _Part):
        return value.to_json()
    if isinstance(value, (tuple, list)):
        return [_to_json(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _to_json(item) for key, item in value.items()}
    return value


P = TypeVar("P", bound="_Part")


class _Part:
    """Base of the manifest's dataclasses: JSON is read and written from the field declarations.

    Every dataclass field made with :func:`_field` is a JSON key of the same name; its check
    converts and validates the value (naming the field path on error); keys no field declares
    are refused. ``_validate`` adds the rules that span fields.
    """

    PATH: ClassVar[str] = ""  # the part's path inside manifest.json, for error messages

    @classmethod
    def from_json(cls: type[P], data: Any, path: str | None = None) -> P:
        """Validate one JSON object (ManifestError names the first offending field)."""
        where = cls.PATH if path is None else path
        if not isinstance(data, Mapping):
            raise ManifestError(where or "<manifest>", f"must be an object, got {_kind(data)}")
        declared = [spec for spec in fields(cls) if "check" in spec.metadata]  # type: ignore[arg-type]
        unknown = sorted(str(key) for key in data if key not in {spec.name for spec in declared})
        values: dict[str, Any] = {}
        for spec in declared:
            presence, key = spec.metadata["presence"], spec.name
            value = data.get(key, _ABSENT)
            if presence == "optional_nullable":
                values[f"has_{key}"] = value is not _ABSENT
            if value is _ABSENT:
                if presence in ("required", "nullable"):
                    raise ManifestError(_at(where, key), "is missing")
            elif value is None and presence in ("nullable", "optional_nullable"):
                values[key] = None
            else:
                values[key] = spec.metadata["check"](value, _at(where, key))
        if unknown:
            raise ManifestError(_at(where, unknown[0]), f"is not a field of the format (unknown fields: {unknown})")
        part = cls(**values)
        part._validate(where)
        return part

    def _validate(self, path: str) -> None:
        """Rules across fields; the default has none."""

    def to_json(self) -> dict[str, Any]:
        """The JSON object this part was read from (same keys, same values)."""
        out: dict[str, Any] = {}
        for spec in fields(self):  # type: ignore[arg-type]
            if "check" not in spec.metadata:
                continue
            value = getattr(self, spec.name)
            presence = spec.metadata["presence"]
            if value is None and (
                presence == "optional" or (presence == "optional_nullable" and not getattr(self, f"has_{spec.name}"))
            ):
                continue
            out[spec.name] = _to_json(value)
        return out


# ---------------------------------------------------------------------------- the parts
@dataclass(frozen=True)
class InputLayout(_Part):
    """Column order and missing token of the graph's grouped inputs (``num`` then ``cat``)."""

    PATH: ClassVar[str] = "input_layout"
    num: tuple[str, ...] = _field(_str_list)
    cat: tuple[str, ...] = _field(_str_list)
    missing_token: str = _field(_str)

    def __post_init__(self) -> None:  # accept lists from callers; store tuples (hashable, frozen)
        object.__setattr__(self, "num", tuple(self.num))
        object.__setattr__(self, "cat", tuple(self.cat))

    @classmethod
    def from_manifest(cls, manifest: Manifest | Mapping[str, Any]) -> InputLayout:
        """The layout of a typed manifest or of a manifest's JSON mapping."""
        if isinstance(manifest, Manifest):
            return manifest.input_layout
        return cls.from_json(manifest.get("input_layout"))


@dataclass(frozen=True)
class InputSpec(_Part):
    """One raw input column: its type, whether required, and what training saw.

    Numbers carry ``min``/``max`` (training range); strings carry ``categories`` (seen in
    training) and ``max_length``.
    """

    name: str = _field(_str)
    type: Literal["number", "string"] = _field(_choice("number", "string"))
    required: bool = _field(_bool)
    missing_in_training: float | None = _field(_float, "optional")
    min: float | None = _field(_float, "optional")
    max: float | None = _field(_float, "optional")
    categories: tuple[str, ...] | None = _field(_str_list, "optional")
    max_length: int | None = _field(_int, "optional")


@dataclass(frozen=True)
class Target(_Part):
    """What the model predicts: the label column's name and the classes (output order)."""

    PATH: ClassVar[str] = "target"
    name: str = _field(_str)
    classes: tuple[str, ...] = _field(_str_list)
    profiles: Mapping[str, Any] | None = _field(_object, "optional")  # per class: count, share, medians
    label_rule: Mapping[str, Any] | None = _field(_object, "optional_nullable")  # null for a given column
    has_label_rule: bool = _presence_flag()

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))

    def _validate(self, path: str) -> None:
        if not self.classes:
            raise ManifestError(_at(path, "classes"), "must name at least one class")


@dataclass(frozen=True)
class MeasuredBudget(_Part):
    """Latency and size the factory measured on the exported graph."""

    PATH: ClassVar[str] = "budgets.measured"
    latency_p50_us: float = _field(_float)
    latency_p99_us: float = _field(_float)
    size_bytes: int = _field(_int)
    device_profile: Mapping[str, Any] | None = _field(_object, "nullable")  # the device latency was scaled to
    scale: float = _field(_float)
    runs: int | None = _field(_int, "optional")


@dataclass(frozen=True)
class Budgets(_Part):
    """The single-record latency and size budgets, what was measured, and whether both held."""

    PATH: ClassVar[str] = "budgets"
    latency_p99_us: float = _field(_float)
    size_bytes: int = _field(_int)
    measured: MeasuredBudget = _field(MeasuredBudget.from_json)
    met: bool = _field(_bool)


@dataclass(frozen=True)
class Metrics(_Part):
    """Held-out quality of the exported graph (``test`` is the factory's report mapping)."""

    PATH: ClassVar[str] = "metrics"
    metric: str = _field(_str)
    test: Mapping[str, Any] = _field(_object)
    n_train: int = _field(_int)
    n_val: int = _field(_int)
    n_test: int = _field(_int)
    validation_quality: float | None = _field(_float, "optional")
    baseline: Mapping[str, Any] | None = _field(_object, "optional")  # interpretable baselines, same test rows


@dataclass(frozen=True)
class Search(_Part):
    """How the model was chosen: the winning trial and the search that found it."""

    PATH: ClassVar[str] = "search"
    learner: str = _field(_str)
    config: Mapping[str, Any] = _field(_object)
    trial_index: int = _field(_int)
    trials: int = _field(_int)
    feasible_trials: int = _field(_int)
    time_budget_s: float = _field(_float)
    wall_time_s: float = _field(_float)
    seed: int = _field(_int)
    estimator_list: tuple[str, ...] = _field(_str_list)
    rejected_at_export: tuple[Mapping[str, Any], ...] | None = _field(_object_list, "optional")  # passed over
    # How the candidates were ordered before export: {"method": "cv", "folds", "ranked": [...]} or
    # {"method": "holdout", "reason"} (factory/_rerank.py); absent in artifacts from before it.
    selection: Mapping[str, Any] | None = _field(_object, "optional")


@dataclass(frozen=True)
class Parity(_Part):
    """The factory's parity gate: the exported graph against the native pipeline."""

    PATH: ClassVar[str] = "parity"
    rows: int = _field(_int)
    rows_with_missing: int = _field(_int)
    rows_with_unseen_category: int = _field(_int)
    label_agreement: float = _field(_float)
    max_abs_prob_diff: float = _field(_float)
    passed: bool = _field(_bool)


@dataclass(frozen=True)
class NumberReference(_Part):
    """Training histogram of a number: k+1 ``bin_edges``, k bin shares then the missing share.

    Value ``v`` is in bin ``i`` when ``edges[i] <= v < edges[i+1]``; below the first edge ->
    bin 0, at/above the last -> bin k-1 (docs/ARTIFACT.md, "Reference statistics").
    """

    bin_edges: tuple[float, ...] = _field(_float_list)
    proportions: tuple[float, ...] = _field(_float_list)
    type: Literal["number"] = field(default="number", metadata={"check": _choice("number"), "presence": "required"})

    @property
    def expected(self) -> tuple[float, ...]:
        """Shares in the order of the device's drift counts (k bins, then missing)."""
        return self.proportions

    def _validate(self, path: str) -> None:
        if len(self.bin_edges) < 2:
            raise ManifestError(_at(path, "bin_edges"), f"needs at least 2 edges, got {len(self.bin_edges)}")
        if len(self.proportions) != len(self.bin_edges):
            wanted = f"needs {len(self.bin_edges)} entries (one per bin, then missing)"
            raise ManifestError(_at(path, "proportions"), f"{wanted}, got {len(self.proportions)}")


@dataclass(frozen=True)
class StringReference(_Part):
    """Training shares of a string: one per category, then ``other`` (unseen) and ``missing``."""

    categories: tuple[str, ...] = _field(_str_list)
    proportions: tuple[float, ...] = _field(_float_list)
    other: float = _field(_float)
    missing: float = _field(_float)
    type: Literal["string"] = field(default="string", metadata={"check": _choice("string"), "presence": "required"})

    @property
    def expected(self) -> tuple[float, ...]:
        """Shares in the order of the device's drift counts (categories, other, missing)."""
        return (*self.proportions, self.other, self.missing)

    def _validate(self, path: str) -> None:
        if len(self.proportions) != len(self.categories):
            wanted = f"needs {len(self.categories)} entries (one per category)"
            raise ManifestError(_at(path, "proportions"), f"{wanted}, got {len(self.proportions)}")


Reference = NumberReference | StringReference


def _reference(value: Any, path: str) -> Reference:
    if not isinstance(value, Mapping):
        raise ManifestError(path, f"must be an object, got {_kind(value)}")
    if "type" not in value:
        raise ManifestError(_at(path, "type"), "is missing")
    kind = _choice("number", "string")(value["type"], _at(path, "type"))
    part = NumberReference if kind == "number" else StringReference
    return part.from_json(value, path)


def _references(value: Any, path: str) -> Mapping[str, Reference]:
    if not isinstance(value, Mapping):
        raise ManifestError(path, f"must be an object, got {_kind(value)}")
    return {str(name): _reference(ref, _at(path, str(name))) for name, ref in value.items()}


@dataclass(frozen=True)
class GoldenSample(_Part):
    """A record with the label and probabilities the graph must reproduce on every device."""

    record: Mapping[str, Any] = _field(_object)
    label: str = _field(_str)
    probabilities: tuple[float, ...] = _field(_float_list)


@dataclass(frozen=True)
class Explain(_Part):
    """What the device needs to explain a record, and the factory's global SHAP ranking."""

    PATH: ClassVar[str] = "explain"
    global_importance: Any = _field(_any)  # the factory's SHAP report (the card reads it)
    reference_record: Mapping[str, Any] = _field(_object)  # per input: training median / null (strings)
    device_method: str = _field(_str)


@dataclass(frozen=True)
class Signing(_Part):
    """Which key signed the manifest: the first 16 hex chars of sha256 of the raw public key."""

    PATH: ClassVar[str] = "signing"
    key_id: str = _field(_str)


@dataclass(frozen=True)
class FloatGraph(_Part):
    """``model_float.onnx``: the same trees fed category codes instead of strings (optional).

    The factory derives it from ``model.onnx`` (string input and ``LabelEncoder`` nodes cut, one
    float input ``features`` ``[N, n_num + n_cat]``: the numbers, NaN = missing, then one code per
    ``input_layout.cat`` column; output ``label_index`` int64 instead of the string ``label``),
    puts it through the same parity gate and signs its sha256 here. ``codes[j]`` lists column
    j's strings in code order: a string's code is its position, anything else is -1, exactly
    the raw graph's ``LabelEncoder`` (a missing value is the ``missing_token``'s code).
    """

    PATH: ClassVar[str] = "float_graph"
    sha256: str = _field(_str)
    onnx_bytes: int = _field(_int)
    codes: tuple[tuple[str, ...], ...] = _field(_list_of(_str_list))
    parity: Parity = _field(Parity.from_json)


_DATE_FEATURES = ("days_before", "month", "weekday")  # edge_runtime.dates.DATE_FEATURES


def _date_outputs(value: Any, path: str) -> Mapping[str, str]:
    mapping = _object(value, path)
    for kind, target in mapping.items():
        if kind not in _DATE_FEATURES:
            raise ManifestError(_at(path, kind), f"must be one of {list(_DATE_FEATURES)}")
        _str(target, _at(path, kind))
    if not mapping:
        raise ManifestError(path, "must name at least one derived input")
    return mapping


@dataclass(frozen=True)
class DateInput(_Part):
    """A date field the device turns into numeric inputs (``edge_runtime.dates``).

    The record carries ``name`` as a string in ``format`` (``strptime``); the device derives
    ``outputs`` (``days_before`` the ``reference`` moment, ``month``, ``weekday``) — number
    inputs of the graph — exactly as the factory derived its training columns.
    """

    name: str = _field(_str)
    format: str = _field(_str)
    reference: str = _field(_str)  # ISO date or date-time: the build's reference moment
    outputs: Mapping[str, str] = _field(_date_outputs)  # derived feature -> input name


# ---------------------------------------------------------------------------- the manifest
def _check_format_version(data: Mapping[str, Any]) -> None:
    if "format_version" not in data:
        raise ManifestError("format_version", "is missing")
    version = _int(data["format_version"], "format_version")
    if version not in SUPPORTED_FORMAT_VERSIONS:
        raise ManifestError(
            "format_version",
            f"{version} is not supported (this runtime reads {list(SUPPORTED_FORMAT_VERSIONS)}); "
            "rebuild the artifact with a matching factory or update the runtime",
        )


@dataclass(frozen=True)
class Manifest(_Part):
    """A validated ``manifest.json`` (docs/ARTIFACT.md). Build it with :meth:`from_json`."""

    format_version: int = _field(_int)
    name: str = _field(_str)
    version: str = _field(_str)
    model_version: str = _field(_str)  # "<name>/<version>": the model's id everywhere
    input_layout: InputLayout = _field(InputLayout.from_json)
    inputs: tuple[InputSpec, ...] = _field(_list_of(InputSpec.from_json))
    target: Target = _field(Target.from_json)
    reference: Mapping[str, Reference] = _field(_references)
    golden_samples: tuple[GoldenSample, ...] = _field(_list_of(GoldenSample.from_json))
    onnx_sha256: str = _field(_str)
    created_at: str | None = _field(_str, "optional")
    task: str | None = _field(_str, "optional")
    id_field: str | None = _field(_str, "optional_nullable")  # the record field the edge pseudonymises
    # Columns of the training table that are not inputs (the target, --drop'ped and identifier
    # columns, constant columns): a till sending a row of that table is not refused under the
    # strict contract for them; any other unknown field still is (a typo must not pass).
    ignored_fields: tuple[str, ...] | None = _field(_list_of(_str), "optional")
    onnx_bytes: int | None = _field(_int, "optional")
    metrics: Metrics | None = _field(Metrics.from_json, "optional")
    budgets: Budgets | None = _field(Budgets.from_json, "optional")
    search: Search | None = _field(Search.from_json, "optional")
    parity: Parity | None = _field(Parity.from_json, "optional")
    explain: Explain | None = _field(Explain.from_json, "optional")
    preprocessing: Mapping[str, Any] | None = _field(_object, "optional")
    segments: Mapping[str, Any] | None = _field(_object, "optional")
    few_labels: Mapping[str, Any] | None = _field(_object, "optional")
    libraries: Mapping[str, str] | None = _field(_libraries, "optional")
    data: Mapping[str, Any] | None = _field(_object, "optional")
    signing: Signing | None = _field(Signing.from_json, "optional")
    device_graph: str | None = _field(_choice(*DEVICE_GRAPHS), "optional")  # absent = "raw"
    float_graph: FloatGraph | None = _field(FloatGraph.from_json, "optional")
    dates: tuple[DateInput, ...] | None = _field(_list_of(DateInput.from_json), "optional")
    # The till's feature program (edge_runtime.customer_state.FeatureProgram.from_json reads it,
    # checking every parameter) and the build's skew gate summary (factory.skew.check_skew).
    feature_program: Mapping[str, Any] | None = _field(_object, "optional")
    skew_gate: Mapping[str, Any] | None = _field(_object, "optional")
    # What each input means and its unit ({name: {"meaning", "unit"}}): `edge-runtime schema`
    # and the model card print it; report-only (the device never computes with it).
    feature_dictionary: Mapping[str, Any] | None = _field(_object, "optional")
    # A retrained model (factory.retrain): its parent, data window and data fingerprint, and the
    # promotion gate's decision and numbers against that parent on the newest matured window.
    lineage: Mapping[str, Any] | None = _field(_object, "optional")
    promotion: Mapping[str, Any] | None = _field(_object, "optional")
    has_id_field: bool = _presence_flag()

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "golden_samples", tuple(self.golden_samples))

    @classmethod
    def from_json(cls, data: Any, path: str | None = None) -> Manifest:
        """Validate a parsed manifest.json; ManifestError names the first offending field.

        ``format_version`` is checked first, so an artifact of another format is refused
        naming its version whatever else it contains.
        """
        if not isinstance(data, Mapping):
            raise ManifestError("<manifest>", f"must be a JSON object, got {_kind(data)}")
        _check_format_version(data)
        return super().from_json(data, "" if path is None else path)

    def _validate(self, path: str) -> None:
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
        if self.device_graph == "float" and self.float_graph is None:
            raise ManifestError("device_graph", "is 'float' but the manifest has no float_graph section")
        n_cat = len(self.input_layout.cat)
        if self.float_graph is not None and len(self.float_graph.codes) != n_cat:
            n_codes = len(self.float_graph.codes)
            raise ManifestError("float_graph.codes", f"has {n_codes} vocabularies for {n_cat} input_layout.cat columns")
        for i, date in enumerate(self.dates or ()):
            for kind, target in date.outputs.items():
                if target not in self.input_layout.num:
                    where = f"dates[{i}].outputs.{kind}"
                    raise ManifestError(where, f"names {target!r}, which is not a number input (input_layout.num)")
        for i, golden in enumerate(self.golden_samples):
            if len(golden.probabilities) != len(self.target.classes):
                raise ManifestError(
                    f"golden_samples[{i}].probabilities",
                    f"has {len(golden.probabilities)} entries for {len(self.target.classes)} classes",
                )

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
