"""A tiny document model rendered twice, to Markdown and to HTML, so the two never disagree.

No Markdown library is a dependency of edgeseg; the report only needs headings, paragraphs,
tables, images and preformatted text.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

__all__ = ["Block", "Heading", "Image", "Para", "Pre", "Table", "to_html", "to_markdown"]


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")


def _inline(text: str) -> str:
    escaped = html.escape(str(text))
    escaped = _CODE.sub(r"<code>\1</code>", escaped)
    return _BOLD.sub(r"<strong>\1</strong>", escaped)


@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Para:
    text: str


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]


@dataclass
class Image:
    file: str
    alt: str


@dataclass
class Pre:
    text: str


Block = Heading | Para | Table | Image | Pre


def _table(t: Table) -> tuple[str, str]:
    md = ["| " + " | ".join(_md_cell(h) for h in t.headers) + " |", "|" + "|".join("---" for _ in t.headers) + "|"]
    md += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in t.rows]
    page = ["<table><thead><tr>" + "".join(f"<th>{_inline(h)}</th>" for h in t.headers) + "</tr></thead>", "<tbody>"]
    page += ["<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in t.rows]
    return "\n".join(md) + "\n", "\n".join(page) + "\n</tbody></table>"


def _render(b: Block) -> tuple[str, str]:
    """(Markdown, HTML) of one block, written side by side so the two formats cannot drift apart."""
    if isinstance(b, Heading):
        return f"{'#' * b.level} {b.text}\n", f"<h{b.level}>{_inline(b.text)}</h{b.level}>"
    if isinstance(b, Para):
        return f"{b.text}\n", f"<p>{_inline(b.text)}</p>"
    if isinstance(b, Image):
        return f"![{b.alt}]({b.file})\n", f'<p><img src="{html.escape(b.file)}" alt="{html.escape(b.alt)}"></p>'
    if isinstance(b, Pre):
        return f"```\n{b.text}\n```\n", f"<pre>{html.escape(b.text)}</pre>"
    return _table(b)


def to_markdown(blocks: list[Block]) -> str:
    return "\n".join(_render(b)[0] for b in blocks)


_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
code, pre { background: #f6f6f6; }
pre { padding: 0.6em; overflow-x: auto; }
img { max-width: 100%; }
"""


def to_html(blocks: list[Block], title: str) -> str:
    out = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        *(_render(b)[1] for b in blocks),
        "</body></html>",
    ]
    return "\n".join(out) + "\n"
