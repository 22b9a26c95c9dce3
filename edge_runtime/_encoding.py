"""Deprecated alias of :mod:`edge_runtime.encoding` (kept until every importer has switched)."""

from edge_runtime.encoding import InputLayout, encode_columns, encode_records  # noqa: F401
