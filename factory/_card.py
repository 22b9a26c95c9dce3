"""Render the model card (card.md) from the manifest: what the model is for and how good it is."""

from __future__ import annotations

from typing import Any

__all__ = ["render_card"]


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def render_card(manifest: dict[str, Any]) -> str:
    """Markdown card: purpose, data, metrics per segment, confusion matrix, budgets, parity."""
    target = manifest["target"]
    metrics = manifest["metrics"]
    test = metrics["test"]
    budgets = manifest["budgets"]
    measured = budgets["measured"]
    search = manifest["search"]
    classes = target["classes"]
    parts = [
        f"# Model card: {manifest['model_version']}",
        "",
        f"Classifies a customer into one of {len(classes)} segments of `{target['name']}` "
        f"({', '.join(classes)}) at the till, from {len(manifest['inputs'])} raw inputs, "
        "in one ONNX graph served by the edgeseg edge runtime.",
        "",
        "## Data",
        f"- Source: `{manifest['data'].get('source')}` ({manifest['data'].get('rows')} rows, "
        f"fingerprint `{manifest['data'].get('fingerprint', '')[:16]}…`).",
        f"- Split: {metrics['n_train']} train / {metrics['n_val']} validation / {metrics['n_test']} test rows "
        "(stratified; the test rows were never seen by the search).",
    ]
    if target.get("label_rule"):
        parts.append(f"- Label rule: `{target['label_rule']}`")
    parts += [
        "",
        "## Quality on held-out data",
        f"Search metric: **{metrics['metric']}**. Test accuracy {test['accuracy']:.4f}, "
        f"macro F1 {test['macro_f1']:.4f}, log loss {test['log_loss']:.4f}.",
        "",
        _table(
            ["segment", "precision", "recall", "f1", "support"],
            [
                [c, f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1']:.3f}", v["support"]]
                for c, v in test["per_class"].items()
            ],
        ),
        "",
        "Confusion matrix (rows = truth, columns = predicted):",
        "",
        _table(
            ["truth \\ predicted", *classes],
            [[c, *row] for c, row in zip(classes, test["confusion_matrix"], strict=True)],
        ),
        "",
        "## Budgets (target device)",
        _table(
            ["budget", "asked", "measured"],
            [
                ["p99 latency, single row (µs)", budgets["latency_p99_us"], f"{measured['latency_p99_us']:.1f}"],
                ["p50 latency, single row (µs)", "—", f"{measured['latency_p50_us']:.1f}"],
                ["artifact size (bytes)", budgets["size_bytes"], measured["size_bytes"]],
            ],
        ),
        f"Device profile: {measured.get('device_profile') or 'this build machine (scale 1.0)'}.",
        "",
        "## Search",
        f"FLAML over {', '.join(search['estimator_list'])}, {search['trials']} trials "
        f"({search['feasible_trials']} within budget) in {search['wall_time_s']:.1f} s, seed {search['seed']}. "
        f"Chosen: **{search['learner']}** with `{search['config']}`. Every trial is in `search_log.jsonl`.",
        "",
        "## Parity (ONNX vs native)",
        f"{manifest['parity']['rows']} rows ({manifest['parity']['rows_with_missing']} with a missing value, "
        f"{manifest['parity']['rows_with_unseen_category']} with unseen categories): labels agree on "
        f"{manifest['parity']['label_agreement']:.4%}, max probability difference "
        f"{manifest['parity']['max_abs_prob_diff']:.2e}.",
        "",
        "## Segment profiles (training rows)",
    ]
    for name, profile in target.get("profiles", {}).items():
        medians = ", ".join(f"{k} {v:.4g}" for k, v in list(profile.get("medians", {}).items())[:8])
        parts.append(f"- **{name}**: {profile['count']} customers ({profile['share']:.1%}); medians: {medians}")
    parts += ["", f"Built {manifest['created_at']} with {manifest['libraries']}.", ""]
    return "\n".join(parts)
