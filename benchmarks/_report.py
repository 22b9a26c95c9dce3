"""Write a run's report: report.md, report.html, results.json, headline.md and the PNG plots.

The report states what each number includes (dict in → result out, threads, ZipMap, pickles
without signatures) next to the number, because a ratio is only honest with its conditions.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._coldstart import COLD_PATHS
from benchmarks._contenders import CONTENDERS
from benchmarks._datasets import DATASETS
from benchmarks._document import Block, Heading, Image, Para, Pre, Table, to_html, to_markdown
from benchmarks._machine import LIBRARIES
from benchmarks._plots import write_plots

__all__ = ["SECTIONS", "headline_dataset", "render_blocks", "write_report"]

SECTIONS = (
    "Headline",
    "Machine and settings",
    "Datasets",
    "1. Single record latency",
    "2. Batch throughput",
    "3. Cold start and memory",
    "4. Artifact size",
    "5. Pareto front and quality under budget",
    "6. Outbox and central ingest",
    "Notes",
)
LABELS = {key: label for key, (label, _) in CONTENDERS.items()} | {k: v[0] for k, v in COLD_PATHS.items()}


# ------------------------------------------------------------------ number formatting
def _num(x: Any, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def _ratio(x: Any) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.2f}×" if x < 10 else f"{x:,.0f}×"


def _rate(x: Any) -> str:
    if x is None or not math.isfinite(x):
        return "–"
    if x >= 1e6:
        return f"{x / 1e6:.2f} M/s"
    if x >= 1e3:
        return f"{x / 1e3:.1f} k/s"
    return f"{x:.0f}/s"


def _bytes(x: Any) -> str:
    if x is None:
        return "–"
    if x >= 1024 * 1024:
        return f"{x / 1024 / 1024:.2f} MB"
    if x >= 1024:
        return f"{x / 1024:.1f} KB"
    return f"{x} B"


def _quality(x: Any) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def _ok(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in results["datasets"].items() if v.get("status") == "ok"}


def headline_dataset(results: dict[str, Any]) -> str | None:
    """The default retail job when it ran, else the first dataset that did."""
    ok = _ok(results)
    if "retail" in ok:
        return "retail"
    return next(iter(ok), None)


# ------------------------------------------------------------------ sections
_LATENCY_HEADERS = ["p50 µs", "p99 µs", "p99.9 µs", "p50 vs edgeseg", "p99 vs edgeseg"]


def _latency_row(key: str, s: dict[str, Any]) -> list[str]:
    """A contender's label and single-record percentiles (the cells under _LATENCY_HEADERS)."""
    times = [_num(s[k]) for k in ("p50_us", "p99_us", "p99_9_us")]
    return [LABELS.get(key, key), *times, _ratio(s["ratio_p50"]), _ratio(s["ratio_p99"])]


def _latency_table(data: dict[str, Any]) -> Table:
    rows = [
        [*_latency_row(key, s), f"{s['calls_per_round']:,} × {s['rounds']}"] for key, s in data["single_record"].items()
    ]
    return Table(["contender", *_LATENCY_HEADERS, "calls × rounds"], rows)


def _batch_table(data: dict[str, Any]) -> Table:
    sizes = sorted(data["batch"], key=int)
    keys = list(data["batch"][sizes[0]])
    rows = []
    for key in keys:
        row = [LABELS.get(key, key)] + [_rate(data["batch"][n][key]["rows_per_s"]) for n in sizes]
        row.append(_ratio(data["batch"][sizes[-1]][key]["edgeseg_speedup"]))
        rows.append(row)
    headers = ["contender"] + [f"{int(n):,} rows" for n in sizes] + [f"edgeseg ÷ it at {int(sizes[-1]):,}"]
    return Table(headers, rows)


def _cold_table(data: dict[str, Any]) -> Table:
    rows = []
    for key, c in data["cold_start"].items():
        if "error" in c:
            rows.append(
                [LABELS.get(key, key), COLD_PATHS.get(key, ("", ""))[1], "failed: " + c["error"], "", "", "", ""]
            )
            continue
        rows.append(
            [
                LABELS.get(key, key),
                COLD_PATHS.get(key, ("", ""))[1],
                _num(c["process_wall_ms"]),
                _num(c["first_result_ms"]),
                _num(c["import_ms"]),
                _num(c["load_ms"]),
                _num(c["peak_rss_mb"]),
            ]
        )
    return Table(
        ["path", "steps", "process wall ms", "in-process first result ms", "import ms", "load ms", "peak RSS MB"], rows
    )


