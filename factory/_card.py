"""Render the model card from the typed manifest: ``card.md`` and ``card.html`` (plots embedded).

Both come from one list of blocks (heading, paragraph, list, table, preformatted text, plot),
so the two files always say the same thing; the HTML adds the plots as base64 PNG data URIs
(no network, no CDN): the confusion matrix, SHAP importance and the search's Pareto front.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from typing import Any

from edge_runtime.artifact import SEARCH_LOG_FILE, Budgets, Manifest, Metrics, Parity, Search, Target
from factory._leaks import leak_warning

__all__ = ["card_blocks", "render_card", "render_card_html"]

Block = tuple[Any, ...]


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _f(value: Any, spec: str = ".4f") -> str:
    return "—" if value is None else format(value, spec)


def _sections(manifest: Manifest) -> tuple[Target, Metrics, Budgets, Search, Parity]:
    """The sections every factory-built manifest has (optional in the contract for old ones)."""
    target, metrics, budgets, search, parity = (
        manifest.target, manifest.metrics, manifest.budgets, manifest.search, manifest.parity
    )  # fmt: skip
    if metrics is None or budgets is None or search is None or parity is None:
        raise ValueError(f"manifest of {manifest.model_version} lacks metrics, budgets, search or parity: no card")
    return target, metrics, budgets, search, parity


def _g(value: float) -> str:
    return format(value, "g")


def _label_rule(rule: Any) -> str:
    if isinstance(rule, dict) and rule.get("kind") == "clusters":
        return (
            f"Label rule: segments discovered by {rule['method']} clustering, k by {rule['criterion']}, "
            "named by the rules below; the dormant rule first."
        )
    return "Label rule: see the table below."


def _plain(value: Any) -> str:
    """A value as a reader sees it: numbers short, numpy scalars as Python's, lists joined."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # np.str_('x') -> 'x', np.float64(1.5) -> 1.5
    if isinstance(value, bool) or value is None:
        return str(value).lower() if value is not None else "—"
    if isinstance(value, float):
        return format(value + 0.0, ".4g")  # + 0.0: no "-0"
    if isinstance(value, (list, tuple)):
        return ", ".join(_plain(v) for v in value)
    if isinstance(value, Mapping):
        return "; ".join(f"{k} {_plain(v)}" for k, v in value.items())
    return str(value)


def _settings_table(values: Mapping[str, Any] | None, header: tuple[str, str] = ("setting", "value")) -> Block:
    """A mapping (label rule, chosen settings, versions, device profile) as a two-column table."""
    return ("table", list(header), [[key, _plain(value)] for key, value in sorted((values or {}).items())])


def natural_order(classes: Sequence[str]) -> list[str]:
    """Classes as a reader expects them: value tiers low to high (lapsed → top), else as given."""
    from factory.features import VALUE_TIERS

    rank = {name: i for i, name in enumerate(VALUE_TIERS)}
    if not all(name in rank for name in classes):
        return list(classes)
    return sorted(classes, key=rank.__getitem__)


def prune_same_class_splits(rules: str) -> str:
    """sklearn ``export_text`` rules without splits whose two sides end in the same class.

    A depth-3 tree often splits where both leaves say ``lapsed``: true to the tree, noise to a
    reader. Such a split becomes its leaf, repeatedly, so no rule shows two equal leaves.
    """
    lines = [line for line in rules.splitlines() if line.strip()]
    changed = True
    while changed:
        changed = False
        for i in range(len(lines) - 3):
            depth = lines[i].index("|---")
            a, leaf_a, b, leaf_b = lines[i : i + 4]
            if (
                "class:" not in a
                and "class:" in leaf_a
                and "class:" in leaf_b
                and "class:" not in b
                and a.index("|---") == b.index("|---") == depth
                and leaf_a.index("|---") == leaf_b.index("|---") == depth + 4
                and leaf_a.split("class:")[1].strip() == leaf_b.split("class:")[1].strip()
            ):
                lines[i : i + 4] = [leaf_a[:depth] + "|---" + leaf_a[leaf_a.index("|---") + 4 :]]
                changed = True
                break
    return "\n".join(lines) + "\n"


