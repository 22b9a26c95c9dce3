"""Customer feature state at the till: till events in, the model's input record out (docs/DESIGN.md §4a).

A till sees *events* (a loyalty card, a basket of lines, a return), but the model's inputs are
the factory's RFM+X customer features (``factory.features.build_customer_features``). This
module keeps, per customer, the smallest state from which those features can be computed
*exactly*, updates it once per event, and materialises the input record at any moment ``at``.
The factory's pandas code stays the reference; ``factory.skew`` replays the training log
through this module and fails the build on any difference (the training/serving skew gate).

Why it is written by hand
    No library maintains an incremental RFM state on SQLite with numpy/stdlib only: stream
    processors (Flink, Kafka Streams, River) need a JVM or pandas-sized dependencies the
    device cannot carry, feature stores materialise from batch jobs rather than per event,
    and none of them reproduces *our* cleaning rules (a cancellation prefix, the stock-code
    family, "one basket per invoice, else per purchase day"). The rules below mirror
    ``factory/features/_customer.py`` line by line; the skew gate proves they do.

What is stored, and why it is enough (``build_customer_features`` at cutoff ``at``)
    =========================  ==========================================================
    feature                    state kept per customer
    =========================  ==========================================================
    recency / tenure_days      first and last purchase time (``at`` is applied on read)
    frequency                  distinct purchase invoices (else distinct purchase days)
    monetary                   net signed amount of every line (compensated sum)
    avg_basket_value / items   gross purchase amount and items (compensated sums)
    return_rate                returned amount (compensated sum)
    product_breadth            the set of distinct products bought (ids into a catalogue)
    category_breadth / share   purchase amount per category (ids into a catalogue)
    inter_purchase_days        count, first and last of the distinct purchase days
    country                    line count per country (ties: alphabetically first)
    is_dormant                 time of the last line, purchase or return
    =========================  ==========================================================

    Distinct counts need to know whether a day or an invoice was seen before. Events older
    than ``lateness`` behind the newest event are refused, so only the purchase days and
    invoices inside that window can still be hit by a new event: older ones are pruned and
    the state stays bounded (a few hundred bytes plus 4 bytes per distinct product).
    The same window holds the applied (invoice or event id, line) keys that make ``observe``
    idempotent: a replayed or half-applied basket applies only the lines not yet applied.

Atomicity
    Every ``observe`` is one SQLite transaction (WAL): the customer's row, the catalogue and
    the watermark commit together or not at all, so a SIGKILL leaves either the state before
    the event or after it; a replay of the event then applies exactly what is missing.

Limits (each one refuses or documents, none silently skews)
    * The lines of one invoice must arrive within ``lateness`` of each other: an invoice key
      is forgotten ``lateness`` after its last line, so a line arriving later would count the
      invoice as a second basket. Tills send a basket at once (the Online Retail log's
      longest invoice spans 60 s; the default lateness is a day).
    * A replay of an event older than ``lateness`` is refused with an ``EventError`` (its
      keys are forgotten), not applied again.
    * Events without an invoice id need distinct ``event_id`` values: two identical events
      with one id are one event.
    * The record at ``at`` includes every observed line: the factory's cutoff is exclusive,
      so the gate compares at a cutoff after the replayed lines.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import struct
import threading
import time
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from edge_runtime.exceptions import EdgeRuntimeError

__all__ = [
    "FEATURE_NAMES",
    "FEATURE_PROGRAM_NAME",
    "FEATURE_PROGRAM_VERSION",
    "CustomerState",
    "EventError",
    "FeatureProgram",
    "NoFeatureProgramError",
    "NoRecordError",
    "ObserveResult",
    "stock_code_family",
]

FEATURE_PROGRAM_NAME: Final = "rfm_x"
#: Bumped whenever a rule changes: an artifact built with another version needs another device program.
FEATURE_PROGRAM_VERSION: Final = 1

#: Category of product codes outside the numeric families (as ``factory.features._log.NON_MERCHANDISE``).
NON_MERCHANDISE: Final = "non-merchandise"
# The factory's ``str.extract(r"^(\d{2})\d{3}(?:[A-Za-z]*)$")`` is ``re.search`` with this pattern.
_STOCK_CODE = re.compile(r"^(\d{2})\d{3}(?:[A-Za-z]*)$")

_US_PER_DAY: Final = 86_400_000_000
_US_PER_S: Final = 1_000_000
_EPOCH: Final = datetime(1970, 1, 1)  # naive: timestamps are wall-clock in the program's zone
_NO_TIME: Final = -(2**63)

#: Every feature the program can produce, in the factory's column order (``factory.features.FEATURE_COLUMNS``
#: is this tuple: one list of names for both implementations).
FEATURE_NAMES: Final = (
    "recency_days",
    "frequency",
    "monetary",
    "tenure_days",
    "avg_basket_value",
    "avg_basket_items",
    "return_rate",
    "product_breadth",
    "category_breadth",
    "top_category_share",
    "inter_purchase_days",
    "country",
    "is_dormant",
)

_EVENT_FIELDS: Final = frozenset(
    {"customer_id", "timestamp", "invoice_id", "event_id", "country", "cancelled", "lines"}
)
_LINE_FIELDS: Final = frozenset({"line", "product", "category", "quantity", "unit_price"})
_REF = re.compile(r"^[0-9a-f]{16,64}$")

#: A customer ref (hex pseudonym), or the function that makes one from the raw customer id.
Ref = str | Callable[[str], str]
CategoryRule = Literal["stock_code_family", "column", "none"]
_CATEGORY_RULES: Final = ("stock_code_family", "column", "none")
_FAMILY_CACHE: Final = 100_000  # products whose family is remembered (a catalogue is a few thousand)


def stock_code_family(code: str) -> str:
    """The Online Retail category of a stock code: its two-digit family (factory rule).

    >>> [stock_code_family(c) for c in ("85123A", "22423", "POST")]
    ['85', '22', 'non-merchandise']
    """
    match = _STOCK_CODE.search(code)
    return NON_MERCHANDISE if match is None else match.group(1)


class EventError(EdgeRuntimeError, ValueError):
    """A till event was refused; nothing of it was applied.

    ``field`` is the path of the offending field (``lines[2].unit_price``), so the till can
    show the cashier what to fix; ``value`` is what was sent.
    """

    def __init__(self, field: str, value: object, rule: str) -> None:
        self.field = field
        self.value = value
        self.rule = rule
        shown = repr(value)
        if len(shown) > 80:  # a megabyte string must not become a megabyte log line
            shown = f"{shown[:79]}…"
        super().__init__(f"event field {field!r}: {rule} (got {shown})")


class NoRecordError(EdgeRuntimeError, LookupError):
    """The customer has no input record: unknown, or seen only through returns.

    The factory leaves such customers out of its table (no purchase, no basis for spend
    features), so the device refuses to invent one.
    """


class NoFeatureProgramError(EdgeRuntimeError, ValueError):
    """The model was not trained on a transaction log: it names no feature program, so the
    device has no rules to turn till events into its inputs (send it feature records instead)."""


@dataclass(frozen=True, kw_only=True)
class FeatureProgram:
    """Which feature program, with which parameters, produced a model's inputs.

    The artifact's manifest records this (``to_json``); the device builds its state with the
    same parameters, and the skew gate proves the two implementations agree on them.

    ``invoices``/``products``/``countries``: whether the training log had those columns (the
    features built from them exist only then). ``category_rule``: ``"stock_code_family"``
    derives the category from the product code (Online Retail), ``"column"`` takes it from
    each line, ``"none"``: no category features. ``cancel_prefix``: invoice ids starting with
    it are cancellations (returns), as in the factory's ``LogColumns.cancel_prefix``.
    ``timezone``: the zone of the log's naive wall-clock timestamps (day boundaries are
    midnights there). ``lateness_s``: how far behind the newest event an event may arrive and
    still be applied. ``future_tolerance_s``: clock skew allowed for an event "from the future".
    """

    name: str = FEATURE_PROGRAM_NAME
    version: int = FEATURE_PROGRAM_VERSION
    dormant_days: float = 30.0
    invoices: bool = True
    products: bool = True
    countries: bool = True
    category_rule: CategoryRule = "stock_code_family"
    cancel_prefix: str | None = "C"
    timezone: str = "UTC"
    lateness_s: float = 86_400.0
    future_tolerance_s: float = 300.0
    max_customer_id_chars: int = 64
    max_lines: int = 1000

    def __post_init__(self) -> None:
        if self.name != FEATURE_PROGRAM_NAME or self.version != FEATURE_PROGRAM_VERSION:
            raise ValueError(
                f"This device implements feature program {FEATURE_PROGRAM_NAME!r} version "
                f"{FEATURE_PROGRAM_VERSION}. Got {self.name!r} version {self.version!r} instead."
            )
        for name in ("dormant_days", "lateness_s", "future_tolerance_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ValueError(
                    f"The {name!r} parameter of FeatureProgram must be a finite number >= 0. Got {value!r} instead."
                )
        for name in ("invoices", "products", "countries"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"The {name!r} parameter of FeatureProgram must be true or false. Got {getattr(self, name)!r}."
                )
        for name in ("max_customer_id_chars", "max_lines"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"The {name!r} parameter of FeatureProgram must be an integer >= 1. Got {value!r}.")
        if self.cancel_prefix is not None and (not isinstance(self.cancel_prefix, str) or not self.cancel_prefix):
            raise ValueError(
                "The 'cancel_prefix' parameter of FeatureProgram must be null or a non-empty string. "
                f"Got {self.cancel_prefix!r}."
            )
        if self.dormant_days <= 0:
            raise ValueError(f"The 'dormant_days' parameter of FeatureProgram must be > 0. Got {self.dormant_days!r}.")
        if self.category_rule not in _CATEGORY_RULES:
            raise ValueError(
                f"The 'category_rule' parameter of FeatureProgram must be one of {_CATEGORY_RULES}. "
                f"Got {self.category_rule!r} instead."
            )
        if self.category_rule == "stock_code_family" and not self.products:
            raise ValueError("FeatureProgram(category_rule='stock_code_family') derives categories from products.")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
            raise ValueError(
                f"The 'timezone' parameter of FeatureProgram must be an IANA zone. Got {self.timezone!r}."
            ) from exc

    @property
    def categories(self) -> bool:
        """Whether the records have ``category_breadth`` and ``top_category_share``."""
        return self.category_rule != "none"

    @property
    def features(self) -> tuple[str, ...]:
        """The record's field names, in the factory's column order."""
        absent = set()
        if not self.products:
            absent.add("product_breadth")
        if not self.categories:
            absent |= {"category_breadth", "top_category_share"}
        if not self.countries:
            absent.add("country")
        return tuple(name for name in FEATURE_NAMES if name not in absent)

    def to_json(self) -> dict[str, Any]:
        """The manifest's ``feature_program`` section."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FeatureProgram:
        """Read a manifest section back; an unknown key is an error, not silently ignored."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"feature_program has unknown field {unknown[0]!r}; known: {', '.join(sorted(known))}")
        return cls(**dict(data))

    @classmethod
    def online_retail(cls, **overrides: Any) -> FeatureProgram:
        """The bundled Online Retail log's program (``LogColumns.online_retail()``)."""
        return cls(**overrides)

    @classmethod
    def cdnow(cls, **overrides: Any) -> FeatureProgram:
        """CDNOW's program: no invoices, products, categories or countries."""
        base: dict[str, Any] = {
            "invoices": False,
            "products": False,
            "countries": False,
            "category_rule": "none",
            "cancel_prefix": None,
        }
        return cls(**{**base, **overrides})