def _size_table(data: dict[str, Any]) -> Table:
    s = data["sizes"]
    onnx = s["onnx_bytes"] or 1
    items = [
        ("edgeseg `model.onnx` (grouped inputs, preprocessing inside)", s["onnx_bytes"]),
        ("edgeseg whole artifact folder (model, manifest, signature, card, search log)", s["artifact_bytes"]),
        ("pickled native model (the chosen estimator alone)", s["pickle_model_bytes"]),
        ("pickled sklearn pipeline (ColumnTransformer → model)", s["pickle_pipeline_bytes"]),
        ("pickled unconstrained FLAML AutoML", s["pickle_flaml_automl_bytes"]),
        ("skl2onnx default graph (per-column inputs, ZipMap)", s["skl2onnx_default_bytes"]),
    ]
    return Table(
        ["what", "bytes", "size", "vs model.onnx"], [[w, f"{b:,}", _bytes(b), _ratio(b / onnx)] for w, b in items]
    )


def _budget_table(data: dict[str, Any]) -> Table:
    q = data["quality_under_budget"]
    metric = q["metric"]
    rows = []
    for r in q["rows"]:
        budget, trials = f"{r['latency_budget_us']:g} µs", f"{r['feasible_trials']} / {r['trials']}"
        if r.get("model"):
            rows.append(
                [
                    budget,
                    r["learner"],
                    _quality(r.get("validation_quality")),
                    _quality(r["test_quality"]),
                    _num(r["latency_p99_us"]),
                    _bytes(r["size_bytes"]),
                    trials,
                ]
            )
            continue
        fastest = r.get("fastest_trial_p99_us")
        if "re-measured" in r.get("note", ""):
            note = "no model (feasible in the search, over budget when the artifact was re-measured)"
        else:
            note = "no model" + (f" (fastest trial p99 {_num(fastest)} µs)" if fastest else "")
        rows.append([budget, note, "–", "–", "–", "–", trials])
    u = q["unconstrained_flaml"]
    rows.append(
        [
            "none (unconstrained FLAML)",
            str(u["learner"]),
            "–",
            _quality(u["test_quality"]),
            _num(u["single_record_p99_us"]) + " (automl.predict)",
            "–",
            "–",
        ]
    )
    headers = [
        "p99 budget",
        "model",
        f"validation {metric}",
        f"test {metric}",
        "p99 µs",
        "graph size",
        "feasible / trials",
    ]
    return Table(headers, rows)


def _script_heading(title: str, script: dict[str, Any]) -> list[Block]:
    """An owner's script section: its heading, and why it has no numbers when it is not "ok"."""
    blocks: list[Block] = [Heading(3, title)]
    if script.get("status") != "ok":
        blocks.append(Para(f"**{script.get('status', 'pending')}**: {script.get('note', '')}"))
    return blocks


def _edge_blocks(edge: dict[str, Any]) -> list[Block]:
    blocks = _script_heading("Edge runtime: outbox write cost and Runtime (benchmarks/edge_latency.py)", edge)
    if edge.get("status") != "ok":
        return blocks
    data = edge["data"]
    blocks.append(Para(f"Run on the `{edge.get('artifact_dataset')}` artifact: `{edge.get('command', '')}`."))
    rows = []
    for key, value in data.items():
        if isinstance(value, dict) and "p50_us" in value:
            rows.append(
                [
                    key,
                    _num(value.get("p50_us"), 2),
                    _num(value.get("p99_us"), 2),
                    _num(value.get("p99_9_us"), 2),
                    str(value.get("runs", "")),
                ]
            )
    if rows:
        blocks.append(Table(["measure", "p50 µs", "p99 µs", "p99.9 µs", "calls"], rows))
        blocks.append(
            Para(
                "`outbox_append_process` / `outbox_append_power`: cost of one durable outbox write per result "
                "in the default (process-crash-safe) and power-loss-safe modes; `runtime_classify_*`: "
                "classify + drift counts + outbox commit, i.e. what a till pays per result."
            )
        )
    other = []
    for key, value in data.items():
        if isinstance(value, dict) and "p50_us" not in value:
            for k, v in value.items():
                other.append([f"{key}.{k}", json.dumps(v) if not isinstance(v, str) else v])
    if other:
        blocks.append(Table(["measure", "value"], other))
    return blocks


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        out: list[tuple[str, Any]] = []
        for k, v in value.items():
            out += _flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    return [(prefix, value)]