def card_blocks(manifest: Manifest) -> list[Block]:
    """The card's content in order: ("h", level, text) · ("p", text) · ("ul", [items]) ·
    ("table", header, rows) · ("pre", text) · ("plot", key, caption)."""
    target, metrics, budgets, search, parity = _sections(manifest)
    test = metrics.test
    measured = budgets.measured
    classes = natural_order(target.classes)
    position = [list(target.classes).index(c) for c in classes]  # manifest order -> natural order
    data = manifest.data or {}
    b: list[Block] = [
        ("h", 1, f"Model card: {manifest.model_version}"),
        (
            "p",
            f"Classifies a customer into one of {len(classes)} segments of `{target.name}` "
            f"({', '.join(classes)}) at the till, from {len(manifest.inputs)} raw inputs, "
            "in one ONNX graph served by the edgeseg edge runtime.",
        ),
        *_use_blocks(manifest, metrics),
        ("h", 2, "Data"),
        (
            "ul",
            [
                f"Source: `{data.get('source')}` ({data.get('rows')} rows, "
                f"fingerprint `{(data.get('fingerprint') or '')[:16]}…`).",
                f"Split: {metrics.n_train} train / {metrics.n_val} validation / {metrics.n_test} test rows "
                "(stratified; the test rows were never seen by the search).",
                *([_label_rule(target.label_rule)] if target.label_rule else []),
                *(f"{note[:1].upper()}{note[1:]}." for note in data.get("notes", [])),
                *(f"**Suspected leak:** {leak_warning(leak)}." for leak in data.get("suspected_leaks", [])),
            ],
        ),
    ]
    if isinstance(target.label_rule, Mapping) and target.label_rule.get("kind") != "clusters":
        b.append(_settings_table(target.label_rule, ("label rule", "value")))
    b += _dictionary_blocks(manifest)
    if manifest.segments:
        b += _segment_blocks(manifest.segments)
    if manifest.few_labels:
        b += _few_blocks(manifest.few_labels)
    b += [
        ("h", 2, "Quality on held-out data"),
        (
            "p",
            f"Search metric: **{metrics.metric}**. Test accuracy {_f(test['accuracy'])}, "
            f"macro F1 {_f(test['macro_f1'])}, log loss {_f(test['log_loss'])}.",
        ),
        (
            "table",
            ["segment", "precision", "recall", "f1", "support"],
            [
                [c, f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1']:.3f}", v["support"]]
                for c, v in sorted(test["per_class"].items(), key=lambda kv: _rank(classes, kv[0]))
            ],
        ),
        ("p", "Confusion matrix (rows = truth, columns = predicted):"),
        (
            "table",
            ["truth \\ predicted", *classes],
            [[c, *[test["confusion_matrix"][i][j] for j in position]] for c, i in zip(classes, position, strict=True)],
        ),
        ("plot", "confusion", "Confusion matrix on the test rows"),
    ]
    baseline = metrics.baseline
    if baseline:
        from factory.explain._baseline import baseline_card_blocks

        b += baseline_card_blocks(
            metrics, search.learner, selection=search.selection, exported_trial=search.trial_index
        )
        if baseline.get("decision_tree", {}).get("rules"):
            b += [
                ("p", "The depth-3 tree, readable as rules (splits whose two sides give the same class merged):"),
                ("pre", prune_same_class_splits(baseline["decision_tree"]["rules"])),
            ]
    b += _explain_blocks(manifest)
    preprocessing = manifest.preprocessing or {}
    if preprocessing:
        items = [f"Numeric imputer: **{preprocessing.get('numeric_imputer')}**."]
        missing = preprocessing.get("missing_in_training") or {}
        if missing:
            items.append("Missing in training: " + ", ".join(f"{k} {v:.1%}" for k, v in missing.items()) + ".")
        comparison = preprocessing.get("comparison")
        if comparison:
            items.append(
                f"Effect on test {comparison['metric']} (same learner and config, same split): "
                + ", ".join(f"{k} {_f(v)}" for k, v in comparison["test"].items())
                + "."
            )
        b += [("h", 2, "Preprocessing"), ("ul", items)]
    b += [
        ("h", 2, "Budgets (target device)"),
        (
            "table",
            ["budget", "asked", "measured"],
            [
                ["p99 latency, single row (µs)", _g(budgets.latency_p99_us), f"{measured.latency_p99_us:.1f}"],
                ["p50 latency, single row (µs)", "—", f"{measured.latency_p50_us:.1f}"],
                ["artifact size (bytes)", budgets.size_bytes, measured.size_bytes],
            ],
        ),
        *(
            [("p", "Device profile:"), _settings_table(measured.device_profile, ("device profile", "value"))]
            if measured.device_profile
            else [("p", "Device profile: this build machine (scale 1.0).")]
        ),
        ("h", 2, "Search"),
        (
            "p",
            f"FLAML over {', '.join(search.estimator_list)}, {search.trials} trials "
            f"({search.feasible_trials} within budget) in {search.wall_time_s:.1f} s, seed {search.seed}. "
            f"Chosen: **{search.learner}** with the settings below. Every trial is in `{SEARCH_LOG_FILE}`.",
        ),
        _settings_table(search.config, ("chosen setting", "value")),
        ("plot", "pareto", "Validation quality vs single-row p99 latency of every trial"),
        ("h", 2, "Parity (ONNX vs native)"),
        (
            "p",
            f"{parity.rows} rows ({parity.rows_with_missing} with a missing value, "
            f"{parity.rows_with_unseen_category} with unseen categories): labels agree on "
            f"{parity.label_agreement:.4%}, max probability difference {parity.max_abs_prob_diff:.2e}.",
        ),
    ]
    b += _profile_blocks(manifest, classes)
    b += [("p", f"Built {manifest.created_at} with:"), _settings_table(manifest.libraries, ("library", "version"))]
    if manifest.promotion is not None:
        from factory.retrain import card_blocks as retrain_blocks

        b += retrain_blocks(manifest.promotion, manifest.lineage or {})
    return b


def _rank(classes: list[str], name: str) -> int:
    return classes.index(name) if name in classes else len(classes)


def _use_blocks(manifest: Manifest, metrics: Metrics) -> list[Block]:
    """Intended use and limitations: what the model is for and where it stops being right."""
    accuracy = metrics.test.get("accuracy")
    dates = (manifest.data or {}).get("report") or {}
    cutoff = dates.get("cutoff") if isinstance(dates, Mapping) else None
    return [
        ("h", 2, "Intended use and limitations"),
        (
            "ul",
            [
                "Intended use: tag a customer at the till (or in a batch) with a segment for service, offers "
                "and reporting by segment at head office; one record in, one segment and its probabilities out.",
                f"Not for decisions about an individual with legal or similar effect: test accuracy is "
                f"{_f(accuracy, '.1%') if accuracy is not None else '—'}, so a sizeable share of customers is "
                "put in the wrong segment; use the probabilities, not just the label.",
                "Inputs must be computed as in training (the feature dictionary below: units and meaning); "
                "the device refuses a record missing an input training always had or with an unknown field "
                "(strict contract), and counts unseen categories and out-of-range numbers.",
                "The world moves: "
                + (f"the features describe customers at the cutoff {str(cutoff)[:10]}; " if cutoff else "")
                + "watch the drift (PSI) and accuracy on the head-office dashboard and retrain when they move.",
                "Customer ids never leave the device in clear: results carry an HMAC pseudonym.",
            ],
        ),
    ]


def _dictionary_blocks(manifest: Manifest) -> list[Block]:
    """The feature dictionary: every input with its meaning, unit, type and missing share."""
    dictionary = manifest.feature_dictionary or {}
    rows = []
    for spec in manifest.inputs:
        entry = dictionary.get(spec.name) or {}
        if spec.type == "number":
            seen = f"{_plain(spec.min)} … {_plain(spec.max)}" if spec.min is not None else "—"
        else:
            seen = f"{len(spec.categories or ())} categories"
        missing = "—" if spec.missing_in_training is None else f"{spec.missing_in_training:.1%}"
        rows.append([spec.name, entry.get("meaning", "—"), entry.get("unit", "—"), spec.type, seen, missing])
    return [
        ("h", 2, "Feature dictionary"),
        ("table", ["input", "meaning", "unit", "type", "training range", "missing in training"], rows),
    ]


def _profile_blocks(manifest: Manifest, classes: list[str]) -> list[Block]:
    """Segment profiles for every input: medians of numbers, most frequent value of strings."""
    profiles = manifest.target.profiles or {}
    if not profiles:
        return []
    shown = [c for c in classes if c in profiles] + [c for c in profiles if c not in classes]
    rows: list[list[Any]] = [
        ["customers", *[f"{profiles[c]['count']} ({profiles[c]['share']:.1%})" for c in shown]],
    ]
    for spec in manifest.inputs:
        key = "medians" if spec.type == "number" else "top_categories"
        rows.append([spec.name, *[_plain((profiles[c].get(key) or {}).get(spec.name)) for c in shown]])
    return [
        ("h", 2, "Segment profiles"),
        ("p", "Per segment (training rows): the median of each number, the most frequent value of each string."),
        ("table", ["input", *shown], rows),
    ]


def _segment_blocks(segments: Mapping[str, Any]) -> list[Block]:
    scores = segments["scores"]
    alt = segments.get("alternative") or {}
    dormant = segments["dormant"]
    blocks: list[Block] = [
        ("h", 2, "Segments discovered by clustering"),
        (
            "p",
            f"{segments['n_customers']} customers; {dormant.get('count', 0)} dormant by rule "
            f"({dormant.get('rule') or dormant.get('reason')}), the other {segments['n_clustered']} clustered on "
            f"{len(segments['features'])} features ({segments['scaling']}). Method **{segments['method']}**, "
            f"k chosen by **{segments['criterion']}** over k = {segments['k_range'][0]}..{segments['k_range'][-1]}: "
            f"chose k = {segments['chosen_k']}"
            + (f" (overridden; the criterion chose {segments['criterion_k']})" if segments.get("overridden") else "")
            + ". The classifier learns every segment, dormant included.",
        ),
        ("table", ["k", *scores.keys()], [[segments["criterion"], *[f"{v:.4f}" for v in scores.values()]]]),
    ]
    if alt:
        blocks.append(
            (
                "p",
                f"Alternative, reported not used: {alt['method']} by {alt['criterion']} chose k = {alt['chosen_k']}; "
                f"adjusted Rand index against the segments used: {alt['adjusted_rand_index_vs_chosen']:.3f}.",
            )
        )
    rows = []
    for name, p in segments["profiles"].items():
        top = "; ".join(f"{e['feature']} {e['effect']:+.2f}" for e in p.get("distinguishing", []))
        rows.append([name, p["count"], f"{p['share']:.1%}", p.get("naming", {}).get("condition", ""), top])
    blocks += [
        (
            "table",
            ["segment", "customers", "share", "named because", "distinguishing (std. median diff. vs rest)"],
            rows,
        ),
        ("p", "Naming rules, tried in this order (percentiles are among the clustered customers):"),
        ("ul", [f"**{r['name']}**: {r['condition']}" for r in segments.get("naming_rules", [])]),
    ]
    return blocks


def _few_blocks(few: Mapping[str, Any]) -> list[Block]:
    hold = few["holdout"]
    conf = few["confidence"]
    return [
        ("h", 2, "Few labels, spread by label propagation"),
        (
            "ul",
            [
                f"{few['n_given']} rows carried a label; {few['n_inferred']} labels were inferred "
                f"with {few['method']}; {few.get('n_unreached', 0)} of them were not connected to any labelled "
                "row and took the labelled-only classifier's prediction.",
                f"Confidence of inferred labels: min {conf['min']:.2f}, 10th percentile {conf['p10']:.2f}, "
                f"median {conf['median']:.2f}, 90th percentile {conf['p90']:.2f}; histogram over "
                f"{conf['bins']}: {conf['histogram']}.",
                f"On {hold['rows']} held-out labelled rows ({hold['reference_classifier']}): trained on the "
                f"{hold['labelled_train_rows']} labelled rows alone {hold['accuracy_labelled_only']:.4f}; with "
                f"propagated labels {hold['accuracy_with_propagated']:.4f}; the propagation itself "
                f"{hold['propagation_accuracy']:.4f}. Propagation "
                + ("helped." if hold["propagation_helps"] else "did **not** help."),
                few.get("note", ""),
            ],
        ),
    ]


def _explain_blocks(manifest: Manifest) -> list[Block]:
    explain = manifest.explain
    importance = (explain.global_importance if explain else None) or {}
    blocks: list[Block] = [("h", 2, "Explanations")]
    ranking = importance.get("ranking") or []
    if ranking:
        total = sum(float(r["mean_abs_shap"]) for r in ranking) or 1.0
        blocks += [
            (
                "p",
                f"Global feature importance: {importance['method']}. Shown as each input's share of the total "
                f"mean |SHAP| (%), one unit whatever the learner's raw output (here {importance['output']}), "
                "so cards of different learners compare.",
            ),
            (
                "table",
                ["input", "share of importance"],
                [[r["feature"], f"{100 * float(r['mean_abs_shap']) / total:.1f}%"] for r in ranking],
            ),
            ("plot", "importance", "SHAP importance per input"),
        ]
    else:
        blocks.append(("p", f"SHAP importance unavailable: {importance.get('error')}"))
    if explain and explain.device_method:
        blocks.append(("p", f"On the device: {explain.device_method}."))
    return blocks


def render_card(manifest: Manifest) -> str:
    """Markdown card (plots are in card.html)."""
    out: list[str] = []
    for block in card_blocks(manifest):
        kind = block[0]
        if kind == "h":
            out += ["#" * block[1] + " " + block[2], ""]
        elif kind == "p":
            out += [block[1], ""]
        elif kind == "ul":
            out += [f"- {item}" for item in block[1] if item] + [""]
        elif kind == "table":
            out += [_table(block[1], block[2]), ""]
        elif kind == "pre":
            out += ["```", block[1].rstrip(), "```", ""]
        elif kind == "plot":
            out += [f"_{block[2]}: see card.html._", ""]
    return "\n".join(out)


def _inline(text: str) -> str:
    """Escape, then the two Markdown marks the card uses: **bold** and `code`."""
    import re

    escaped = html.escape(str(text))
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", escaped)


def _plots(manifest: Manifest, trials: Sequence[Mapping[str, Any]]) -> dict[str, bytes]:
    from factory.explain import confusion_matrix_png, importance_png, pareto_png

    target, metrics, budgets, search, _ = _sections(manifest)
    plots = {
        "confusion": confusion_matrix_png(metrics.test["confusion_matrix"], list(target.classes)),
        "pareto": pareto_png(trials, budgets.latency_p99_us, search.trial_index, metrics.metric),
    }
    ranking = ((manifest.explain.global_importance if manifest.explain else None) or {}).get("ranking")
    if ranking:
        features = {r["feature"]: r["mean_abs_shap"] for r in ranking}
        plots["importance"] = importance_png(features, "Global importance (mean |SHAP|)")
    return plots


_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.45}"
    "table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.2rem .5rem;text-align:left}"
    "pre{background:#f6f6f6;padding:.5rem;overflow-x:auto}img{max-width:100%}figure{margin:1rem 0}"
)