@dataclass(frozen=True)
class ObserveResult:
    """What ``observe`` did: lines applied now, lines already applied before (a replay), and
    lines skipped because the factory's cleaning drops them (zero quantity or zero price)."""

    applied: int
    duplicates: int
    skipped: int


# ---------------------------------------------------------------------------------- validation
_Line = tuple[int, str, str, float, float]  # line number, product, category, quantity, unit price


@dataclass(frozen=True, slots=True)
class _Event:
    customer_id: str
    ts: int  # µs since 1970-01-01 in the program's wall clock
    key: str  # "i:<invoice>" or "e:<event id>": the idempotency key of the lines
    invoice: bool  # whether ``key`` is an invoice (counts as a basket)
    cancelled: bool
    country: str
    lines: tuple[_Line, ...]


def _text(value: object, name: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise EventError(name, value, "must be a string")
    return str(value).strip()


def _number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EventError(name, value, "must be a number")
    number = float(value)
    if not math.isfinite(number):
        raise EventError(name, value, "must be a finite number")
    return number


class _Validator:
    """Turns a till event (a JSON-like mapping) into an ``_Event``, or an ``EventError``."""

    def __init__(self, program: FeatureProgram) -> None:
        self.program = program
        self._tz = ZoneInfo(program.timezone)
        self._utc = program.timezone == "UTC"
        self._families: dict[str, str] = {}  # product -> stock-code family, the regex once per product

    def wall_us(self, value: object, name: str) -> int:
        """A timestamp as µs of naive wall-clock time in the program's zone."""
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                raise EventError(name, value, "must be an ISO 8601 timestamp") from None
        elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            value = datetime.fromtimestamp(value, UTC)  # epoch seconds are an instant
        if not isinstance(value, datetime):
            raise EventError(name, value, "must be an ISO 8601 timestamp, a datetime or epoch seconds")
        if value.tzinfo is not None:
            value = value.astimezone(self._tz).replace(tzinfo=None)
        return (value - _EPOCH) // timedelta(microseconds=1)

    def now_us(self, clock: Callable[[], float]) -> int:
        seconds = clock()
        if self._utc:
            return int(seconds * _US_PER_S)
        return self.wall_us(seconds, "now")

    def event(self, event: object) -> _Event:
        program = self.program
        # ``type(...) is dict`` first: the ABC check costs more than the rest of a field's checks.
        if type(event) is not dict and not isinstance(event, Mapping):
            raise EventError("<event>", event, "must be a mapping of field names to values")
        if not event.keys() <= _EVENT_FIELDS:
            k = min((k for k in event if k not in _EVENT_FIELDS), key=str)
            raise EventError(str(k), event[k], f"is not an event field (known: {', '.join(sorted(_EVENT_FIELDS))})")
        customer = event.get("customer_id")
        if customer is None:
            raise EventError("customer_id", None, "is required")
        customer = _text(customer, "customer_id")
        if not customer:
            raise EventError("customer_id", event["customer_id"], "must not be empty")
        if len(customer) > program.max_customer_id_chars:
            raise EventError("customer_id", customer, f"must be at most {program.max_customer_id_chars} characters")
        if "timestamp" not in event:
            raise EventError("timestamp", None, "is required")
        ts = self.wall_us(event["timestamp"], "timestamp")
        invoice = event.get("invoice_id")
        invoice = None if invoice is None else _text(invoice, "invoice_id")
        event_id = event.get("event_id")
        event_id = None if event_id is None else _text(event_id, "event_id")
        if invoice:
            key, is_invoice = f"i:{invoice}", program.invoices
        elif event_id:
            key, is_invoice = f"e:{event_id}", False
        else:
            raise EventError(
                "invoice_id",
                invoice,
                "an event needs an invoice_id or an event_id (the key that makes a replay a no-op)",
            )
        cancelled = event.get("cancelled", False)
        if not isinstance(cancelled, bool):
            raise EventError("cancelled", cancelled, "must be true or false")
        if invoice and program.cancel_prefix and invoice.startswith(program.cancel_prefix):
            cancelled = True
        country = ""
        if program.countries:
            if event.get("country") is None:
                raise EventError("country", None, "is required by this feature program")
            country = _text(event["country"], "country")
        elif event.get("country") is not None:
            raise EventError(
                "country", event["country"], "is not used by this feature program (trained without countries)"
            )
        return _Event(customer, ts, key, is_invoice, cancelled, country, self.lines(event.get("lines")))

    def lines(self, lines: object) -> tuple[_Line, ...]:
        """Validated lines. Plain floats, ints and strings take a fast path (one type check
        each); anything else goes through the checks that name the field."""
        program = self.program
        if type(lines) is not list and (not isinstance(lines, Sequence) or isinstance(lines, str | bytes)) or not lines:
            raise EventError("lines", lines, "must be a non-empty list of lines")
        if len(lines) > program.max_lines:
            raise EventError("lines", f"{len(lines)} lines", f"must hold at most {program.max_lines} lines")
        rule = program.category_rule
        use_products = program.products
        families = self._families
        out: list[_Line] = []
        for i, line in enumerate(lines):
            if type(line) is not dict and not isinstance(line, Mapping):
                raise EventError(f"lines[{i}]", line, "must be a mapping")
            if not line.keys() <= _LINE_FIELDS:
                k = min((k for k in line if k not in _LINE_FIELDS), key=str)
                raise EventError(
                    f"lines[{i}].{k}", line[k], f"is not a line field (known: {', '.join(sorted(_LINE_FIELDS))})"
                )
            number = line.get("line", i)
            if type(number) is not int or number < 0:
                raise EventError(f"lines[{i}].line", number, "must be an integer >= 0")
            quantity = line.get("quantity")
            if type(quantity) is not float or quantity - quantity != 0:  # not a finite float: slow path
                if quantity is None:
                    raise EventError(f"lines[{i}].quantity", None, "is required")
                quantity = _number(quantity, f"lines[{i}].quantity")
            price = line.get("unit_price")
            if type(price) is not float or price - price != 0:
                if price is None:
                    raise EventError(f"lines[{i}].unit_price", None, "is required")
                price = _number(price, f"lines[{i}].unit_price")
            if price < 0:
                raise EventError(
                    f"lines[{i}].unit_price", line["unit_price"], "must be >= 0 (a return is a negative quantity)"
                )
            product = line.get("product")
            if use_products:
                if product is None:
                    raise EventError(f"lines[{i}].product", None, "is required by this feature program")
                product = product.strip() if type(product) is str else _text(product, f"lines[{i}].product")
            elif product is not None:
                raise EventError(f"lines[{i}].product", product, "is not used by this feature program")
            else:
                product = ""
            category = line.get("category")
            if rule == "column":
                if category is None:
                    raise EventError(f"lines[{i}].category", None, "is required by this feature program")
                category = category.strip() if type(category) is str else _text(category, f"lines[{i}].category")
            elif category is not None:
                raise EventError(
                    f"lines[{i}].category",
                    category,
                    f"must not be sent: this feature program's category rule is {rule!r}",
                )
            elif rule == "stock_code_family":
                category = families.get(product)
                if category is None:
                    category = stock_code_family(product)
                    if len(families) < _FAMILY_CACHE:
                        families[product] = category
            else:
                category = ""
            out.append((number, product, category, quantity, price))
        if len({line[0] for line in out}) < len(out):
            seen: set[int] = set()
            for i, line in enumerate(out):
                if line[0] in seen:
                    raise EventError(f"lines[{i}].line", line[0], "repeats a line number of this event")
                seen.add(line[0])
        return tuple(out)


# ---------------------------------------------------------------------------------- one customer
_HEAD = struct.Struct("<qqqqqqq8d")  # times, days, counts, then four compensated sums
_UINT32 = struct.Struct("<I")


def _contains(packed: bytearray, item: bytes) -> bool:
    """Whether the 4-byte ``item`` is one of the uint32 values in ``packed`` (aligned matches only)."""
    at = packed.find(item)
    while at != -1 and at % 4:
        at = packed.find(item, at + 1)
    return at != -1


class _Customer:
    """One customer's state in memory: applied from events, materialised at ``at``.

    Sums are Kahan-compensated (value, compensation) so that net spend, where purchases and
    returns cancel, stays as close to the factory's (compensated) pandas sums as the data
    allows, whatever the order events arrive in. Products, categories and countries are
    catalogue ids (4 bytes each on disk), not names.
    """

    __slots__ = (
        "first",
        "last",
        "seen",
        "n_days",
        "min_day",
        "max_day",
        "n_invoices",
        "sums",
        "products",
        "categories",
        "countries",
        "days",
        "keys",
    )

    def __init__(self) -> None:
        self.first = _NO_TIME  # first purchase (µs)
        self.last = _NO_TIME  # last purchase
        self.seen = _NO_TIME  # last line of any kind
        self.n_days = 0
        self.min_day = 0
        self.max_day = 0
        self.n_invoices = 0
        # gross, items, net, returns (the signed sum of return amounts), each followed by its compensation
        self.sums = [0.0] * 8
        # Distinct product ids, packed little-endian uint32: membership is a C-speed bytes.find
        # and writing it back is a copy (a set would cost a conversion both ways per event).
        self.products = bytearray()
        self.categories: dict[int, float] = {}  # category id -> purchase amount
        self.countries: dict[int, int] = {}  # country id -> lines
        self.days: list[int] = []  # purchase days inside the lateness window
        self.keys: dict[str, list[Any]] = {}  # key -> [last ts, invoice counted, applied line numbers]

    def prune(self, horizon: int) -> None:
        """Forget days and keys no event can reach any more (older than the lateness window)."""
        day = horizon // _US_PER_DAY
        if self.days and self.days[0] < day:
            self.days = [d for d in self.days if d >= day]
        stale = [k for k, v in self.keys.items() if v[0] < horizon]
        for k in stale:
            del self.keys[k]

    # ---------------------------------------------------------------- serialisation
    def to_row(self) -> tuple[bytes, bytes, bytes, bytes, str]:
        head = _HEAD.pack(
            self.first, self.last, self.seen, self.n_days, self.min_day, self.max_day, self.n_invoices, *self.sums
        )
        products = bytes(self.products)
        cats = array("I", self.categories).tobytes() + array("d", self.categories.values()).tobytes()
        countries = array("I", self.countries).tobytes() + array("I", self.countries.values()).tobytes()
        # A key whose applied lines are 0..n-1 (a whole basket, the usual case) is stored as n:
        # the longest part of a row otherwise (a 60-line invoice is 200 bytes of line numbers).
        keys = {k: [v[0], v[1], len(v[2])] if v[2] == list(range(len(v[2]))) else v for k, v in self.keys.items()}
        recent = json.dumps([self.days, keys], separators=(",", ":"))
        return head, products, cats, countries, recent

    @classmethod
    def from_row(cls, head: bytes, products: bytes, cats: bytes, countries: bytes, recent: str) -> _Customer:
        self = cls()
        values = _HEAD.unpack(head)
        (self.first, self.last, self.seen, self.n_days, self.min_day, self.max_day, self.n_invoices) = values[:7]
        self.sums = list(values[7:])
        self.products = bytearray(products)
        n = len(cats) // 12
        self.categories = dict(zip(array("I", cats[: 4 * n]), array("d", cats[4 * n :]), strict=True))
        n = len(countries) // 8
        self.countries = dict(zip(array("I", countries[: 4 * n]), array("I", countries[4 * n :]), strict=True))
        self.days, self.keys = json.loads(recent)
        for entry in self.keys.values():
            if type(entry[2]) is int:
                entry[2] = list(range(entry[2]))
        return self


# ---------------------------------------------------------------------------------- the store
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS catalogue (
    kind INTEGER NOT NULL, name TEXT NOT NULL, id INTEGER NOT NULL, PRIMARY KEY (kind, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS customers (
    ref BLOB PRIMARY KEY, head BLOB NOT NULL, products BLOB NOT NULL, categories BLOB NOT NULL,
    countries BLOB NOT NULL, recent TEXT NOT NULL
) WITHOUT ROWID;
"""
SCHEMA_VERSION: Final = 1
CACHE_KIB: Final = 32 * 1024  # SQLite page cache of the state file
#: Commits between two background WAL checkpoints. A checkpoint copies the WAL into the database
#: and syncs it (milliseconds): done in the event's commit, as SQLite does by default every 1000
#: pages, it was the 99th percentile of ``observe``. A thread does it instead.
CHECKPOINT_EVERY: Final = 200
#: WAL pages after which a commit checkpoints itself anyway (the background thread is behind).
WAL_SAFETY_PAGES: Final = 20_000
HOT_CUSTOMERS: Final = 4096  # customers kept decoded in memory (about 2 KB each)
_PRODUCT, _CATEGORY, _COUNTRY = 0, 1, 2
_UPSERT: Final = "INSERT OR REPLACE INTO customers VALUES (?, ?, ?, ?, ?, ?)"
_SYNCHRONOUS: Final = {"process": "NORMAL", "power": "FULL"}


class CustomerState(AbstractContextManager["CustomerState"]):
    """Per-customer feature state in a SQLite file, keyed by the pseudonymised customer ref.

    ``observe(event, ref)`` applies a till event atomically and idempotently;
    ``materialise(ref, at)`` returns the model's input record at ``at``, with the factory's
    names and values (``None`` where the factory's table has NaN). ``ref`` is what
    ``Runtime.customer_ref(raw_id)`` returns (HMAC of the raw id with the deployment secret);
    the raw customer id is validated but never stored.

    ``durability`` as the outbox: ``"process"`` survives a killed process, ``"power"`` fsyncs
    every event. ``clock`` (epoch seconds) decides what "the future" is; tests pass their own.
    Thread-safe (one lock); a second process may open the same file (SQLite locking), but the
    device is expected to have one writer.
    """

    def __init__(
        self,
        path: str | Path,
        program: FeatureProgram | None = None,
        *,
        durability: str = "process",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if durability not in _SYNCHRONOUS:
            raise ValueError(
                f"The 'durability' parameter of CustomerState must be one of {sorted(_SYNCHRONOUS)}. "
                f"Got {durability!r} instead."
            )
        self.path = Path(path)
        self.clock = clock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={_SYNCHRONOUS[durability]}")
        # A store's state is tens of MB and every event reads one customer at random: without
        # a page cache that large each read is a system call (measured: 3x slower replays).
        self._db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        self._db.execute(f"PRAGMA wal_autocheckpoint={WAL_SAFETY_PAGES}")
        self._db.executescript(_SCHEMA)
        self._commits = 0
        self._checkpoint_due = threading.Event()
        self._closing = False
        self._checkpointer: threading.Thread | None = None
        self.program = self._check_program(program)
        self._validator = _Validator(self.program)
        self._lateness_us = round(self.program.lateness_s * _US_PER_S)
        self._future_us = round(self.program.future_tolerance_s * _US_PER_S)
        self._dormant_us = round(self.program.dormant_days * _US_PER_DAY)
        # Catalogue of product/category/country names <-> small ids (products are stored as
        # 4-byte ids, not strings: the dominant part of a store's state), kept in memory.
        self._ids: list[dict[str, int]] = [{}, {}, {}]
        self._names: list[dict[int, str]] = [{}, {}, {}]
        self._pending: list[dict[str, int]] = [{}, {}, {}]  # names added by the open transaction
        self._next: dict[int, int] = {}  # next free catalogue id per kind, in the open transaction
        # Next free catalogue id per kind in the committed catalogue (a MAX(id) query scans every
        # product: measured 150 µs per new product name in a store's catalogue).
        self._free = [0, 0, 0]
        self._hot: OrderedDict[bytes, _Customer] = OrderedDict()  # recently used customers, newest last
        self._version: int | None = None  # PRAGMA data_version when _hot, _mark and the catalogue were read
        self._mark = _NO_TIME  # the watermark: newest event time applied
        self._sync()  # loads the watermark and the catalogue

    def _check_program(self, program: FeatureProgram | None) -> FeatureProgram:
        """The file remembers its program: state built under other rules must not be mixed in."""
        rows = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        if not rows:
            program = program or FeatureProgram()
            self._db.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [
                    ("schema_version", str(SCHEMA_VERSION)),
                    ("program", json.dumps(program.to_json(), sort_keys=True)),
                    ("watermark", str(_NO_TIME)),
                ],
            )
            return program
        if rows.get("schema_version") != str(SCHEMA_VERSION):
            raise ValueError(f"customer state {str(self.path)!r} has schema version {rows.get('schema_version')!r}")
        stored = FeatureProgram.from_json(json.loads(rows["program"]))
        if program is not None and program != stored:
            raise ValueError(
                f"customer state {str(self.path)!r} was built with feature program {stored.to_json()}, "
                f"not {program.to_json()}: start a new state file (or bootstrap from a snapshot)"
            )
        return stored

    # ---------------------------------------------------------------- public API
    def close(self) -> None:
        """Close the database (idempotent); ``with CustomerState(...)`` closes it on exit."""
        self._closing = True
        self._checkpoint_due.set()
        if self._checkpointer is not None:
            self._checkpointer.join()
            self._checkpointer = None
        with self._lock:
            self._db.close()

    def _committed(self) -> None:
        """Count a commit; every ``CHECKPOINT_EVERY`` wake the checkpoint thread (started on first use)."""
        self._commits += 1
        if self._commits % CHECKPOINT_EVERY:
            return
        if self._checkpointer is None:
            self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="customer-state-wal", daemon=True)
            self._checkpointer.start()
        self._checkpoint_due.set()

    def _checkpoint_loop(self) -> None:
        """Copy the WAL into the database off the event path (PASSIVE: never waits for, nor
        blocks, the writer; what it cannot copy now is copied next time)."""
        db = sqlite3.connect(self.path, isolation_level=None, timeout=1.0)
        try:
            while True:
                self._checkpoint_due.wait()
                self._checkpoint_due.clear()
                if self._closing:
                    return
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error:  # busy or closing: the next wake-up (or the safety net) does it
                    continue
        finally:
            db.close()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def watermark(self) -> datetime | None:
        """The newest event time applied (wall clock), or None before the first event."""
        with self._lock:
            self._sync()
            value = self._mark
        return None if value == _NO_TIME else _EPOCH + timedelta(microseconds=value)

    def __len__(self) -> int:
        """Customers with any state (including those seen only through returns)."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM customers").fetchone()[0])

    def refs(self) -> Iterator[str]:
        """Every stored customer ref (hex), in ref order."""
        with self._lock:
            rows = self._db.execute("SELECT ref FROM customers ORDER BY ref").fetchall()
        for (ref,) in rows:
            yield bytes(ref).hex()

    def forget(self, ref: str) -> bool:
        """Erase the customer ``ref``'s state (an erasure request, docs/PRIVACY.md); True if
        there was any. The freed pages are zeroed (``secure_delete``) and the WAL truncated,
        so the customer's bytes do not stay readable in the file."""
        key = self._ref(ref)
        with self._lock:
            self._db.execute("PRAGMA secure_delete=ON")
            deleted = self._db.execute("DELETE FROM customers WHERE ref = ?", (key,)).rowcount
            self._hot.pop(key, None)
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:  # pragma: no cover - a reader's snapshot; the next checkpoint does it
                pass
        return deleted > 0

    def observe(self, event: Mapping[str, Any], ref: Ref) -> ObserveResult:
        """Apply one till event for the customer ``ref``, atomically and idempotently.

        ``ref`` is the customer's pseudonym, or the function that makes it from the event's
        validated ``customer_id`` (``Runtime.customer_ref``), so a bad id is refused by name
        before it is hashed.

        Raises ``EventError`` (a ValueError naming the field) for a malformed event, an event
        in the future, or one older than the lateness window; nothing is changed then.
        """
        return self._transaction([(event, ref)], single=True)[0]

    def observe_many(self, events: Iterable[tuple[Mapping[str, Any], Ref]]) -> list[ObserveResult]:
        """Apply events in order in one transaction (replay, bootstrap): all of them or none.

        Each event is validated against the state the previous ones leave, so a refused
        event (its error says which: ``events[i].field``) leaves the whole batch unapplied.
        """
        return self._transaction(events, single=False)

    def _transaction(self, events: Iterable[tuple[Mapping[str, Any], Ref]], *, single: bool) -> list[ObserveResult]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            touched: dict[bytes, _Customer] = {}
            try:
                self._sync()
                results, mark = self._apply_all(events, single, touched)
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                self._pending = [{}, {}, {}]
                for key in touched:  # their in-memory copies hold the refused changes
                    self._hot.pop(key, None)
                raise
            self._pending_commit()
            self._mark = mark
            self._remember(touched)
            self._committed()
            return results

    def _sync(self) -> None:
        """Drop what this connection remembers if another connection has committed since.

        SQLite's ``data_version`` changes only for commits of *other* connections, so a
        single-writer device (the normal case) keeps its hot customers, its watermark and
        its catalogue in memory between events, and a second writer (an ``ingest`` beside a
        running ``serve``) is still seen.
        """
        version = self._db.execute("PRAGMA data_version").fetchone()[0]
        if version == self._version:
            return
        self._version = version
        self._hot.clear()
        self._mark = int(self._db.execute("SELECT value FROM meta WHERE key = 'watermark'").fetchone()[0])
        for kind, name, ident in self._db.execute("SELECT kind, name, id FROM catalogue"):
            self._ids[kind][name] = ident
            self._names[kind][ident] = name
            if ident >= self._free[kind]:
                self._free[kind] = ident + 1

    def _remember(self, customers: dict[bytes, _Customer]) -> None:
        """Keep the customers of the last events in memory (a till's next question is about them)."""
        hot = self._hot
        for key, customer in customers.items():
            hot[key] = customer
            hot.move_to_end(key)
        while len(hot) > HOT_CUSTOMERS:
            hot.popitem(last=False)

    def materialise(self, ref: str, at: datetime | str | float | None = None) -> dict[str, float | str | None]:
        """The model's input record for ``ref`` at ``at`` (default: now), O(one customer's state).

        ``recency_days``, ``tenure_days`` and ``is_dormant`` are computed from ``at``, so a
        customer turns dormant with time alone. ``at`` must not precede the customer's newest
        line: the state cannot un-apply lines (the factory's cutoff is exclusive, the
        device's record includes every line observed).
        """
        key = self._ref(ref)
        at_us = self._validator.now_us(self.clock) if at is None else self._validator.wall_us(at, "at")
        with self._lock:
            self._sync()
            customer = self._hot.get(key)
            if customer is None:
                customer = self._load(key)
                if customer is None:
                    raise NoRecordError(f"customer {ref} has no state on this device (no event observed)")
                self._remember({key: customer})
            if at is None:  # "now" on a till whose clock lags the event's by up to future_tolerance_s
                at_us = max(at_us, customer.seen)
            return self._record(customer, at_us, ref)

    # ---------------------------------------------------------------- internals
    def _ref(self, ref: object) -> bytes:
        if not isinstance(ref, str) or not _REF.match(ref):
            raise EventError("ref", ref, "must be the hex customer ref of Runtime.customer_ref (16-64 hex digits)")
        return bytes.fromhex(ref)

    def _id(self, kind: int, name: str) -> int:
        ident = self._ids[kind].get(name)
        if ident is None:
            ident = self._pending[kind].get(name)
        if ident is None:
            row = self._db.execute("SELECT id FROM catalogue WHERE kind = ? AND name = ?", (kind, name)).fetchone()
            if row is None:  # a new name; ids are dense per kind (another writer may have added some)
                ident = self._next.get(kind, self._free[kind])
                self._next[kind] = ident + 1
                self._db.execute("INSERT INTO catalogue (kind, name, id) VALUES (?, ?, ?)", (kind, name, ident))
            else:
                ident = int(row[0])
            self._pending[kind][name] = ident
        return ident

    def _pending_commit(self) -> None:
        for kind, pending in enumerate(self._pending):
            for name, ident in pending.items():
                self._ids[kind][name] = ident
                self._names[kind][ident] = name
                if ident >= self._free[kind]:
                    self._free[kind] = ident + 1
        self._pending = [{}, {}, {}]

    def _apply_all(
        self, events: Iterable[tuple[Mapping[str, Any], Ref]], single: bool, cache: dict[bytes, _Customer]
    ) -> tuple[list[ObserveResult], int]:
        """Apply the events to in-memory customers (``cache``, filled here) and write them back.

        Returns the results and the new watermark; the caller commits.
        """
        self._pending = [{}, {}, {}]
        self._next = {}
        watermark = self._mark
        now = self._validator.now_us(self.clock)
        events = events if isinstance(events, list) else list(events)
        if len(events) > 1:
            self._preload(events, cache)
        results: list[ObserveResult] = []
        for n, (raw, ref) in enumerate(events):
            try:
                event = self._validator.event(raw)
                key = self._ref(ref(event.customer_id) if callable(ref) else ref)
                customer = cache.get(key)
                if customer is None:
                    customer = self._hot.get(key) or self._load(key) or _Customer()
                    cache[key] = customer
                applied = customer.keys.get(event.key)
                done = set() if applied is None else set(applied[2])
                todo = [line for line in event.lines if line[0] not in done]
                if todo:  # a pure replay is a no-op, however late it comes
                    if event.ts > now + self._future_us:
                        raise EventError("timestamp", raw.get("timestamp"), "is in the future")
                    if watermark != _NO_TIME and event.ts < watermark - self._lateness_us:
                        raise EventError(
                            "timestamp",
                            raw.get("timestamp"),
                            f"is more than {self.program.lateness_s:g} s older than the newest event "
                            f"({_EPOCH + timedelta(microseconds=watermark)}): too late to apply",
                        )
            except EventError as exc:
                if single:
                    raise
                raise EventError(f"events[{n}].{exc.field}", exc.value, exc.rule) from exc
            skipped = self._apply(customer, event, todo)
            watermark = max(watermark, event.ts)
            customer.prune(watermark - self._lateness_us)
            results.append(ObserveResult(len(todo) - skipped, len(event.lines) - len(todo), skipped))
        rows = [(key, *customer.to_row()) for key, customer in cache.items()]
        if len(rows) == 1:  # a till's event: one customer (execute skips executemany's iteration)
            self._db.execute(_UPSERT, rows[0])
        else:
            self._db.executemany(_UPSERT, rows)
        if watermark != self._mark:
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'watermark'", (str(watermark),))
        return results, watermark

    def _preload(self, events: list[tuple[Mapping[str, Any], Ref]], cache: dict[bytes, _Customer]) -> None:
        """Every customer of a batch in a few queries (one round trip per 500, not per event)."""
        hot = self._hot
        keys = []
        for key in {bytes.fromhex(ref) for _, ref in events if isinstance(ref, str) and _REF.match(ref)}:
            customer = hot.get(key)
            if customer is None:
                keys.append(key)
            else:
                cache[key] = customer
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT ref, head, products, categories, countries, recent FROM customers WHERE ref IN ({marks})"
            for ref, *row in self._db.execute(sql, chunk):
                cache[bytes(ref)] = _Customer.from_row(*row)
        for key in keys:
            if key not in cache:
                cache[key] = _Customer()

    def _load(self, key: bytes) -> _Customer | None:
        row = self._db.execute(
            "SELECT head, products, categories, countries, recent FROM customers WHERE ref = ?", (key,)
        ).fetchone()
        return None if row is None else _Customer.from_row(*row)

    def _apply(self, c: _Customer, event: _Event, lines: Sequence[_Line]) -> int:
        """The factory's rules, one line at a time; returns how many lines were skipped.

        Written with local variables and the Kahan steps inline: this loop is the replay's
        hot path (one pass per log line).
        """
        program = self.program
        ts = event.ts
        entry = c.keys.get(event.key)
        if entry is None:
            entry = c.keys[event.key] = [ts, False, []]
        entry[0] = max(entry[0], ts)
        applied = entry[2]
        country = self._id(_COUNTRY, event.country) if program.countries else -1
        use_products, use_categories = program.products, program.categories
        cancelled = event.cancelled
        gross, gross_c, items, items_c, net, net_c, returns, returns_c = c.sums
        products, categories = c.products, c.categories
        product_ids, category_ids = self._ids[_PRODUCT], self._ids[_CATEGORY]
        skipped = 0
        purchased = False
        for number, product, category, quantity, price in lines:
            applied.append(number)
            if quantity == 0 or price == 0:  # the factory's cleaning drops these lines
                skipped += 1
                continue
            amount = quantity * price
            if cancelled and amount > 0:  # a cancellation subtracts, whatever its quantity's sign
                amount = -amount
            y = amount - net_c  # net: every line, purchase or return
            t = net + y
            net_c = (t - net) - y
            net = t
            if country >= 0:
                c.countries[country] = c.countries.get(country, 0) + 1
            if quantity < 0 or cancelled:
                y = amount - returns_c
                t = returns + y
                returns_c = (t - returns) - y
                returns = t
                continue
            # A purchase.
            purchased = True
            y = amount - gross_c
            t = gross + y
            gross_c = (t - gross) - y
            gross = t
            y = quantity - items_c
            t = items + y
            items_c = (t - items) - y
            items = t
            if use_products:
                pid = product_ids.get(product)
                packed = _UINT32.pack(self._id(_PRODUCT, product) if pid is None else pid)
                if not _contains(products, packed):
                    products += packed
            if use_categories:
                cid = category_ids.get(category)
                if cid is None:
                    cid = self._id(_CATEGORY, category)
                categories[cid] = categories.get(cid, 0.0) + amount
        if len(lines) > skipped and ts > c.seen:
            c.seen = ts
        if purchased:  # every line of an event has its time: first/last purchase, days, baskets
            if c.first == _NO_TIME or ts < c.first:
                c.first = ts
            if ts > c.last:
                c.last = ts
            day = ts // _US_PER_DAY
            if day not in c.days:
                c.days.append(day)
                c.days.sort()
                c.min_day = day if c.n_days == 0 else min(c.min_day, day)
                c.max_day = day if c.n_days == 0 else max(c.max_day, day)
                c.n_days += 1
            if event.invoice and not entry[1]:
                entry[1] = True
                c.n_invoices += 1
        c.sums = [gross, gross_c, items, items_c, net, net_c, returns, returns_c]
        return skipped

    def _record(self, c: _Customer, at: int, ref: str) -> dict[str, float | str | None]:
        """``build_customer_features`` for one customer at cutoff ``at``."""
        if c.first == _NO_TIME:
            raise NoRecordError(
                f"customer {ref} has no purchase yet (seen only through returns): no input record, as in the factory"
            )
        if at < c.seen:
            raise EventError(
                "at",
                str(_EPOCH + timedelta(microseconds=at)),
                f"precedes this customer's newest line ({_EPOCH + timedelta(microseconds=c.seen)})",
            )
        program = self.program
        gross, items, net, returns = c.sums[0], c.sums[2], c.sums[4], c.sums[6]
        baskets = c.n_invoices if program.invoices and c.n_invoices > 0 else c.n_days
        record: dict[str, float | str | None] = {
            "recency_days": (at - c.last) / _US_PER_DAY,
            "frequency": float(baskets),
            "monetary": net,
            "tenure_days": (at - c.first) / _US_PER_DAY,
            "avg_basket_value": gross / baskets,
            "avg_basket_items": items / baskets,
            "return_rate": min(max(-returns / gross, 0.0), 1.0) + 0.0,  # + 0.0: no "-0.0" in a record
        }
        if program.products:
            record["product_breadth"] = float(len(c.products) // 4)
        if program.categories:
            record["category_breadth"] = float(len(c.categories))
            record["top_category_share"] = max(c.categories.values()) / gross
        record["inter_purchase_days"] = (c.max_day - c.min_day) / (c.n_days - 1) if c.n_days > 1 else None
        if program.countries:
            names = self._names[_COUNTRY]
            # Most lines; ties go to the alphabetically first name (the factory's sort order).
            best = min(c.countries.items(), key=lambda p: (-p[1], names[p[0]]))
            record["country"] = names[best[0]]
        record["is_dormant"] = "yes" if c.seen < at - self._dormant_us else "no"
        return record
