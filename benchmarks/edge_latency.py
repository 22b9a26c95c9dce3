"""Edge runtime speed: single-record latency, Runtime with outbox, batch throughput, cold start.

Prints one JSON object (all times in microseconds unless the key says otherwise)::

    python benchmarks/edge_latency.py --artifact exported_models/<name>/<version>
    python benchmarks/edge_latency.py --toy        # a generated model, no factory needed

Targets (issue 3; measured, never asserted in tests): Classifier.classify p50 <= 10 us and
p99 <= 20 us; Runtime.classify at the default durability p50 <= 40 us; batch >= 1 M rows/s;
cold start (import -> verify -> load -> self-test -> first result) <= 150 ms; peak RSS <= 70 MB.
Contenders of the same run: the bare ``session.run`` on pre-encoded tensors (the floor any
Python wrapper sits on) and the naive path ``encode_records`` + ``session.run``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: python benchmarks/edge_latency.py
    sys.path.insert(0, str(REPO))

from benchmarks._rss import PEAK_RSS_SOURCE  # noqa: E402

COLD_START_CHILD = (
    r"""
import json, sys, time
t0 = time.perf_counter()
"""
    + PEAK_RSS_SOURCE
    + r"""
from edge_runtime import Classifier
t_import = time.perf_counter()
clf = Classifier.load(sys.argv[1], sys.argv[2] if sys.argv[2] != "-" else None, contract="lenient")
t_load = time.perf_counter()
record = json.loads(sys.argv[3])
clf.classify(record)
t_first = time.perf_counter()
for _ in range(10000):
    clf.classify(record)