def render_card_html(manifest: Manifest, trials: Sequence[Mapping[str, Any]]) -> str:
    """Self-contained HTML card: the Markdown card's content plus embedded PNG plots."""
    plots = _plots(manifest, trials)
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(manifest.model_version)} model card</title>",
        f"<style>{_STYLE}</style></head><body>",
    ]
    for block in card_blocks(manifest):
        kind = block[0]
        if kind == "h":
            out.append(f"<h{block[1]}>{_inline(block[2])}</h{block[1]}>")
        elif kind == "p":
            out.append(f"<p>{_inline(block[1])}</p>")
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block[1] if i) + "</ul>")
        elif kind == "table":
            head = "".join(f"<th>{_inline(h)}</th>" for h in block[1])
            body = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in block[2])
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif kind == "pre":
            out.append(f"<pre>{html.escape(block[1])}</pre>")
        elif kind == "plot" and block[1] in plots:
            data = base64.b64encode(plots[block[1]]).decode("ascii")
            out.append(
                f'<figure id="plot-{block[1]}"><img alt="{html.escape(block[2])}" '
                f'src="data:image/png;base64,{data}"><figcaption>{html.escape(block[2])}</figcaption></figure>'
            )
    out.append("</body></html>")
    return "\n".join(out) + "\n"