def _till_blocks(till: dict[str, Any]) -> list[Block]:
    """Issue 11's numbers: the till's transaction → segment, replay, a store's state, cold start."""
    blocks: list[Block] = [Heading(3, "At the till: transaction → segment (benchmarks/till.py)")]
    if till.get("status") != "ok":
        return blocks + [Para(f"{till.get('status', 'pending')}: {till.get('note', '')}")]
    d = till["data"]
    t = d["transaction_to_segment"]
    rows = [
        [label, f"{_num(t[key]['p50_us'])} µs", f"{_num(t[key]['p99_us'])} µs"]
        for key, label in (
            ("observe_and_classify", "transaction → segment: observe (5 lines) + classify_customer"),
            ("observe", "observe alone (state committed)"),
            ("classify_customer", "classify_customer alone (result committed to the outbox)"),
        )
    ]
    blocks.append(Table([f"per event, {t['events']:,} events, durability {t['durability']}", "p50", "p99"], rows))
    replay, store, cold = d["replay"], d["store_state"], d["cold_start"]
    replay_rate = _rate(replay["lines_per_s"]).replace("/s", " lines/s")
    blocks.append(
        Table(
            ["till state", "measured"],
            [
                ["replay of the bundled log", f"{replay['lines']:,} lines, {replay_rate}"],
                [
                    f"a store's state, {store['customers']:,} customers",
                    f"{store['mb']} MB on disk ({store['mean_distinct_products']} distinct products per customer)",
                ],
                [
                    "cold start on that state (Runtime → first segment)",
                    f"{cold['open_to_segment_ms']} ms (+ {cold['imports_ms']} ms imports; "
                    f"process {cold['process_wall_ms']} ms)",
                ],
            ],
        )  # fmt: skip
    )
    return blocks


def _central_blocks(
    central: dict[str, Any], title: str = "Central ingest throughput (benchmarks/central_ingest.py)"
) -> list[Block]:
    blocks = _script_heading(title, central)
    if central.get("status") != "ok":
        return blocks
    blocks.append(Para(f"`{central.get('command', '')}` ({central.get('seconds', 0):.1f} s)."))
    rows = [[k, _num(v, 2) if isinstance(v, float) else str(v)] for k, v in _flatten(central["data"])][:160]
    return blocks + [Table(["measure", "value"], rows)]


def _features_scale_blocks(scale: dict[str, Any]) -> list[Block]:
    """Feature building and search, pandas vs Spark local[2] (benchmarks/features_scale.py)."""
    blocks = _script_heading("Feature building and search, pandas vs Spark (benchmarks/features_scale.py)", scale)
    if scale.get("status") != "ok":
        return blocks
    data = scale["data"]
    blocks.append(Para(f"`{scale.get('command', '')}` ({scale.get('seconds', 0):.0f} s)."))
    rows = []
    for point in data["features"]:
        for engine in ("pandas", "spark"):
            m = point.get(engine, {})
            ok = m.get("status") == "ok"
            rows.append(
                [f"{point['lines']:,}", engine, _num(m.get("lines_per_s"), 0) if ok else m.get("note", "-"),
                 _num(m.get("seconds"), 1) if ok else "-", _num(m.get("session_s"), 1) if ok else "-",
                 _num(m.get("peak_rss_gib"), 2) if ok else "-"]
            )  # fmt: skip
    blocks.append(Table(["log lines", "engine", "lines/s", "seconds", "session start s", "peak GiB"], rows))
    memory = data.get("pandas_memory")
    if memory:
        blocks.append(
            Para(
                f"pandas: {memory['bytes_per_line']:.0f} bytes of memory per log line; about "
                f"{memory['lines_that_fit_24_gib'] / 1e6:.0f} M lines fit in 24 GiB."
            )
        )
    searches = [
        [s["table"], s["engine"], _num(s.get("time_budget_s"), 0), str(s.get("trials", "-")),
         _num(s.get("best_validation_loss"), 4), _num(s.get("wall_s"), 1)]
        for s in data.get("search", [])
    ]  # fmt: skip
    if searches:
        headers = ["table", "engine", "budget s", "trials", "best validation loss", "wall s"]
        blocks.append(Table(headers, searches))
    return blocks


