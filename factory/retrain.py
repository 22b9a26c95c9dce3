"""Retrain a champion on newer data and decide, on the newest matured window, whether to promote.

    edgeseg-factory retrain --champion exported_models/retail-tier/20261101T000000Z \\
        --data transactions.parquet [--cutoff 2011-10-01] [--margin 0.01]

The loop (docs/DESIGN.md §8):

* **Time splits.** For a log-derived label with horizon ``H`` the newest *matured* window has
  cutoff ``T`` (default: the log's last day − H): its labels ``[T, T+H)`` are known. The
  challenger trains on the table at cutoff ``T−H`` (features before ``T−H``, labels
  ``[T−H, T)``) and champion and challenger are both scored on the table at ``T`` — the label
  windows never overlap, and nothing after ``T+H`` is read (``--cutoff`` travels back in time).
* **Warm start.** The challenger gets the champion's settings (budgets, metric, learners, seed,
  imputer, feature job) and FLAML ``starting_points``: the champion's best trial configurations
  per learner, read from its ``search_log.jsonl``.
* **Promotion gate.** Promote only when the challenger's quality on that window beats the
  champion's by at least ``margin`` *and* the paired bootstrap confidence interval of the
  difference (same customers resampled for both) lies above zero, and the build met its budgets,
  parity and the feature skew gate (the build refuses otherwise). The decision, its reasons and
  numbers go into the challenger's manifest (``promotion``) and card, with its ``lineage``
  (parent version, data window, data fingerprints). A challenger the gate refuses is still
  written (its card says why); central's ``rollout start`` refuses to roll it out.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from edge_runtime.artifact import SEARCH_LOG_FILE, Manifest, read_manifest
from factory._config import BuildConfig
from factory._federated import DEFAULT_MIN_SHARE, federated_card_blocks, federated_section, load_federated_stats
from factory._manifest import frame_fingerprint
from factory.errors import FactoryInputError

__all__ = [
    "Champion",
    "GateResult",
    "RetrainResult",
    "WindowTables",
    "card_blocks",
    "champion_starting_points",
    "paired_bootstrap",
    "promotion_gate",
    "read_champion",
    "retrain",
    "add_retrain_parser",
    "run_retrain",
    "warm_start_searches",
    "window_tables",
]

#: Default promotion margin: the challenger must be this much better on the newest window.
DEFAULT_MARGIN = 0.01
DEFAULT_RESAMPLES = 1000
DEFAULT_CONFIDENCE = 0.95
#: Best configurations per learner taken from the champion's search log as starting points.
POINTS_PER_LEARNER = 3
LABEL = "value_tier"
ID_COLUMN = "customer_id"


# ----------------------------------------------------------------------------- the champion
@dataclass(frozen=True)
class Champion:
    """A signed artifact read back as the settings a retrain repeats."""

    artifact_dir: Path
    manifest: Manifest
    trials: list[dict[str, Any]]

    @property
    def model_version(self) -> str:
        return self.manifest.model_version

    @property
    def report(self) -> Mapping[str, Any]:
        """The data report of the feature job the champion was trained from."""
        data = self.manifest.data or {}
        report = data.get("report")
        if not isinstance(report, Mapping) or "horizon_days" not in report:
            raise FactoryInputError(
                f"champion {self.model_version}: its manifest's data.report has no horizon_days; retrain "
                "needs a model of the transaction-log job (edgeseg-factory build-default)"
            )
        return report

    @property
    def horizon_days(self) -> float:
        return float(self.report["horizon_days"])

    @property
    def dormant_days(self) -> float:
        return float(self.report.get("dormant_days", 30))

    def config(self, **overrides: Any) -> BuildConfig:
        """The champion's BuildConfig fields (budgets, metric, learners, seed, imputer, name)."""
        m = self.manifest
        assert m.budgets and m.search and m.metrics, "the factory writes every section"
        search: Mapping[str, Any] = m.search.to_json()
        prep = m.preprocessing or {}
        fields: dict[str, Any] = {
            "target": m.target.name,
            "id_column": m.id_field or ID_COLUMN,
            "name": m.name,
            "latency_budget_us": m.budgets.latency_p99_us,
            "size_budget_kb": m.budgets.size_bytes / 1024,
            "time_budget_s": float(search.get("time_budget_s", 60)),
            "metric": m.metrics.metric,
            "learners": tuple(search.get("estimator_list") or ("lgbm",)),
            "seed": int(search.get("seed", 0)),
            "numeric_imputer": str(prep.get("numeric_imputer", "median")),
            "out_dir": self.artifact_dir.parent.parent,
        }
        fields.update(overrides)
        return BuildConfig(**fields)


