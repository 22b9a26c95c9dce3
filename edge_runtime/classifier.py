"""``Classifier``: a verified, self-tested model that turns records into segments. No I/O.

Loading (``Classifier.load``) is the only step that touches files: verify the Ed25519
signature over ``manifest.json``, hash the exact ``model.onnx`` bytes against the signed
``onnx_sha256``, build the onnxruntime session from those bytes, then reproduce every golden
sample (label exact, probabilities within 1e-4). Any failure raises a ``ModelLoadError``
subclass and nothing is served.

The single-record path is built for microseconds (docs/DESIGN.md §2): per-field validators prebuilt
from the manifest write straight into reused input buffers, one ``run`` per call on a session
with one thread and no spinning; a second, threaded session serves large batches. Everything
the manifest says is resolved once, at load, from the typed :class:`~edge_runtime.artifact.Manifest`
(never a dict lookup per call).

When the signed manifest says ``device_graph: "float"`` (and ``model_float.onnx`` is there, its
sha256 checked at load), the device runs the float-only graph: string fields become codes from
the signed vocabulary in the same validation pass (a dict lookup each), the one ``features`` row
is the whole input and ``label_index`` maps to ``classes``; batches are coded vectorised
(``edge_runtime.encoding.CategoryCodes``). ``model.onnx`` stays the contract and serves older
artifacts, explanations (made and self-tested on first use) and a missing float file.
``Classifier.graph`` says which one runs.
"""

from __future__ import annotations

import array
import logging
import math
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import onnxruntime as ort
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge_runtime._schema import RecordValidator
from edge_runtime._settings import BATCH_SESSION_MIN_ROWS
from edge_runtime.artifact import GoldenSample, Manifest, default_public_key_path
from edge_runtime.dates import DateDeriver
from edge_runtime.encoding import CategoryCodes, float_features
from edge_runtime.exceptions import ModelLoadError, SchemaError, SelfTestError, SignatureError
from edge_runtime.explain import Explainer
from edge_runtime.session import make_session
from edge_runtime.signing import load_float_graph, load_verified_artifact

__all__ = ["BatchResult", "Classifier", "EncodedRow", "Result"]

logger = logging.getLogger("edge_runtime")

GOLDEN_PROBABILITY_TOLERANCE = 1e-4

PublicKey = str | Path | bytes | Ed25519PublicKey
# tuple.__new__ skips NamedTuple's keyword-handling __new__ (~100 ns of a ~10 us call).
_new_result = tuple.__new__
_new_row = tuple.__new__


class Result(NamedTuple):
    """One classification. ``seq`` is the outbox sequence number (None from a Classifier).

    ``missing_inputs``: inputs of the record that were missing and imputed;
    ``unknown_categories``: string inputs holding a category training never saw (both classify
    anyway; a till can flag a record whose segment rests on gaps).
    """

    segment: str
    probabilities: dict[str, float]
    model_version: str
    seq: int | None = None
    explanation: list[dict[str, Any]] | None = None  # with classify(..., explain=True)
    missing_inputs: int = 0
    unknown_categories: int = 0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "segment": self.segment,
            "probabilities": self.probabilities,
            "model_version": self.model_version,
            "seq": self.seq,
            "missing_inputs": self.missing_inputs,
            "unknown_categories": self.unknown_categories,
        }
        if self.explanation is not None:
            out["explanation"] = self.explanation
        return out


class EncodedRow(NamedTuple):
    """One record as the graph saw it: what drift histograms count (never the raw record).

    ``num`` in ``input_layout.num`` order (NaN = missing), ``cat`` in ``input_layout.cat``
    order (the manifest's ``missing_token`` = missing). Copies: safe to keep after the call.
    """

    num: list[float]
    cat: list[str]


class BatchResult:
    """Results of ``classify_many`` as arrays (no per-row objects unless asked for).

    ``segments`` (object array of class names), ``probabilities`` (float32 ``[N, n_classes]``,
    columns in ``classes`` order), ``seqs`` (int64 array, or None from a Classifier). Indexing
    or iterating yields :class:`Result` objects.
    """

    __slots__ = ("segments", "probabilities", "classes", "model_version", "seqs")

    def __init__(
        self,
        segments: np.ndarray,
        probabilities: np.ndarray,
        classes: tuple[str, ...],
        model_version: str,
        seqs: np.ndarray | None = None,
    ) -> None:
        self.segments = segments
        self.probabilities = probabilities
        self.classes = classes
        self.model_version = model_version
        self.seqs = seqs

    def __len__(self) -> int:
        return len(self.segments)

    def __getitem__(self, i: int) -> Result:
        seq = None if self.seqs is None else int(self.seqs[i])
        probabilities = dict(zip(self.classes, self.probabilities[i].tolist(), strict=True))
        return Result(str(self.segments[i]), probabilities, self.model_version, seq, None)

    def __iter__(self) -> Iterator[Result]:
        for i in range(len(self)):
            yield self[i]

    def to_dicts(self) -> list[dict[str, Any]]:
        return [result.to_dict() for result in self]