def _machine_blocks(results: dict[str, Any]) -> list[Block]:
    m, meta = results["machine"], results["meta"]
    cfg = meta["config"]
    rows = [
        ["CPU", m["cpu_model"]],
        ["cores (online / usable)", f"{m['cpu_count']} / {m['usable_cores']}"],
        ["memory", f"{_num(m['memory_total_mb'], 0)} MB"],
        ["platform", m["platform"]],
        ["Python", m["python"]],
        ["git commit", f"{(m['git'].get('commit') or '?')[:12]}{' (dirty)' if m['git'].get('dirty') else ''}"],
        ["load average at start / end", f"{meta.get('load_average_start')} / {meta.get('load_average_end')}"],
        ["mode", f"{meta['mode']} (`{' '.join(meta['argv']) or 'python -m benchmarks'}`)"],
        ["run time", f"{meta['started_at']} → {meta.get('finished_at')} ({_num(meta.get('seconds'), 0)} s)"],
        ["seeds", ", ".join(f"{k} {v}" for k, v in meta["seeds"].items())],
        ["search time per build / FLAML run", f"{cfg['time_budget_s']:g} s"],
        ["budgets of the main build", f"p99 ≤ {cfg['latency_budget_us']:g} µs, size ≤ {cfg['size_budget_kb']:g} KB"],
        ["single-record rounds", f"{cfg['rounds']} rounds, ~{cfg['round_target_s']:g} s per contender per round, "
         f"{cfg['min_calls']}–{cfg['max_calls']} calls, {cfg['warmup_calls']} warm-up calls, "
         f"{cfg['n_records']} distinct records"],
        ["batch rounds / cold-start runs", f"{cfg['batch_rounds']} / {cfg['cold_runs']}"],
        ["thread env", ", ".join(f"{k}={v}" for k, v in m["thread_env"].items() if v is not None) or "none set"],
    ]  # fmt: skip
    recorded = meta.get("threads")  # results.json files from before 2026-11-30 did not record them
    threads: Block = Table(["path", "threads"], recorded) if recorded else Para("Not recorded by this run.")
    libs = Table(["library", "version"], [[k, str(v)] for k, v in m["libraries"].items()])
    return [Table(["", ""], rows), Heading(3, "Thread settings"), threads, Heading(3, "Library versions"), libs]


def _dataset_blocks(results: dict[str, Any]) -> list[Block]:
    rows = []
    for name, d in results["datasets"].items():
        data = d.get("data", {})
        if d.get("status") == "ok":
            b = d["build"]
            rows.append(
                [
                    name,
                    "ok",
                    data.get("description", ""),
                    f"{data.get('inputs_num', 0)} num + {data.get('inputs_cat', 0)} str",
                    str(len(data.get("classes", []))),
                    f"{b['learner']} · p99 budget {b['budgets']['latency_p99_us']:g} µs · test {b['metric']} "
                    f"{_quality(b['test_quality'])} · {b['trials']} trials",
                ]
            )
        else:
            rows.append([name, d.get("status", "?"), d.get("note", ""), "", "", ""])
    return [Table(["dataset", "status", "what", "inputs", "classes", "edgeseg model (main build)"], rows)]