def read_champion(artifact_dir: str | Path) -> Champion:
    """The champion's manifest (validated) and search log; FactoryInputError when absent."""
    folder = Path(artifact_dir)
    try:
        manifest = read_manifest(folder)
    except (OSError, ValueError) as exc:
        raise FactoryInputError(f"--champion {folder}: not a readable artifact ({exc})") from exc
    trials: list[dict[str, Any]] = []
    log = folder / SEARCH_LOG_FILE
    if log.is_file():
        trials = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    return Champion(folder, manifest, trials)


def _search_space_point(learner: str, config: Mapping[str, Any], n_rows: int, n_features: int) -> dict[str, Any]:
    """A trial's fitted parameters as a point of FLAML's search space for ``learner`` (FLAML
    looks every key of a starting point up in the space, and names some differently)."""
    from flaml.automl.task.factory import task_factory

    task = task_factory("classification")
    space = task.estimator_class_from_str(learner).search_space(data_size=(n_rows, n_features), task=task)
    renamed = dict(config)
    if "max_bin" in renamed:
        renamed["log_max_bin"] = int(round(math.log2(float(renamed.pop("max_bin")) + 1)))
    if "max_leaf_nodes" in renamed:
        renamed["max_leaves"] = renamed.pop("max_leaf_nodes")
    return {key: value for key, value in renamed.items() if key in space and value is not None}


def champion_starting_points(
    champion: Champion, *, n_rows: int, n_features: int, per_learner: int = POINTS_PER_LEARNER
) -> dict[str, list[dict[str, Any]]]:
    """The champion's best feasible FLAML trials, ``per_learner`` per learner, as starting points;
    the exported trial's configuration first; ``n_rows``: the new training rows."""
    learners = set(champion.config().learners)
    ranked = sorted(
        (t for t in champion.trials if t.get("feasible") and not t.get("error") and t.get("learner") in learners),
        key=lambda t: float(t.get("loss", math.inf)),
    )
    exported = champion.manifest.search
    if exported is not None and exported.learner in learners:
        ranked.insert(0, {"learner": exported.learner, "config": dict(exported.config)})
    points: dict[str, list[dict[str, Any]]] = {}
    for trial in ranked:
        point = _search_space_point(trial["learner"], trial.get("config") or {}, n_rows, n_features)
        chosen = points.setdefault(trial["learner"], [])
        if point and point not in chosen and len(chosen) < per_learner:
            chosen.append(point)
    # FLAML's own first sample size is kept: pinning FLAML_sample_size to all rows made every warm
    # trial a full fit, and in benchmarks.warm_start that reached the champion later on one seed of
    # two (fewer trials in the budget), sooner on the other.
    return points


# ----------------------------------------------------------------------------- time splits
@dataclass(frozen=True)
class WindowTables:
    """The challenger's training table (cutoff T−H) and the newest matured window (cutoff T)."""

    train: pd.DataFrame
    evaluation: pd.DataFrame
    train_info: dict[str, Any]
    eval_info: dict[str, Any]
    window: dict[str, Any]  # cutoffs, label windows, log span and fingerprints (the lineage's data)