print(json.dumps({
    "import_ms": (t_import - t0) * 1e3,
    "load_verify_selftest_ms": (t_load - t_import) * 1e3,
    "cold_start_ms": (t_first - t0) * 1e3,
    "peak_rss_mb": peak_rss_mb(),
}))
"""
)


def percentiles(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)
    n = len(ordered)

    def at(q: float) -> float:
        return round(ordered[min(n - 1, int(q * n))] / 1e3, 2)

    return {"p50_us": at(0.50), "p99_us": at(0.99), "p99_9_us": at(0.999), "runs": n}


def time_calls(fn: Any, records: list[Any], runs: int, warmup: int = 2000) -> dict[str, float]:
    n = len(records)
    for i in range(warmup):
        fn(records[i % n])
    clock = time.perf_counter_ns
    samples = [0] * runs
    for i in range(runs):
        record = records[i % n]
        t0 = clock()
        fn(record)
        samples[i] = clock() - t0
    return percentiles(samples)


def newest_artifact() -> Path | None:
    manifests = sorted(REPO.glob("exported_models/*/*/manifest.json"), key=lambda p: p.parent.name)
    return manifests[-1].parent if manifests else None


def toy_artifact(folder: Path) -> tuple[Path, Path]:
    sys.path.insert(0, str(REPO / "tests" / "edge"))
    from edge_toy_artifact import build_toy_artifact, generate_key

    key, pem = generate_key()
    (folder / "toy.pub.pem").write_bytes(pem)
    return build_toy_artifact(folder, key), folder / "toy.pub.pem"


def cold_start(artifact: Path, key: Path | None, record: Mapping[str, Any], repeats: int) -> dict[str, Any]:
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", COLD_START_CHILD, str(artifact), str(key) if key else "-", json.dumps(record)],
            capture_output=True, text=True, check=True, cwd=REPO,
        )  # fmt: skip
        wall = (time.perf_counter() - started) * 1e3
        runs.append({**json.loads(proc.stdout), "process_wall_ms": wall})
    return {
        key: round(statistics.median(r[key] for r in runs), 2)
        for key in ("import_ms", "load_verify_selftest_ms", "cold_start_ms", "peak_rss_mb",
                    "process_wall_ms")
    } | {"repeats": repeats, "note": "medians; cold_start_ms = import -> verify -> load -> "
         "self-test -> first result inside the process; process_wall_ms adds interpreter start; "
         "peak_rss_mb after 10k single classifications"}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", type=Path, help="default: newest under exported_models/")
    parser.add_argument("--public-key", type=Path, help="default: EDGESEG_KEY_DIR rule")
    parser.add_argument("--toy", action="store_true", help="benchmark a generated toy model")
    parser.add_argument("--runs", type=int, help="timed single calls (default 20000)")
    parser.add_argument("--batch-rows", type=int, help="rows per batch (default 200000)")
    parser.add_argument("--cold-repeats", type=int, help="cold-start processes (default 5)")
    size = parser.add_mutually_exclusive_group()
    for flag, text in (("--smoke", "seconds: is it working"), ("--quick", "about a minute"),
                       ("--full", "more calls, a 1M-row batch")):  # fmt: skip
        size.add_argument(flag, action="store_true", help=text)
    args = parser.parse_args(argv)
    preset = (
        (500, 5_000, 1) if args.smoke
        else (5_000, 50_000, 3) if args.quick
        else (100_000, 1_000_000, 10) if args.full
        else (20_000, 200_000, 5)
    )  # fmt: skip
    args.runs = args.runs or preset[0]
    args.batch_rows = args.batch_rows or preset[1]
    args.cold_repeats = args.cold_repeats or preset[2]

    import numpy as np

    from edge_runtime import Classifier, Outbox, Runtime
    from edge_runtime.artifact import MODEL_FILE, read_manifest
    from edge_runtime.encoding import encode_records
    from edge_runtime.session import make_session

    tmp = Path(tempfile.mkdtemp(prefix="edge_bench_"))
    artifact: Path | None
    key: Path | None
    if args.toy:
        artifact, key = toy_artifact(tmp)
    else:
        artifact = args.artifact or newest_artifact()
        key = args.public_key
        if artifact is None:
            parser.error("no artifact: pass --artifact, build one (make build-model) or use --toy")
    clf = Classifier.load(artifact, key, contract="lenient")  # the golden rows include one with every input missing
    manifest = read_manifest(artifact)  # verified by the load above
    records = [dict(g.record) for g in manifest.golden_samples]
    out: dict[str, Any] = {
        "artifact": str(artifact),
        "model_version": clf.model_version,
        "learner": manifest.search.learner if manifest.search else None,
        "graph": clf.graph,  # the graph the classifier runs: "float" (model_float.onnx) or "raw"
        "onnx_bytes": manifest.onnx_bytes,
        "machine": {"cpu_count": os.cpu_count(), "python": sys.version.split()[0]},
    }

    out["cold_start"] = cold_start(Path(artifact), key, records[0], args.cold_repeats)

    # Single record: our path and the two contenders, interleaved runs of the same records.
    out["classifier_classify"] = time_calls(clf.classify, records, args.runs)
    # A session with the classifier's single-record settings (one thread, no spinning).
    layout = manifest.input_layout
    session = make_session(Path(artifact) / MODEL_FILE, threads=1)
    encoded = [encode_records(layout, [r]) for r in records]
    out["contender_ort_run_preencoded"] = time_calls(
        lambda feeds: session.run(["label", "probabilities"], feeds), encoded, args.runs
    )
    if clf.graph == "float":  # the float-only graph on pre-coded rows, plain session.run
        from edge_runtime.artifact import FLOAT_MODEL_FILE

        float_session = make_session(Path(artifact) / FLOAT_MODEL_FILE, threads=1)
        coded = [clf.encode([r], codes=True)[0] for r in records]
        out["contender_float_graph_run_precoded"] = time_calls(
            lambda feeds: float_session.run(["label_index", "probabilities"], feeds), coded, args.runs
        )
    out["contender_encode_records_plus_run"] = time_calls(
        lambda r: session.run(None, encode_records(layout, [r])), records, args.runs
    )

    # Runtime = classify + drift + outbox commit, per durability; and the outbox alone.
    for durability, runs in (("process", args.runs), ("power", min(args.runs, 2000))):
        with Runtime(clf, outbox_path=tmp / f"rt_{durability}.db", device_id="bench",
                     secret="bench-secret-0123456789abcdef", durability=durability) as rt:  # fmt: skip
            with_id = [dict(r, **{manifest.id_field or "_id": "123456"}) for r in records]
            out[f"runtime_classify_{durability}"] = time_calls(rt.classify, with_id, runs, 200)
        with Outbox(tmp / f"ob_{durability}.db", device_id="bench", durability=durability) as box:
            probs = [0.1, 0.2, 0.3, 0.4]
            out[f"outbox_append_{durability}"] = time_calls(
                lambda ref, box=box, probs=probs: box.append_values(
                    "A", ("A", "B", "C", "D"), probs, "m/1", ref
                ),
                ["0123456789abcdef0123456789abcdef"], runs, 200,
            )  # fmt: skip

    # Batch: a dict of numpy columns (vectorised validation, threaded session).
    rng = np.random.default_rng(0)
    n = args.batch_rows
    columns: dict[str, Any] = {}
    for spec in manifest.inputs:
        if spec.type == "number":
            low = 0.0 if spec.min is None else spec.min
            high = 1.0 if spec.max is None else spec.max
            columns[spec.name] = rng.uniform(low, high, n)
        else:
            cats = np.array(spec.categories or ["x"])
            columns[spec.name] = cats[rng.integers(0, len(cats), n)]
    clf.classify_many({k: v[:1000] for k, v in columns.items()})  # warm the batch session
    timings = []
    for _ in range(3):
        t0 = time.perf_counter()
        clf.classify_many(columns)
        timings.append(time.perf_counter() - t0)
    feeds, _ = clf.encode(columns, codes=True)  # what classify_many feeds the graph it runs
    run_timings = []
    for _ in range(3):
        t0 = time.perf_counter()
        clf.run_feeds(feeds, n)
        run_timings.append(time.perf_counter() - t0)
    dict_rows = [{k: v[i].item() for k, v in columns.items()} for i in range(min(n, 50_000))]
    t0 = time.perf_counter()
    clf.classify_many(dict_rows)
    dict_rate = len(dict_rows) / (time.perf_counter() - t0)
    out["batch"] = {
        "rows": n,
        "columns_rows_per_s": round(n / min(timings)),
        "ort_only_rows_per_s": round(n / min(run_timings)),
        "list_of_dicts_rows_per_s": round(dict_rate),
        "threads": os.cpu_count(),
    }
    shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