def _headline_blocks(results: dict[str, Any], *, level: int = 2, title: str = "Headline") -> list[Block]:
    name = headline_dataset(results)
    blocks: list[Block] = [Heading(level, title)]
    if name is None:
        return blocks + [Para("No dataset produced a model; see Datasets.")]
    d = results["datasets"][name]
    b = d["build"]
    meta, machine = results["meta"], results["machine"]
    blocks.append(
        Para(
            f"Dataset `{name}` ({d['data']['description']}); edgeseg model: {b['learner']} built for p99 ≤ "
            f"{b['budgets']['latency_p99_us']:g} µs, test {b['metric']} "
            f"{_quality(b['test_quality'])}, {_bytes(b['onnx_bytes'])}. {meta['mode']} run of {meta['started_at']} "
            f"on {machine['cpu_model']} ({machine['usable_cores']} cores), shared with other work: ratios of the "
            "same run matter more than absolute numbers."
        )
    )
    sizes = sorted(d["batch"], key=int)
    big = sizes[-1]
    rows = [[*_latency_row(key, s), _rate(d["batch"][big][key]["rows_per_s"])] for key, s in d["single_record"].items()]
    headers = ["single record, dict → result", *_LATENCY_HEADERS, f"batch rows/s at {int(big):,}"]
    blocks.append(Table(headers, rows))
    cold = d["cold_start"]
    size = d["sizes"]
    cold_rows = []
    for key, what, size_bytes in (
        ("edgeseg", "signed artifact (`model.onnx`)", size["onnx_bytes"]),
        ("sklearn_pickle", "pickled pipeline", size["pickle_pipeline_bytes"]),
        ("flaml_pickle", "pickled FLAML AutoML", size["pickle_flaml_automl_bytes"]),
    ):
        c = cold.get(key, {})
        cold_rows.append(
            [
                LABELS.get(key, key),
                _num(c.get("process_wall_ms")),
                _num(c.get("peak_rss_mb")),
                f"{_bytes(size_bytes)} ({what})",
            ]
        )
    blocks.append(
        Table(["cold start (fresh process)", "start → first result ms", "peak RSS MB", "deployed size"], cold_rows)
    )
    blocks.append(_budget_table(d))
    durable = _durable_rows(results)
    if durable:
        blocks.append(Table(["per result, with the device outbox and at central", "p50", "p99"], durable))
    return blocks


def _durable_rows(results: dict[str, Any]) -> list[list[str]]:
    """Headline rows from the owners' scripts: Runtime with its outbox, central ingest."""
    rows: list[list[str]] = []
    edge = results.get("edge_runtime", {})
    if edge.get("status") == "ok":
        data = edge["data"]
        for key, label in (
            ("runtime_classify_process", "edge Runtime.classify + outbox, default durability"),
            ("runtime_classify_power", "edge Runtime.classify + outbox, power-loss-safe"),
            ("outbox_append_process", "outbox write alone, default durability"),
            ("outbox_append_power", "outbox write alone, power-loss-safe"),
        ):
            value = data.get(key)
            if isinstance(value, dict) and "p50_us" in value:
                rows.append([label, f"{_num(value['p50_us'])} µs", f"{_num(value.get('p99_us'))} µs"])
    till = results.get("till", {})
    if till.get("status") == "ok":
        value = till["data"]["transaction_to_segment"]["observe_and_classify"]
        rows.append([
            "till: transaction → segment (observe a 5-line basket + classify_customer), default durability",
            f"{_num(value['p50_us'])} µs", f"{_num(value['p99_us'])} µs",
        ])  # fmt: skip
    central = results.get("central_ingest", {})
    if central.get("status") == "ok":
        backends = central["data"].get("backends", {})
        for name, values in backends.items() if isinstance(backends, dict) else ():
            first = values.get("first_delivery", {}) if isinstance(values, dict) else {}
            rate = first.get("results_per_s")
            if rate is not None:
                rows.append([f"central ingest on {name} (first delivery)", _rate(rate).replace("/s", " results/s"), ""])
    return rows