def _resolve_public_key(public_key: PublicKey | None) -> PublicKey:
    if public_key is not None:
        return public_key
    path = default_public_key_path()
    if not path.is_file():
        raise SignatureError(
            f"no public key given and none at the default location {str(path)!r}; "
            "pass public_key= or set EDGESEG_KEY_DIR"
        )
    return path


class Classifier:
    """A loaded model: ``classify(record)`` and ``classify_many(records)``.

    Build it with :meth:`load`; the constructor takes an already verified manifest (typed, or
    its JSON mapping, which is validated) and model bytes (it still runs the golden
    self-test). Thread-safe: the single-record path holds a lock around its reused buffers.
    """

    def __init__(
        self,
        manifest: Manifest | Mapping[str, Any],
        model_bytes: bytes,
        *,
        artifact_dir: str | Path | None = None,
        out_of_range: str = "count",
        batch_threads: int | None = None,
        float_model_bytes: bytes | None = None,
        contract: str = "strict",
    ) -> None:
        if batch_threads is not None and batch_threads < 1:
            raise ValueError(
                f"The 'batch_threads' parameter of Classifier must be >= 1. Got {batch_threads!r} instead."
            )
        self.batch_threads = batch_threads or os.cpu_count() or 1
        self.manifest = manifest if isinstance(manifest, Manifest) else Manifest.from_json(manifest)
        self.artifact_dir = None if artifact_dir is None else Path(artifact_dir)
        self.model_version: str = self.manifest.model_version
        self.classes: tuple[str, ...] = self.manifest.classes
        self._goldens: tuple[GoldenSample, ...] = self.manifest.golden_samples
        float_graph = self.manifest.float_graph
        codes = None
        if float_model_bytes is not None and float_graph is not None and self.manifest.device_graph == "float":
            codes = float_graph.codes
        self.graph = "raw" if codes is None else "float"  # the graph this device runs
        self._float = codes is not None
        self._codes = None if codes is None else CategoryCodes(codes)
        self._class_array = np.asarray(self.classes, dtype=object)
        self._validator = RecordValidator(self.manifest, out_of_range=out_of_range, codes=codes, contract=contract)
        # Date fields -> the number inputs derived from them (edge_runtime.dates); None: no dates.
        self._dates = DateDeriver.from_manifest(self.manifest)
        self._model_bytes = model_bytes
        self._device_bytes = model_bytes if float_model_bytes is None or codes is None else float_model_bytes
        self._session = self._new_session(threads=1)
        self._raw_session: ort.InferenceSession | None = None if self._float else self._session
        self._batch_session: ort.InferenceSession | None = None
        self._lock = threading.Lock()
        self._check_graph()
        n_num, n_cat = len(self._validator.num_names), len(self._validator.cat_names)
        self._n_num = n_num
        # Reused single-row buffers: array.array item assignment is the cheapest write from
        # Python, and numpy views of the same memory are what onnxruntime reads.
        self._feeds: dict[str, np.ndarray] = {}
        if self._float:  # one float row: the numbers, then the string codes
            self._num_row = array.array("f", [math.nan] * (n_num + n_cat))
            self._cat_row: Any = self._num_row
            self._cat_off = n_num
            self._feeds["features"] = np.frombuffer(self._num_row, dtype=np.float32).reshape(1, n_num + n_cat)
            self._outputs = ["label_index", "probabilities"]
        else:
            self._num_row = array.array("f", [math.nan] * n_num)
            self._cat_2d = np.full((1, n_cat), self._validator.missing_token, dtype=object)
            self._cat_row = self._cat_2d.reshape(-1)
            self._cat_off = 0
            if n_num:
                self._feeds["num"] = np.frombuffer(self._num_row, dtype=np.float32).reshape(1, n_num)
            if n_cat:
                self._feeds["cat"] = self._cat_2d
            self._outputs = ["label", "probabilities"]
        # InferenceSession.run re-checks input names and wraps errors on every call; the
        # C-level run it delegates to is what we call (our feeds are fixed by construction).
        # onnxruntime is pinned (pyproject), and the public method is the fallback.
        self._run = getattr(self._session, "_sess", self._session).run
        if self._float:
            self._run = self._bound_run()
        self._explainer: Explainer | None = None  # made on first use: most tills never explain
        self._self_test()
        self._validator.stats.reset()  # golden samples are not traffic

    @classmethod
    def load(
        cls,
        artifact_dir: str | Path,
        public_key: PublicKey | None = None,
        *,
        out_of_range: str = "count",
        batch_threads: int | None = None,
        contract: str = "strict",
    ) -> Classifier:
        """Verify, load and self-test an artifact folder.

        ``public_key``: a path to a PEM file, PEM or raw bytes, or a key object; when omitted,
        ``$EDGESEG_KEY_DIR/signing_key.pub.pem`` or ``~/.config/edgeseg/keys/...``.
        ``out_of_range``: ``"count"`` (default; classify and count a number outside the
        training range) or ``"fail"`` (refuse it with a SchemaError).
        ``batch_threads``: intra-op threads of the batch session (default: every core).
        ``contract``: ``"strict"`` (default: inputs training never saw missing are required,
        unknown field names are refused naming the closest known one) or ``"lenient"`` (only
        the manifest's required inputs; unknown fields ignored and counted); ``edge_runtime._schema``.

        Raises SignatureError, ModelIntegrityError, SelfTestError or ModelLoadError.
        """
        manifest, model_bytes = load_verified_artifact(artifact_dir, _resolve_public_key(public_key))
        return cls(
            manifest, model_bytes, artifact_dir=artifact_dir, out_of_range=out_of_range,
            batch_threads=batch_threads, float_model_bytes=load_float_graph(artifact_dir, manifest),
            contract=contract,
        )  # fmt: skip

    # ------------------------------------------------------------------ loading
    def _new_session(self, *, threads: int, raw: bool = False) -> ort.InferenceSession:
        model_bytes = self._model_bytes if raw else self._device_bytes
        name = "model.onnx" if model_bytes is self._model_bytes else "model_float.onnx"
        try:
            return make_session(model_bytes, threads=threads)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ModelLoadError(f"onnxruntime cannot load {name}: {exc}") from exc

    def _check_graph(self) -> None:
        inputs = {i.name: i.type for i in self._session.get_inputs()}
        expected: dict[str, str] = {}
        if self._float:
            expected["features"] = "tensor(float)"
        if self._validator.num_names and not self._float:
            expected["num"] = "tensor(float)"
        if self._validator.cat_names and not self._float:
            expected["cat"] = "tensor(string)"
        name = "model_float.onnx" if self._float else "model.onnx"
        if inputs != expected:
            raise ModelLoadError(f"{name} inputs {inputs} do not match the manifest input_layout {expected}")
        outputs = {o.name: o.type for o in self._session.get_outputs()}
        wanted = {"label": "tensor(string)", "probabilities": "tensor(float)"}
        if self._float:
            wanted = {"label_index": "tensor(int64)", "probabilities": "tensor(float)"}
        if any(outputs.get(name) != kind for name, kind in wanted.items()):
            raise ModelLoadError(f"{name} outputs {outputs} are not {wanted}")

    def _self_test(self) -> None:
        if not self._goldens:
            raise SelfTestError("manifest has no golden samples: the model cannot be self-tested")
        contract = self._validator.contract
        self._validator.set_contract("lenient")  # golden rows include gaps on purpose (parity rows)
        try:
            for i, golden in enumerate(self._goldens):
                try:
                    result = self.classify(golden.record)
                except SchemaError as exc:
                    raise SelfTestError(f"golden sample {i} is refused by the schema: {exc}") from exc
                self._compare_golden(i, golden, result.segment, list(result.probabilities.values()))
        finally:
            self._validator.set_contract(contract)

    def _compare_golden(self, i: int, golden: GoldenSample, segment: str, probabilities: Sequence[float]) -> None:
        if segment != golden.label:
            raise SelfTestError(f"golden sample {i}: expected label {golden.label!r}, got {segment!r}")
        expected = golden.probabilities
        if len(expected) != len(probabilities):
            raise SelfTestError(f"golden sample {i}: expected {len(expected)} probabilities, got {len(probabilities)}")
        for cls, want, got in zip(self.classes, expected, probabilities, strict=True):
            if not abs(float(want) - got) <= GOLDEN_PROBABILITY_TOLERANCE:
                raise SelfTestError(
                    f"golden sample {i}: probability of {cls!r} is {got:.6f}, expected "
                    f"{float(want):.6f} (tolerance {GOLDEN_PROBABILITY_TOLERANCE:g})"
                )

    def _bound_run(self) -> Callable[[Any, Any, Any], tuple[np.ndarray, np.ndarray]]:
        """The float graph's single-row run through IOBinding, with ``run``'s signature.

        Input and both outputs are bound once, by address, to this classifier's own buffers
        (the ``features`` row ``fill`` writes, an int64 label and the probabilities), so a call
        creates no tensor and allocates no output: measured ``session.run`` 3.3 µs p50 ->
        2.25 µs on the default model, below an empty graph's ``run`` (2.4 µs). Callers read
        the returned (reused) arrays while holding the lock.
        """
        features = self._feeds["features"]
        label = np.zeros(1, dtype=np.int64)
        probabilities = np.zeros((1, len(self.classes)), dtype=np.float32)
        binding = self._session.io_binding()
        binding.bind_input("features", "cpu", 0, np.float32, list(features.shape), features.ctypes.data)
        binding.bind_output("label_index", "cpu", 0, np.int64, [1], label.ctypes.data)
        binding.bind_output("probabilities", "cpu", 0, np.float32, list(probabilities.shape), probabilities.ctypes.data)
        run, bound, outputs = self._session._sess.run_with_iobinding, binding._iobinding, (label, probabilities)

        def run_bound(_names: Any, _feeds: Any, _options: Any) -> tuple[np.ndarray, np.ndarray]:
            run(bound, None)
            return outputs

        self._binding = binding  # owns the bound OrtValues for the classifier's lifetime
        return run_bound

    # ------------------------------------------------------------------ inference
    @property
    def input_stats(self) -> dict[str, Any]:
        """What validation saw: records, refused, unknown categories, out of range, extras."""
        return self._validator.stats.snapshot()

    @property
    def validator(self) -> RecordValidator:
        return self._validator

    def classify(self, record: Mapping[str, Any], *, explain: bool = False) -> Result:
        """Validate one record (a dict of raw fields) and classify it; SchemaError if invalid.

        ``explain=True`` adds which inputs pushed the record into its segment (occlusion on
        this very graph, one extra batched run; see ``edge_runtime.explain`` for cost/meaning).
        """
        if self._dates is not None:
            record = self._dates.record(record)
        with self._lock:
            gaps = self._validator.fill(record, self._num_row, self._cat_row, 0, self._cat_off, None, self._float)
            labels, probabilities = self._run(self._outputs, self._feeds, None)
            # read inside the lock: the float graph writes into reused output buffers
            segment = self.classes[labels[0]] if self._float else labels[0]
            probs = dict(zip(self.classes, probabilities.tolist()[0]))  # noqa: B905
            explanation = self.explain(record) if explain else None
        # tuple.__new__ skips NamedTuple's keyword-handling __new__ (~100 ns of a ~10 us call);
        # the graph's output has exactly len(classes) columns (checked by the self-test).
        return _new_result(Result, (segment, probs, self.model_version, None, explanation, gaps[0], gaps[1]))

    def classify_encoded(self, record: Mapping[str, Any], *, explain: bool = False) -> tuple[Result, EncodedRow]:
        """Like :meth:`classify`, and return the row as the graph saw it (for drift counts).

        The encoded row is copied out of the reused buffers while the lock is held, so it is
        the row of *this* record even when other threads classify at the same time.
        """
        if self._dates is not None:
            record = self._dates.record(record)
        with self._lock:
            gaps = self._validator.fill(record, self._num_row, self._cat_row, 0, self._cat_off, None, self._float)
            labels, probabilities = self._run(self._outputs, self._feeds, None)
            segment = self.classes[labels[0]] if self._float else labels[0]
            probs = dict(zip(self.classes, probabilities.tolist()[0]))  # noqa: B905
            if self._float:  # drift counts strings: decode the codes (the record has the unseen ones)
                n_num = self._n_num
                cats = self._validator.strings_of(self._num_row[n_num:], record)
                row = _new_row(EncodedRow, (self._num_row[:n_num].tolist(), cats))
            else:
                row = _new_row(EncodedRow, (self._num_row.tolist(), self._cat_row.tolist()))
            explanation = self.explain(record) if explain else None
        result = _new_result(Result, (segment, probs, self.model_version, None, explanation, gaps[0], gaps[1]))
        return result, row

    def explain(self, record: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Per-input contributions to the chosen segment for an already validated record."""
        explainer = self._explainer
        if explainer is None:
            try:
                explainer = self._explainer = Explainer(self.manifest)
            except KeyError as exc:
                raise ModelLoadError(f"this model cannot explain: {exc.args[0]}") from exc
        return explainer.explain(self._raw(), record)

    def _raw(self) -> ort.InferenceSession:
        """The raw-column session: the device's own, or (float graph) made and self-tested once.

        No lock here: ``classify(explain=True)`` calls this holding the classifier's lock, and
        two threads racing only make the same session twice.
        """
        if self._raw_session is None:
            session = self._new_session(threads=1, raw=True)
            self._self_test_batch(session, raw=True)
            self._raw_session = session
        return self._raw_session

    def encode(self, records: Any, *, codes: bool = False) -> tuple[dict[str, np.ndarray], int]:
        """Validate a list of records or a dict of columns into graph feeds.

        The raw graph's ``num``/``cat`` feeds (what drift counts); ``codes=True`` on a
        float-graph classifier: its one ``features`` matrix, with no string matrix made.
        """
        codes = codes and self._float
        if self._dates is not None:  # date strings -> their derived number inputs
            records = self._dates.columns_of(records) if isinstance(records, Mapping) else self._dates.records(records)
        if isinstance(records, Mapping):
            return self._validator.fill_columns(records, codes)
        if not isinstance(records, Sequence) or isinstance(records, (str, bytes)):
            records = list(records)
        return self._validator.fill_records(records, codes), len(records)

    def run_feeds(self, feeds: Mapping[str, np.ndarray], n_rows: int) -> tuple[np.ndarray, np.ndarray]:
        """Run validated feeds; the threaded session for large batches."""
        if n_rows == 0:
            return np.empty(0, dtype=object), np.empty((0, len(self.classes)), dtype=np.float32)
        session = self._session if n_rows < BATCH_SESSION_MIN_ROWS else self._batch()
        return self._run_graph(session, feeds)

    def _run_graph(
        self, session: ort.InferenceSession, feeds: Mapping[str, np.ndarray], raw: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Feeds through ``session``; raw-graph feeds are coded into ``features`` for the float graph."""
        if self._codes is None or raw:
            labels, probabilities = session.run(["label", "probabilities"], dict(feeds))
            return labels, probabilities
        features = feeds["features"] if "features" in feeds else float_features(feeds, self._codes)
        index, probabilities = session.run(self._outputs, {"features": features})
        return self._class_array[index], probabilities

    def classify_many(self, records: Any) -> BatchResult:
        """Classify a list of dicts or a dict of columns (name -> sequence / numpy array).

        All rows are validated first; one invalid row raises SchemaError naming its row and
        nothing is classified.
        """
        feeds, n_rows = self.encode(records, codes=True)
        labels, probabilities = self.run_feeds(feeds, n_rows)
        return BatchResult(labels, probabilities, self.classes, self.model_version)

    def _batch(self) -> ort.InferenceSession:
        if self._batch_session is None:
            with self._lock:
                if self._batch_session is None:
                    # No spinning here either (edge_runtime.session says why).
                    session = self._new_session(threads=self.batch_threads)
                    self._self_test_batch(session)
                    self._batch_session = session
        return self._batch_session

    def _self_test_batch(self, session: ort.InferenceSession, raw: bool = False) -> None:
        stats = self._validator.stats.snapshot()
        contract = self._validator.contract
        self._validator.set_contract("lenient")  # golden rows include gaps on purpose
        try:
            feeds = self._validator.fill_records([g.record for g in self._goldens])
        finally:
            self._validator.set_contract(contract)
        for key, value in stats.items():  # restore: golden rows are not traffic
            setattr(self._validator.stats, key, value)
        labels, probabilities = self._run_graph(session, feeds, raw)
        for i, golden in enumerate(self._goldens):
            self._compare_golden(i, golden, labels[i], probabilities[i].tolist())

    def __repr__(self) -> str:
        return f"Classifier({self.model_version!r}, classes={list(self.classes)}, graph={self.graph!r})"
