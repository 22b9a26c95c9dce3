"""The skew gate: the device's incremental features must equal the factory's, customer by customer.

A model is trained on ``build_customer_features`` (pandas, whole log at once) but served on
``edge_runtime.customer_state`` (incremental, event by event, on the till). Any difference
between the two (a return counted differently, a day boundary, a category rule) would skew
every prediction without any error anywhere: the classic training/serving skew. So at build
time the factory replays the training log's lines, in time order and grouped into till events,
through the device implementation and compares the records it materialises at the cutoff with
its own feature table: every customer, every feature, equal within ``rel_tol`` relative
(``abs_tol`` absolute for values that cancel to about zero; strings exactly). A mismatch raises
``SkewError`` naming the customer, the feature and both values; a pass returns a summary for
the manifest.

How a log becomes events: lines of one customer with the same timestamp, invoice, country and
cancellation flag form one event (a basket at the till); each line of an invoice gets its own
line number, so an invoice whose lines span several timestamps is several events of one
invoice, as a till would send a basket split by a network retry. Lines without an invoice id
get an ``event_id``. Customers are keyed by a stand-in pseudonym (SHA-256 of the id): the
gate needs a one-to-one ref, not the deployment's secret.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from edge_runtime.customer_state import CustomerState, FeatureProgram, NoRecordError
from factory.errors import FactoryError, FactoryInputError
from factory.features import LogColumns, build_customer_features
from factory.features._columns import CATEGORY, COUNTRY, CUSTOMER_ID, INVOICE_ID, PRODUCT, TIMESTAMP
from factory.features._params import as_cutoff

__all__ = ["SkewError", "check_skew", "compare_records", "log_events", "program_for_log", "replay_log"]

#: Events per transaction in the replay (each event is still all-or-nothing).
REPLAY_BATCH = 500


class SkewError(FactoryError):
    """The device's features differ from the factory's: the build must not ship.

    ``customer``, ``feature``, ``factory_value`` and ``device_value`` describe the first
    mismatch; ``mismatches`` counts them all.
    """

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.customer: str | None = details.get("customer")
        self.feature: str | None = details.get("feature")
        self.factory_value: object = details.get("factory_value")
        self.device_value: object = details.get("device_value")
        self.mismatches: int = details.get("mismatches", 0)


def program_for_log(
    log: pd.DataFrame, columns: LogColumns | None = None, *, dormant_days: float = 30.0, **overrides: Any
) -> FeatureProgram:
    """The device feature program that reproduces ``build_customer_features`` on this log.

    The optional features follow the cleaned log's columns, as in the factory; the
    cancellation prefix and the category rule come from ``columns`` (the loader's mapping).
    Without ``columns`` the categories are taken from each line and the log's ``is_return``
    flags are sent as the events' ``cancelled`` flag where a quantity alone does not say it.
    """
    if CATEGORY not in log.columns:
        rule = "none"
    elif columns is not None and columns.category_from_stock_code:
        rule = "stock_code_family"
    else:
        rule = "column"
    settings: dict[str, Any] = {
        "dormant_days": float(dormant_days),
        "invoices": INVOICE_ID in log.columns,
        "products": PRODUCT in log.columns,
        "countries": COUNTRY in log.columns,
        "category_rule": rule,
        "cancel_prefix": None if columns is None else columns.cancel_prefix,
    }
    return FeatureProgram(**{**settings, **overrides})


def _ref(customer_id: str) -> str:
    return hashlib.sha256(customer_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def log_events(log: pd.DataFrame, program: FeatureProgram) -> Iterator[tuple[dict[str, Any], str]]:
    """The log's lines as till events in time order: ``(event, customer_id)`` pairs.

    Raises ``SkewError`` when the log's ``is_return`` flags cannot be expressed under the
    program's rules (a line flagged a purchase that the program would call a return).
    """
    frame = log.iloc[np.argsort(log[TIMESTAMP].to_numpy(), kind="stable")].reset_index(drop=True)
    quantity = frame["quantity"].to_numpy(dtype="float64")
    is_return = frame["is_return"].to_numpy(dtype="bool")
    has_invoice = program.invoices and INVOICE_ID in frame.columns
    invoice = frame[INVOICE_ID].astype("object") if has_invoice else pd.Series(None, index=frame.index, dtype="object")
    missing_invoice = invoice.isna().to_numpy() | (invoice.astype("str").str.strip() == "").to_numpy()
    by_prefix = np.zeros(len(frame), dtype=bool)
    if program.cancel_prefix:
        by_prefix = invoice.astype("str").str.startswith(program.cancel_prefix).to_numpy() & ~missing_invoice
    implied = (quantity < 0) | by_prefix
    wrong = np.flatnonzero(implied & ~is_return)
    if len(wrong):
        row = frame.iloc[wrong[0]]
        raise SkewError(
            f"skew gate: line of customer {row[CUSTOMER_ID]!r} at {row[TIMESTAMP]} is a purchase in the log but a "
            f"return under the device program (quantity {row['quantity']}, cancel prefix {program.cancel_prefix!r})"
        )
    cancelled = is_return & ~implied  # returns only the log knows about: sent as the event's flag

    keys = {
        "ts": frame[TIMESTAMP],
        "customer": frame[CUSTOMER_ID],
        "invoice": invoice.where(~missing_invoice, None),
        "cancelled": pd.Series(cancelled),
    }
    if program.countries:
        keys["country"] = frame[COUNTRY]
    group = pd.DataFrame(keys).groupby(list(keys), sort=False, dropna=False).ngroup().to_numpy()
    # Line numbers: unique within an invoice over the whole log, within the event otherwise.
    line_key = [
        frame[CUSTOMER_ID],
        keys["invoice"].fillna("").astype("str"),
        pd.Series(np.where(missing_invoice, group, -1)),
    ]
    line_no = frame.groupby(line_key, sort=False).cumcount().to_numpy()

    order = np.argsort(group, kind="stable")
    stamps = np.datetime_as_string(frame[TIMESTAMP].to_numpy().astype("datetime64[us]"), unit="us")
    customers = frame[CUSTOMER_ID].to_numpy(dtype="object")
    invoices = keys["invoice"].to_numpy(dtype="object")
    countries = frame[COUNTRY].to_numpy(dtype="object") if program.countries else None
    products = frame[PRODUCT].to_numpy(dtype="object") if program.products else None
    categories = frame[CATEGORY].to_numpy(dtype="object") if program.category_rule == "column" else None
    prices = frame["unit_price"].to_numpy(dtype="float64").tolist()
    quantities = quantity.tolist()
    groups = group[order]
    bounds = np.flatnonzero(np.diff(groups)) + 1
    for rows in np.split(order, bounds):
        first = int(rows[0])
        lines = []
        for r in rows.tolist():
            line: dict[str, Any] = {"line": int(line_no[r]), "quantity": quantities[r], "unit_price": prices[r]}
            if products is not None:
                line["product"] = products[r]
            if categories is not None:
                line["category"] = categories[r]
            lines.append(line)
        event: dict[str, Any] = {
            "customer_id": customers[first],
            "timestamp": str(stamps[first]),
            "lines": lines,
        }
        if invoices[first] is None:
            event["event_id"] = f"line-{first}"
        else:
            event["invoice_id"] = invoices[first]
        if cancelled[first]:
            event["cancelled"] = True
        if countries is not None:
            event["country"] = countries[first]
        yield event, customers[first]


def _differs(factory: object, device: object, rel_tol: float, abs_tol: float) -> tuple[bool, float]:
    """(mismatch?, relative difference) of one feature value."""
    if isinstance(factory, str) or isinstance(device, str):
        return factory != device, 0.0 if factory == device else math.inf
    a = math.nan if factory is None else float(factory)  # type: ignore[arg-type]
    b = math.nan if device is None else float(device)  # type: ignore[arg-type]
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) != math.isnan(b), 0.0 if math.isnan(a) == math.isnan(b) else math.inf
    gap = abs(a - b)
    scale = max(abs(a), abs(b))
    relative = gap / scale if scale > 0 else 0.0
    return gap > abs_tol and relative > rel_tol, relative


def compare_records(
    expected: pd.DataFrame,
    device: dict[str, dict[str, Any]],
    *,
    rel_tol: float = 1e-6,
    abs_tol: float = 1e-9,
) -> float:
    """Compare the factory's table with the device's records (customer id → record).

    The same customers must have a record on both sides (the device has none for a customer
    seen only through returns, nor has the factory), and every feature of the table must
    agree. Returns the largest relative difference found; raises ``SkewError`` on the first
    mismatch, with the total count.
    """
    features = list(expected.columns)
    mismatches: list[tuple[str, str, object, object, float]] = []
    extra = sorted(set(device) - set(map(str, expected.index)))
    missing = sorted(set(map(str, expected.index)) - set(device))
    for customer_id in extra[:1] + missing[:1]:
        in_factory = customer_id not in device
        mismatches.append((customer_id, "<record>", in_factory, not in_factory, math.inf))
    max_relative = 0.0
    for customer_id, row in expected.to_dict(orient="index").items():
        record = device.get(str(customer_id))
        if record is None:
            continue
        for name in features:
            bad, relative = _differs(row[name], record.get(name), rel_tol, abs_tol)
            if bad:
                mismatches.append((str(customer_id), name, row[name], record.get(name), relative))
            elif math.isfinite(relative):
                max_relative = max(max_relative, relative)
    if not mismatches:
        return max_relative
    n_bad = len(mismatches) + max(len(extra) - 1, 0) + max(len(missing) - 1, 0)
    customer_id, name, want, got, relative = mismatches[0]
    if name == "<record>":
        side = "factory" if want else "device"
        message = (
            f"skew gate: customer {customer_id!r} has a record in the {side} table only "
            f"({len(extra)} customer(s) device-only, {len(missing)} factory-only)"
        )
    else:
        gap = "strings differ" if isinstance(want, str) else f"relative difference {relative:.3g} > {rel_tol:g}"
        message = (
            f"skew gate: customer {customer_id!r} feature {name!r}: factory {want!r}, device {got!r} "
            f"({gap}); {n_bad} mismatching value(s) in all"
        )
    raise SkewError(message, customer=customer_id, feature=name, factory_value=want, device_value=got, mismatches=n_bad)


def check_skew(
    log: pd.DataFrame,
    cutoff: pd.Timestamp | str,
    *,
    columns: LogColumns | None = None,
    dormant_days: float = 30.0,
    program: FeatureProgram | None = None,
    rel_tol: float = 1e-6,
    abs_tol: float = 1e-9,
    state_path: str | Path | None = None,
    features: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Replay ``log`` before ``cutoff`` through the device implementation and compare.

    ``program`` defaults to :func:`program_for_log`; ``state_path`` keeps the device state
    (a temporary file otherwise); ``features``: the factory's table at ``cutoff`` when the
    caller has built it already (else it is built here). Returns the manifest's summary: customers, features,
    values compared, the largest relative difference, lines replayed and replay lines/s.

    Raises
    ------
    SkewError
        A customer or a feature differs (the message names customer, feature and both values).
    """
    owner = "check_skew"
    cutoff = as_cutoff(cutoff, owner)
    if program is None:
        program = program_for_log(log, columns, dormant_days=dormant_days)
    expected = build_customer_features(log, cutoff, dormant_days=dormant_days) if features is None else features
    features = list(expected.columns)
    if features != list(program.features):
        raise SkewError(
            f"skew gate: the factory builds features {features} but the device program {program.to_json()} "
            f"builds {list(program.features)}",
            mismatches=1,
        )
    past = log.loc[log[TIMESTAMP] < cutoff]
    at = cutoff.to_pydatetime()
    clock_s = (cutoff - pd.Timestamp("1970-01-01")) / pd.Timedelta(seconds=1)

    with tempfile.TemporaryDirectory(prefix="edgeseg-skew-") as tmp:
        path = Path(state_path) if state_path is not None else Path(tmp) / "customer_state.sqlite"
        with CustomerState(path, program, clock=lambda: clock_s) as state:
            replay_s, lines, ids = replay_log(state, past, program)
            device = {}
            for customer_id, ref in ids.items():
                try:
                    device[customer_id] = state.materialise(ref, at)
                except NoRecordError:
                    continue  # seen only through returns: the factory leaves them out too

    max_relative = compare_records(expected, device, rel_tol=rel_tol, abs_tol=abs_tol)
    return {
        "feature_program": program.to_json(),
        "cutoff": cutoff.isoformat(),
        "customers": len(expected),
        "features": features,
        "values_compared": len(expected) * len(features),
        "max_relative_difference": max_relative,
        "rel_tol": rel_tol,
        "abs_tol": abs_tol,
        "lines_replayed": lines,
        "replay_seconds": round(replay_s, 3),
        "lines_per_second": round(lines / replay_s) if replay_s > 0 else None,
    }


def replay_log(
    state: CustomerState,
    past: pd.DataFrame,
    program: FeatureProgram,
    ref: Callable[[str], str] | None = None,
) -> tuple[float, int, dict[str, str]]:
    """Feed a log's lines to the device state as till events in time order, in batches.

    ``ref`` makes a customer's pseudonym (default: the gate's stand-in, SHA-256 of the id; a
    store snapshot passes the deployment's ``edge_runtime.runtime.customer_ref_for``).
    Returns (device seconds, lines, customer id → ref).
    """
    make_ref = _ref if ref is None else ref
    ids: dict[str, str] = {}
    batch: list[tuple[dict[str, Any], str]] = []
    lines = 0
    spent = 0.0

    def flush() -> float:
        start = time.perf_counter()
        state.observe_many(batch)
        batch.clear()
        return time.perf_counter() - start

    for event, customer_id in log_events(past, program):
        pseudonym = ids.get(customer_id)
        if pseudonym is None:
            pseudonym = ids[customer_id] = make_ref(customer_id)
        batch.append((event, pseudonym))
        lines += len(event["lines"])
        if len(batch) >= REPLAY_BATCH:
            spent += flush()
    if batch:
        spent += flush()
    if not lines:
        raise FactoryInputError(f"check_skew: the log has no line before the cutoff ({len(past)} lines)")
    return spent, lines, ids