def _notes() -> list[Block]:
    return [
        Para(
            "**What each single-record number includes.** edgeseg: `Classifier.classify(dict)` — schema validation, "
            "encoding into reused buffers, one onnxruntime call, a `Result` with the label and a probability dict. "
            "FLAML and sklearn: building the 1-row DataFrame from the dict plus `predict` / `predict_proba` (a "
            "pandas stack cannot take a dict). skl2onnx default: building one `[1, 1]` tensor per column from the "
            "dict plus `session.run` with ZipMap output, on a session with edgeseg's single-row settings, so the "
            "difference is the graph layout and not the threads. Native booster: a float32 row that was encoded "
            "beforehand — the model's own floor, with no record handling at all."
        ),
        Para(
            "**Same model, same data.** The sklearn pipeline, the skl2onnx graph and (when the chosen model is "
            "LightGBM/XGBoost) the booster run the very model edgeseg exported; the agreement lines show their labels "
            "match edgeseg's. FLAML's row is a different model: FLAML's own unconstrained search on the raw table "
            "with the same learners, metric, time budget, seed and training rows; its quality is measured on the "
            "same held-out test rows as edgeseg's."
        ),
        Para(
            "**Statistics.** Contenders are timed in interleaved rounds (rotated order), with the garbage "
            "collector off while timing; p50 and p99 are medians over rounds of each round's percentile, p99.9 is "
            "taken over the pooled calls of all rounds. Batch rows/s is the median of rounds after one warm-up "
            "call. Cold start is the median of fresh subprocesses run in turn. Pickles carry no signature, so the "
            "pandas stacks have no verify step; edgeseg's cold start includes signature and hash verification and "
            "the golden self-test."
        ),
        Para(
            "**Budget table.** Each row is a separate budgeted search with the same search time and seed (the "
            "main build is the 50 µs row; when that build is refused, the next larger budget's model is the one "
            "measured in sections 1–4, as the dataset's section says). The factory measures p99 of `session.run` "
            "on a pre-encoded row "
            "(onnxruntime alone costs several µs per call here), so a 10 µs budget can leave no model; that is "
            'reported as "no model", not hidden. The search chooses on the validation split and the table '
            "reports the untouched test split too; with one short search per budget, differences of a few "
            "hundredths between rows are within search-to-search noise (a higher budget only widens what the "
            "search may pick, it does not guarantee a better pick in a short search). `--full` searches 60 s."
        ),
    ]


def _latency_blocks(name: str, d: dict[str, Any]) -> list[Block]:
    a = d["agreement"]
    blocks: list[Block] = []
    if d.get("model_note"):
        blocks.append(Para(f"**Model under test:** {d['model_note']}."))
    blocks.append(_latency_table(d))
    blocks += _floor_blocks(d)
    blocks.append(
        Para(
            f"Label agreement with edgeseg on {a['records']} held-out records: edgeseg's own batch path "
            f"{a.get('edgeseg_batch_vs_single', float('nan')):.1%}, sklearn pipeline "
            f"{a['sklearn_pipeline']:.1%}, skl2onnx default graph {a['skl2onnx_default']:.1%}"
            + (f", native booster {a['native_booster']:.1%}" if a.get("native_booster") is not None else "")
            + f"; unconstrained FLAML's model picks the same segment for {a['flaml_predict_same_segment']:.1%}. "
            f"Native booster: {d['booster_source']}."
        )
    )
    return blocks


def _floor_blocks(d: dict[str, Any]) -> list[Block]:
    """The physical floor of one record beside what the paths measure (benchmarks/edge_floor.py)."""
    f = d.get("floor")
    if not f or "floor" not in f:
        return []
    e, floor, single = f["ensemble"], f["floor"], f["single_record"]
    rows = [
        ["node visits per row (mean / p99)", f"{e['visits_per_row_mean']:.1f} / {e['visits_per_row_p99']:.0f}",
         f"{e['trees']} trees, {e['nodes']} nodes, {e['rows']:,} rows walked"],
        ["ns per node visit", _num(floor["ns_per_visit"], 2), "float graph, 1 thread, one batch call ÷ visits"],
        ["tree work per row", f"{_num(floor['tree_work_us_per_row'], 3)} µs", "visits × ns per visit"],
        ["per-call overhead", f"{_num(floor['overhead_us'], 2)} µs",
         "an Identity graph, 1 row, p50 (the lower of session.run and IOBinding)"],
        ["floor: overhead + tree work", f"{_num(floor['single_record_floor_us'], 2)} µs", "what one row cannot beat"],
    ]  # fmt: skip
    for key, label in (
        ("float_graph_run", "float graph session.run, pre-coded row"),
        ("float_graph_iobinding", "float graph through IOBinding (edgeseg's call)"),
        ("classifier_classify", "edgeseg Classifier.classify, dict → Result"),
    ):
        if key in single:
            p50 = single[key]["p50_us"]
            rows.append([label, f"{_num(p50, 2)} µs", f"p50; {p50 / floor['single_record_floor_us']:.1f}× the floor"])
    return [
        Para(f"Physical floor of one record on this model (graph run by the device: {f.get('graph')}):"),
        Table(["measure", "value", "how"], rows),
    ]