def window_tables(
    log_path: str | Path | None,
    *,
    horizon_days: float,
    dormant_days: float,
    cutoff: str | pd.Timestamp | None = None,
) -> WindowTables:
    """Both tables of a retrain from one read of the log, nothing after ``T + H`` used.

    ``cutoff`` is ``T``, the newest matured window's cutoff (default: the last day of the log
    − H). The training table passes the skew gate (its ``info`` carries the feature program).
    """
    from factory.features._columns import TIMESTAMP
    from factory.features._table import default_log_path, load_log
    from factory.features._value_tier import cutoff_for_span, value_tier_from_spend
    from factory.skew import check_skew

    source = default_log_path() if log_path is None else Path(log_path)
    log = load_log(source)
    horizon = pd.Timedelta(days=horizon_days)
    at = cutoff_for_span(log.first, log.last, horizon_days) if cutoff is None else pd.Timestamp(cutoff)
    train_at = at - horizon
    if train_at <= log.first:
        raise FactoryInputError(
            f"The 'cutoff' parameter of retrain leaves no history before the training cutoff {train_at.date()} "
            f"(T − {horizon_days:g} days); the log starts {log.first}. Got {str(cutoff)!r} instead."
        )
    assert log.frame is not None, "the pandas engine keeps the cleaned log"
    frame = log.frame
    used = frame.loc[frame[TIMESTAMP] < at + horizon]  # time travel: the log as known at T + H
    last_used = used[TIMESTAMP].max()
    tables: list[pd.DataFrame] = []
    infos: list[dict[str, Any]] = []
    built: list[pd.DataFrame] = []
    for when in (train_at, at):
        features = log.features(when, dormant_days)
        built.append(features)
        tier, tier_info = value_tier_from_spend(
            log.window_spend, max(last_used, when + horizon), when, features.index, horizon_days=horizon_days
        )
        table = features.assign(**{LABEL: tier}).reset_index()
        table[ID_COLUMN] = table[ID_COLUMN].astype("str")
        info: dict[str, Any] = {
            "source": str(source),
            "engine": "pandas",
            "cutoff": when.isoformat(),
            "horizon_days": horizon_days,
            "dormant_days": dormant_days,
            "n_customers": int(len(table)),
            "thresholds": tier_info,
            "tier_counts": tier_info["counts"],
        }
        tables.append(table)
        infos.append(info)
    gate = check_skew(frame, train_at, columns=log.columns, dormant_days=dormant_days, features=built[0])
    infos[0]["feature_program"] = gate.pop("feature_program")
    infos[0]["skew_gate"] = gate
    window = {
        "log": str(source),
        "log_first": log.first.isoformat(),
        "log_last_used": pd.Timestamp(last_used).isoformat(),
        "train_cutoff": train_at.isoformat(),
        "train_label_window": [train_at.isoformat(), at.isoformat()],
        "eval_cutoff": at.isoformat(),
        "eval_label_window": [at.isoformat(), (at + horizon).isoformat()],
        "horizon_days": horizon_days,
        "train_fingerprint": frame_fingerprint(frame.loc[frame[TIMESTAMP] < at]),
        "eval_fingerprint": frame_fingerprint(used),
    }
    return WindowTables(tables[0], tables[1], infos[0], infos[1], window)


