"""Which columns of a raw transaction log mean what.

A transaction log arrives with its publisher's column names (``CustomerID``, ``InvoiceDate`` …).
:class:`LogColumns` maps them onto the canonical names the rest of the feature builder uses, so
the feature code is written once and a new log needs only a new mapping, not new code.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from factory.errors import FactoryInputError

# Canonical column names of the cleaned log returned by ``load_transactions``.
CUSTOMER_ID = "customer_id"
TIMESTAMP = "timestamp"
QUANTITY = "quantity"
UNIT_PRICE = "unit_price"
AMOUNT = "amount"
INVOICE_ID = "invoice_id"
PRODUCT = "product"
CATEGORY = "category"
COUNTRY = "country"
IS_RETURN = "is_return"

#: Columns every cleaned log has; the optional ones exist only when the raw log provides them.
REQUIRED_CANONICAL = (CUSTOMER_ID, TIMESTAMP, QUANTITY, UNIT_PRICE, AMOUNT, IS_RETURN)
OPTIONAL_CANONICAL = (INVOICE_ID, PRODUCT, CATEGORY, COUNTRY)


@dataclass(frozen=True, kw_only=True)
class LogColumns:
    """Names of the raw log's columns, by the role each plays.

    Exactly one of ``unit_price`` and ``amount`` must be given: Online Retail records a unit
    price per line, CDNOW records the line's total ``dollar_value`` and a quantity; the other
    one is derived (``amount = quantity * unit_price`` or ``unit_price = amount / quantity``).

    The optional roles (``invoice_id``, ``product``, ``category``, ``country``) are simply
    absent from the cleaned log when ``None``, and so are the features built from them.

    Parameters
    ----------
    customer_id, timestamp, quantity:
        Required columns. A negative quantity is a return.
    unit_price, amount:
        Exactly one of them.
    invoice_id:
        Basket identifier; without it each customer's purchase day is one basket.
    product, category, country:
        Optional descriptive columns.
    timestamp_format:
        ``strftime`` format of the timestamp column (``None``: let pandas infer it). An
        explicit format is both faster and stricter: values that do not match are counted
        as unparseable instead of being guessed.
    cancel_prefix:
        Invoice ids starting with this prefix are cancellations (Online Retail: ``"C"``).
    category_from_stock_code:
        Derive ``category`` from the product code's numeric family (see
        :func:`factory.features.stock_code_family`); needs ``product``, excludes ``category``.
    """

    customer_id: str
    timestamp: str
    quantity: str
    unit_price: str | None = None
    amount: str | None = None
    invoice_id: str | None = None
    product: str | None = None
    category: str | None = None
    country: str | None = None
    timestamp_format: str | None = None
    cancel_prefix: str | None = None
    category_from_stock_code: bool = False

    def __post_init__(self) -> None:
        if (self.unit_price is None) == (self.amount is None):
            raise FactoryInputError(
                "LogColumns needs exactly one of 'unit_price' and 'amount'. "
                f"Got unit_price={self.unit_price!r}, amount={self.amount!r} instead."
            )
        if self.category_from_stock_code and (self.product is None or self.category):
            raise FactoryInputError(
                "LogColumns(category_from_stock_code=True) derives the category from 'product', "
                "so it needs 'product' and no 'category' column. "
                f"Got product={self.product!r}, category={self.category!r} instead."
            )
        if self.cancel_prefix is not None and self.invoice_id is None:
            raise FactoryInputError(
                "LogColumns 'cancel_prefix' marks cancelled invoices, so it needs 'invoice_id'. "
                f"Got cancel_prefix={self.cancel_prefix!r}, invoice_id=None instead."
            )

    def mapping(self) -> dict[str, str]:
        """Canonical role → raw column name, for every role that is mapped to a column."""
        roles = (
            CUSTOMER_ID,
            TIMESTAMP,
            QUANTITY,
            UNIT_PRICE,
            AMOUNT,
            INVOICE_ID,
            PRODUCT,
            CATEGORY,
            COUNTRY,
        )
        return {role: getattr(self, role) for role in roles if getattr(self, role) is not None}

    def options(self) -> dict[str, object]:
        """Every field as a plain dict (what the cleaning report records)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def online_retail(cls) -> LogColumns:
        """UCI Online Retail (the bundled ``data/online_retail/online_retail.parquet``)."""
        return cls(
            customer_id="CustomerID", timestamp="InvoiceDate", quantity="Quantity", unit_price="UnitPrice",
            invoice_id="InvoiceNo", product="StockCode", country="Country", timestamp_format="%Y-%m-%d %H:%M:%S",
            cancel_prefix="C", category_from_stock_code=True,
        )  # fmt: skip

    @classmethod
    def cdnow(cls) -> LogColumns:
        """CDNOW master log (Fader & Hardie): no invoice, product or country columns."""
        return cls(
            customer_id="customer_id", timestamp="date", quantity="number_of_cds", amount="dollar_value",
            timestamp_format="%Y%m%d",
        )  # fmt: skip