def _batch_blocks(name: str, d: dict[str, Any]) -> list[Block]:
    blocks: list[Block] = [_batch_table(d)]
    breakdown = d.get("edgeseg_batch_breakdown", {})
    if not breakdown:
        return blocks
    parts = [
        f"{int(n):,} rows: validate + encode {_num(b['validate_encode_s'] * 1e3, 2)} ms, "
        f"onnxruntime {_num(b['onnxruntime_s'] * 1e3, 2)} ms"
        for n, b in sorted(breakdown.items(), key=lambda item: int(item[0]))
    ]
    objects = next(iter(breakdown.values()))["object_columns"]
    columns = (
        f"Object columns (per-value path): {', '.join(objects)}."
        if objects
        else "Every column went in as a float64 array (NaN = missing) or a numpy str array ('' = missing)."
    )
    return blocks + [Para("Where edgeseg's batch time goes — " + "; ".join(parts) + ". " + columns)]


def _pareto_blocks(name: str, d: dict[str, Any], plots: dict[str, str]) -> list[Block]:
    p = d["pareto"]
    n_feasible = sum(1 for t in p["trials"] if t["feasible"])
    blocks: list[Block] = [
        Para(
            f"{len(p['trials'])} trials with a graph ({n_feasible} within p99 ≤ {p.get('latency_budget_us', 0):g} µs "
            f"and the size budget); chosen trial {p.get('chosen_index')}; Pareto front (quality vs p99): trials "
            f"{p.get('front_latency')}."
        )
    ]
    if f"pareto_{name}" in plots:
        blocks.append(Image(plots[f"pareto_{name}"], f"Pareto front of {name}"))
    if "quality_under_budget" in d:
        q = d["quality_under_budget"]
        blocks.append(Para(f"Quality reached under each p99 budget with the same {q['time_budget_s']:g} s search:"))
        blocks.append(_budget_table(d))
    return blocks


def _section(
    title: str,
    intro: str | None,
    datasets: dict[str, dict[str, Any]],
    per_dataset: Callable[[str, dict[str, Any]], list[Block]],
    plot: Image | None = None,
) -> list[Block]:
    """A numbered section: heading, what its numbers include, one sub-heading per dataset, its plot."""
    blocks: list[Block] = [Heading(2, title)]
    if intro:
        blocks.append(Para(intro))
    for name, d in datasets.items():
        blocks += [Heading(3, name), *per_dataset(name, d)]
    if plot is not None:
        blocks.append(plot)
    return blocks


def render_blocks(results: dict[str, Any], plots: dict[str, str]) -> list[Block]:
    meta = results["meta"]
    blocks: list[Block] = [
        Heading(1, f"edgeseg benchmark report — {meta['started_at']} ({meta['mode']})"),
        Para(
            "Reproduce with `make bench` (quick), `make bench FULL=1`, or "
            "`.venv/bin/python -m benchmarks [--full] [--datasets retail,segmentation,bank]`. Raw numbers: "
            "`results.json`."
        ),
    ]
    blocks += _headline_blocks(results)
    blocks += [Heading(2, "Machine and settings"), *_machine_blocks(results)]
    blocks += [Heading(2, "Datasets"), *_dataset_blocks(results)]
    ok = _ok(results)

    def image(key: str, alt: str) -> Image | None:
        return Image(plots[key], alt) if key in plots else None

    blocks += _section(
        "1. Single record latency",
        "Dict in → result out, per record; “vs edgeseg” is the contender's time ÷ edgeseg's (higher = slower).",
        ok,
        _latency_blocks,
        image("latency", "single-record latency per contender"),
    )
    blocks += _section(
        "2. Batch throughput",
        "Rows per second of one call on a batch already in each path's own form (edgeseg: dict of numpy columns).",
        ok,
        _batch_blocks,
        image("throughput", "batch throughput"),
    )
    blocks += _section(
        "3. Cold start and memory",
        "Fresh subprocess per run; process wall includes interpreter start; peak RSS is the child's own maximum.",
        ok,
        lambda _, d: [_cold_table(d)],
        image("coldstart", "cold start and peak RSS"),
    )
    blocks += _section("4. Artifact size", None, ok, lambda _, d: [_size_table(d)])
    with_pareto = {name: d for name, d in results["datasets"].items() if "pareto" in d}
    blocks += _section(
        "5. Pareto front and quality under budget",
        None,
        with_pareto,
        lambda name, d: _pareto_blocks(name, d, plots),
    )

    blocks.append(Heading(2, "6. Outbox and central ingest"))
    blocks += _edge_blocks(results.get("edge_runtime", {"status": "pending", "note": "not run"}))
    blocks += _till_blocks(results.get("till", {"status": "pending", "note": "not run"}))
    blocks += _central_blocks(results.get("central_ingest", {"status": "pending", "note": "not run"}))
    blocks += _central_blocks(
        results.get("central_fleet", {"status": "pending", "note": "not run"}),
        "Central under a simulated fleet, --workers 2 (benchmarks/central_fleet.py)",
    )
    blocks += _features_scale_blocks(results.get("features_scale", {"status": "pending", "note": "not run"}))

    blocks.append(Heading(2, "Notes"))
    blocks += _notes()
    failed = {k: v for k, v in results["datasets"].items() if v.get("status") == "failed"}
    for name, d in failed.items():
        blocks += [Heading(3, f"{name} failed"), Pre(d.get("traceback", d.get("note", "")))]
    return blocks