# ----------------------------------------------------------------------------- the gate
def _quality(metric: str, y: np.ndarray, predicted: np.ndarray, n_classes: int) -> float:
    """Accuracy or macro F1 from class positions (fast enough to resample a thousand times)."""
    if metric == "accuracy":
        return float(np.mean(y == predicted)) if len(y) else math.nan
    confusion = np.bincount(y * n_classes + predicted, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    tp = np.diag(confusion).astype(float)
    support, chosen = confusion.sum(axis=1), confusion.sum(axis=0)
    denominator = support + chosen
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    return float(f1.mean())


def paired_bootstrap(
    y: np.ndarray,
    champion: np.ndarray,
    challenger: np.ndarray,
    *,
    metric: str,
    n_classes: int,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> dict[str, float]:
    """Challenger − champion quality on ``y`` and its percentile bootstrap interval.

    Paired: each resample draws the same customers for both models, so the interval is about
    the difference, not two independent noisy numbers. ``metric`` is ``accuracy`` or
    ``macro_f1`` (others are judged on macro F1, see ``promotion_gate``).
    """
    rng = np.random.default_rng(seed)
    n = len(y)
    deltas = np.empty(resamples)
    for i in range(resamples):
        pick = rng.integers(0, n, n)
        deltas[i] = _quality(metric, y[pick], challenger[pick], n_classes) - _quality(
            metric, y[pick], champion[pick], n_classes
        )
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(deltas, [tail, 100 - tail])
    return {
        "champion": _quality(metric, y, champion, n_classes),
        "challenger": _quality(metric, y, challenger, n_classes),
        "difference": _quality(metric, y, challenger, n_classes) - _quality(metric, y, champion, n_classes),
        "ci_low": float(low),
        "ci_high": float(high),
    }


@dataclass(frozen=True)
class GateResult:
    """The promotion gate's decision, reasons and numbers (the manifest's ``promotion``)."""

    promote: bool
    reasons: list[str]
    section: dict[str, Any] = field(default_factory=dict)


def promotion_gate(
    y: Sequence[str],
    champion_pred: Sequence[str],
    challenger_pred: Sequence[str],
    *,
    classes: Sequence[str],
    metric: str,
    margin: float = DEFAULT_MARGIN,
    checks: Mapping[str, bool],
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
    champion_version: str = "",
    window: Mapping[str, Any] | None = None,
) -> GateResult:
    """Promote only if better by ``margin`` with the bootstrap interval above zero and every check
    in ``checks`` (budgets, parity, skew gate) passed; otherwise say which rule kept the champion."""
    judged = metric if metric in ("accuracy", "macro_f1") else "macro_f1"
    index = {name: i for i, name in enumerate(classes)}
    unknown = sorted({str(v) for v in [*y, *champion_pred, *challenger_pred]} - set(index))
    if unknown:
        raise FactoryInputError(f"promotion gate: class {unknown[0]!r} is not one of the models' classes {classes!r}")
    codes = [
        np.asarray([index[str(v)] for v in values], dtype=np.int64) for values in (y, champion_pred, challenger_pred)
    ]
    numbers = paired_bootstrap(
        *codes, metric=judged, n_classes=len(classes), resamples=resamples, confidence=confidence, seed=seed
    )
    accuracy = {
        "champion": float(np.mean(codes[0] == codes[1])),
        "challenger": float(np.mean(codes[0] == codes[2])),
    }
    reasons: list[str] = []
    if numbers["difference"] < margin:
        reasons.append(
            f"{judged} {numbers['challenger']:.4f} vs champion {numbers['champion']:.4f}: difference "
            f"{numbers['difference']:+.4f} is below the margin {margin:g}"
        )
    if not numbers["ci_low"] > 0:
        reasons.append(
            f"the {confidence:.0%} paired bootstrap interval of the difference "
            f"[{numbers['ci_low']:+.4f}, {numbers['ci_high']:+.4f}] does not exclude zero"
        )
    reasons.extend(f"{name} not passed" for name, passed in checks.items() if not passed)
    promote = not reasons
    section = {
        "decision": "promote" if promote else "keep_champion",
        "reasons": reasons or [f"{judged} better by {numbers['difference']:+.4f} (>= {margin:g}), CI above zero"],
        "metric": judged,
        "margin": margin,
        "confidence": confidence,
        "bootstrap_resamples": resamples,
        "rows": len(codes[0]),
        "champion": {"model_version": champion_version, judged: numbers["champion"], "accuracy": accuracy["champion"]},
        "challenger": {judged: numbers["challenger"], "accuracy": accuracy["challenger"]},
        "difference": numbers["difference"],
        "ci": [numbers["ci_low"], numbers["ci_high"]],
        "checks": dict(checks),
        "window": dict(window or {}),
    }
    return GateResult(promote, reasons, section)


# ----------------------------------------------------------------------------- retrain
@dataclass(frozen=True)
class RetrainResult:
    """The written challenger, the gate's decision and the tables it was judged on."""

    artifact_dir: Path
    manifest: Manifest
    gate: GateResult
    tables: WindowTables
    starting_points: dict[str, list[dict[str, Any]]]
    search_wall_time_s: float
    trials: list[dict[str, Any]]

    @property
    def promoted(self) -> bool:
        return self.gate.promote


def _champion_predictions(champion: Champion, table: pd.DataFrame, public_key: Any) -> np.ndarray:
    """The champion's classes for a table, through the device's own loader and graph."""
    from edge_runtime.classifier import Classifier

    classifier = Classifier.load(champion.artifact_dir, public_key)
    columns = {spec.name: table[spec.name].to_numpy() for spec in champion.manifest.inputs}
    return np.asarray(classifier.classify_many(columns).segments, dtype=object)


def retrain(
    champion_dir: str | Path,
    data: str | Path | None = None,
    *,
    cutoff: str | pd.Timestamp | None = None,
    margin: float = DEFAULT_MARGIN,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    shuffle_labels: bool = False,
    warm_start: bool = True,
    public_key: Any = None,
    progress: Any = None,
    federated_stats: str | Path | Mapping[str, Any] | None = None,
    min_bin_share: float = DEFAULT_MIN_SHARE,
    **overrides: Any,
) -> RetrainResult:
    """Build a challenger for ``champion_dir`` on the log ``data`` (default: the bundled one) and
    gate it against the champion on the newest matured window (see the module docstring).

    ``overrides`` replace BuildConfig fields of the champion's (``time_budget_s``, ``out_dir``,
    ``key_dir`` …). ``shuffle_labels`` trains on permuted labels: a drill showing the gate stops
    a broken model. ``public_key`` verifies the champion (default: the key folder's).
    ``federated_stats`` (central's federated-stats export, a JSON file or its mapping) weights
    the stores' noised histograms into fleet shares, compares the challenger with them and
    merges number bins with a fleet share below ``min_bin_share`` (factory._federated); all of it
    goes into ``lineage.federated`` and the card.
    """
    from factory._build import build
    from factory._evaluate import json_safe
    from factory._parity import onnx_predict
    from factory._schema import normalise_frame
    from factory._stages import Dataset
    from factory._verify import Verified

    champion = read_champion(champion_dir)
    fleet = None if federated_stats is None else load_federated_stats(federated_stats, champion.manifest)
    tables = window_tables(data, horizon_days=champion.horizon_days, dormant_days=champion.dormant_days, cutoff=cutoff)
    train = tables.train
    if shuffle_labels:
        rng = np.random.default_rng(int(overrides.get("seed", 0)) + 1)
        train = train.assign(**{LABEL: rng.permutation(train[LABEL].to_numpy())})
    base = champion.config(**overrides)
    n_features = len(champion.manifest.inputs)
    points = champion_starting_points(champion, n_rows=len(train), n_features=n_features) if warm_start else {}
    report = {key: value.to_dict() if hasattr(value, "to_dict") else value for key, value in tables.train_info.items()}
    config = base.replace(
        starting_points=points or None,
        data_report=report,
        label_rule=tables.train_info["thresholds"],
        source_name=Path(tables.window["log"]).name,
    )
    evaluation = tables.evaluation
    y_eval = evaluation[LABEL].astype(str).to_numpy()
    champion_pred = _champion_predictions(champion, evaluation, public_key)
    decided: dict[str, GateResult] = {}

    def before_write(manifest: dict[str, Any], dataset: Dataset, verified: Verified) -> dict[str, Any]:
        features = evaluation.drop(columns=[LABEL, ID_COLUMN])
        challenger_pred, _ = onnx_predict(verified.session, normalise_frame(features, dataset.schema), dataset.schema)
        classes = sorted(set(dataset.classes) | set(champion.manifest.classes) | set(y_eval))
        # The build refuses a candidate failing parity or a budget, and the feature job one failing
        # the skew gate, so reaching here passed them; the flags record what was checked.
        checks = {
            "budgets": bool(manifest["budgets"]["met"]),
            "parity": verified.parity is not None,
            "skew_gate": "skew_gate" in manifest,
        }
        gate = promotion_gate(
            list(y_eval), list(champion_pred), [str(v) for v in challenger_pred], classes=classes, metric=config.metric,
            margin=margin, checks=checks, resamples=resamples, confidence=confidence, seed=config.seed,
            champion_version=champion.model_version, window=tables.window,
        )  # fmt: skip
        decided["gate"] = gate
        lineage = {
            "parent": champion.model_version,
            "parent_data_fingerprint": (champion.manifest.data or {}).get("fingerprint"),
            "data_window": tables.window,
            "data_fingerprint": tables.window["train_fingerprint"],
            "warm_start": {learner: len(p) for learner, p in points.items()},
            "shuffled_labels": shuffle_labels,
        }
        if fleet is not None:
            lineage["federated"], manifest["reference"] = federated_section(
                fleet, manifest["reference"], dataset.train, min_share=min_bin_share
            )
        return dict(json_safe({**manifest, "lineage": lineage, "promotion": gate.section}))

    result = build(train, config, before_write=before_write, progress=progress)
    trials = [t.to_dict() for t in result.search.trials]
    return RetrainResult(
        artifact_dir=result.artifact_dir,
        manifest=result.typed_manifest,
        gate=decided["gate"],
        tables=tables,
        starting_points=points,
        search_wall_time_s=result.search.wall_time_s,
        trials=trials,
    )


def card_blocks(promotion: Mapping[str, Any], lineage: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """The card's "Promotion gate" section: decision, reasons, numbers and lineage."""
    metric = promotion["metric"]
    champion, challenger = promotion["champion"], promotion["challenger"]
    low, high = promotion["ci"]
    window = lineage.get("data_window") or promotion.get("window") or {}
    verdict = "promoted" if promotion["decision"] == "promote" else "NOT promoted: the champion stays"
    return [
        ("h", 2, "Promotion gate"),
        (
            "p",
            f"**{verdict}.** Against {champion.get('model_version')} on the newest matured window "
            f"(cutoff {window.get('eval_cutoff')}, {promotion['rows']} customers): {metric} "
            f"{challenger[metric]:.4f} vs {champion[metric]:.4f} (difference {promotion['difference']:+.4f}, "
            f"{promotion['confidence']:.0%} paired bootstrap CI [{low:+.4f}, {high:+.4f}], "
            f"{promotion['bootstrap_resamples']} resamples; margin {promotion['margin']:g}); accuracy "
            f"{challenger['accuracy']:.4f} vs {champion['accuracy']:.4f}.",
        ),
        (
            "ul",
            [*promotion["reasons"], *(f"{k}: {'passed' if v else 'FAILED'}" for k, v in promotion["checks"].items())],
        ),
        (
            "p",
            f"Lineage: parent {lineage.get('parent')}; trained at cutoff {window.get('train_cutoff')} "
            f"(labels {window.get('train_label_window')}), "
            f"data fingerprint {str(lineage.get('data_fingerprint'))[:16]}…; "
            f"warm start {lineage.get('warm_start')}.",
        ),
        *(federated_card_blocks(lineage["federated"]) if lineage.get("federated") else []),
    ]


def warm_start_searches(
    champion: Champion, table: pd.DataFrame, *, time_budget_s: float, seed: int = 0
) -> dict[str, Any]:
    """The retrain's search on ``table`` twice with the same budget, cold (FLAML's own start) and
    warm (the champion's starting points), for ``benchmarks.warm_start``: the champion's quality
    on the table's validation rows (the target) and each search's non-baseline trials as dicts
    (``elapsed_s``, ``quality``, ``feasible`` …) in the order they ran."""
    from edge_runtime.classifier import Classifier
    from factory._search import score
    from factory._stages import load_data, make_labels, search_models, split_data

    config = champion.config(time_budget_s=time_budget_s, seed=seed)
    dataset = split_data(make_labels(load_data(table, config), config), config)
    validation = dataset.validation
    classifier = Classifier.load(champion.artifact_dir, contract="lenient")  # the validation frame as it is
    predicted = classifier.classify_many({c: validation[c].to_numpy() for c in validation.columns}).probabilities
    order = [list(classifier.classes).index(c) for c in dataset.classes]
    target, _ = score(config.metric, dataset.y[dataset.split.validation], np.asarray(predicted)[:, order], len(order))
    points = champion_starting_points(champion, n_rows=len(dataset.split.train), n_features=dataset.frame.shape[1])
    runs = {}
    for name, start in (("cold", None), ("warm", points)):
        searched = search_models(dataset, config.replace(starting_points=start or None))
        runs[name] = [t.to_dict() for t in searched.search.trials if not t.learner.startswith("baseline_")]
    return {"target": target, "metric": config.metric, "points": {k: len(v) for k, v in points.items()}, **runs}


# ----------------------------------------------------------------------------- command line
def add_retrain_parser(commands: Any) -> None:
    """``edgeseg-factory retrain``."""
    parser = commands.add_parser(
        "retrain", help="build a challenger on newer data and gate it against the champion on the newest window"
    )
    parser.add_argument("--champion", type=Path, required=True, help="the champion's artifact folder")
    parser.add_argument("--data", type=Path, default=None, help="transaction log (default: the bundled Online Retail)")
    parser.add_argument(
        "--cutoff", default=None, help="cutoff T of the newest matured window, YYYY-MM-DD (default: last day - H)"
    )
    parser.add_argument("--margin", type=float, default=DEFAULT_MARGIN, help="required gain (default %(default)s)")
    parser.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES, help="bootstrap resamples")
    parser.add_argument("--time-budget-s", type=float, default=None, help="search time (default: the champion's)")
    parser.add_argument("--out", type=Path, default=None, help="artifact root (default: the champion's)")
    parser.add_argument("--key-dir", type=Path, default=None, help="signing key folder")
    parser.add_argument("--no-warm-start", action="store_true", help="search from FLAML's defaults")
    parser.add_argument(
        "--shuffle-labels", action="store_true", help="drill: train on permuted labels (the gate must stop it)"
    )
    parser.add_argument(
        "--federated-stats", type=Path, default=None,
        help="central's federated-stats export (JSON): weight stores, compare, merge sparse bins",
    )  # fmt: skip
    parser.add_argument(
        "--min-bin-share", type=float, default=DEFAULT_MIN_SHARE,
        help="merge number bins with a fleet share below this (default %(default)s)",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the gate's section as JSON")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def run_retrain(args: argparse.Namespace) -> int:
    """Exit 0: the challenger is promoted; 3: written but the gate kept the champion; 2: bad input."""
    import logging
    import traceback
    import warnings

    from factory.errors import FactoryError

    logging.getLogger("flaml").setLevel(logging.ERROR)
    logging.getLogger("edge_runtime").setLevel(logging.ERROR)
    if not args.debug:
        warnings.filterwarnings("ignore")
    overrides: dict[str, Any] = {}
    for name, value in (("time_budget_s", args.time_budget_s), ("out_dir", args.out), ("key_dir", args.key_dir)):
        if value is not None:
            overrides[name] = value
    try:
        result = retrain(
            args.champion, args.data, cutoff=args.cutoff, margin=args.margin, resamples=args.resamples,
            shuffle_labels=args.shuffle_labels, warm_start=not args.no_warm_start,
            federated_stats=args.federated_stats, min_bin_share=args.min_bin_share, **overrides,
        )  # fmt: skip
    except FactoryError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"edgeseg-factory: error: {exc}", file=sys.stderr)
        return 2
    section = result.gate.section
    if args.json:
        print(json.dumps(section, indent=2, sort_keys=True))
    else:
        metric = section["metric"]
        print(f"challenger {result.manifest.model_version} (parent {section['champion']['model_version']})")
        print(
            f"  newest window {section['window'].get('eval_cutoff')}: {metric} {section['challenger'][metric]:.4f} "
            f"vs champion {section['champion'][metric]:.4f}, difference {section['difference']:+.4f}, "
            f"CI [{section['ci'][0]:+.4f}, {section['ci'][1]:+.4f}]"
        )
        print(f"  decision: {section['decision']}: {'; '.join(section['reasons'])}")
        print(f"  artifact: {result.artifact_dir}")
    return 0 if result.promoted else 3