def _headline_snippet(results: dict[str, Any]) -> str:
    meta = results["meta"]
    blocks = _headline_blocks(
        results, level=3, title=f"Benchmark headline ({meta['mode']} run, {meta['started_at'][:10]})"
    )
    blocks.append(
        Para(
            "Full report: [benchmarks/reports/sample/report.md](benchmarks/reports/sample/report.md); reproduce "
            "with `make bench` (see [benchmarks/README.md](benchmarks/README.md))."
        )
    )
    return to_markdown(blocks)


def _json_default(value: Any) -> Any:
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return value.item()
    except ImportError:  # pragma: no cover
        pass
    return str(value)


def _finite(value: Any) -> Any:
    """JSON has no Infinity/NaN: they become null."""
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _ordered(mapping: dict[str, Any], preferred: Any) -> dict[str, Any]:
    first = [k for k in preferred if k in mapping]
    return {k: mapping[k] for k in [*first, *(k for k in mapping if k not in first)]}


def _presentation_order(results: dict[str, Any]) -> dict[str, Any]:
    """Datasets, contenders, cold-start paths and libraries in the report's order.

    A results.json read back (``--render``) may have its keys sorted; the report's tables and
    plots follow these orders whatever the file's.
    """
    out = dict(results)
    out["datasets"] = _ordered(results["datasets"], DATASETS)
    for name, d in out["datasets"].items():
        d = dict(d)
        if "single_record" in d:
            d["single_record"] = _ordered(d["single_record"], CONTENDERS)
        if "batch" in d:
            d["batch"] = {n: _ordered(v, CONTENDERS) for n, v in sorted(d["batch"].items(), key=lambda i: int(i[0]))}
        if "cold_start" in d:
            d["cold_start"] = _ordered(d["cold_start"], COLD_PATHS)
        out["datasets"][name] = d
    machine = dict(results["machine"])
    machine["libraries"] = _ordered(machine["libraries"], LIBRARIES)
    out["machine"] = machine
    return out


def write_report(results: dict[str, Any], folder: Path) -> dict[str, Path]:
    """Write every file of the report into ``folder``; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    results = _presentation_order(results)
    plots = write_plots(results, LABELS, folder)
    results["plots"] = plots
    blocks = render_blocks(results, plots)
    title = f"edgeseg benchmark {results['meta']['started_at']}"
    paths = {
        "report.md": folder / "report.md",
        "report.html": folder / "report.html",
        "results.json": folder / "results.json",
        "headline.md": folder / "headline.md",
    }
    paths["report.md"].write_text(to_markdown(blocks), encoding="utf-8")
    paths["report.html"].write_text(to_html(blocks, title), encoding="utf-8")
    paths["results.json"].write_text(
        json.dumps(_finite(json.loads(json.dumps(results, default=_json_default))), indent=1) + "\n",
        encoding="utf-8",
    )
    paths["headline.md"].write_text(_headline_snippet(results), encoding="utf-8")
    return paths
