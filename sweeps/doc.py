"""The report as a document model: blocks rendered once as Markdown and once as a
self-contained HTML page, so the two never disagree.

Kept apart from :mod:`sweeps.report`, which decides what a report says; this module
only knows how a heading, paragraph, list, image or table is written in each format.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import pandas as pd

from sweeps.results import format_cell, to_markdown

CSS = """body{font:15px/1.5 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222}table{border-collapse:collapse;font-size:13px;margin:.6em 0 1.2em;display:block;
overflow-x:auto}th,td{border:1px solid #ccc;padding:3px 7px;text-align:right;white-space:nowrap}
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}img{max-width:100%;
margin:.5em 0}code{background:#f4f4f4;padding:0 3px;border-radius:3px}h2{border-bottom:1px
solid #ddd;padding-bottom:.2em;margin-top:1.8em}summary{cursor:pointer;color:#0366d6}"""


class Doc:
    """The report as blocks, rendered once as Markdown and once as HTML, so the two
    never disagree. Text may hold `code` spans and nothing else of Markdown."""

    def __init__(self) -> None:
        self.blocks: list[tuple] = []

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", level, text))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def ul(self, items: list[str]) -> None:
        self.blocks.append(("ul", items))

    def img(self, name: str, alt: str) -> None:
        self.blocks.append(("img", name, alt))

    def table(self, header: list[str], rows: list[list[str]], fold: str | None = None) -> None:
        """A table of ready-made cell strings; ``fold`` folds it under that summary."""
        self.blocks.append(("table", header, rows, fold))

    def markdown(self, img_dir: str = "") -> str:
        """``img_dir``: the figures' folder relative to where the Markdown file lies."""
        out = []
        for b in self.blocks:
            kind = b[0]
            if kind == "h":
                out.append(f"{'#' * b[1]} {b[2]}")
            elif kind == "p":
                out.append(b[1])
            elif kind == "ul":
                out.append("\n".join(f"- {i}" for i in b[1]))
            elif kind == "img":
                out.append(f"![{b[2]}]({img_dir}{b[1]})")
            else:
                _, header, rows, fold = b
                md = to_markdown(pd.DataFrame(rows, columns=header, dtype=object)).rstrip()
                if not rows:
                    md = to_markdown(pd.DataFrame(columns=header)).rstrip()
                out.append(
                    f"<details><summary>{fold}</summary>\n\n{md}\n\n</details>" if fold else md
                )
        return "\n\n".join(out) + "\n"

    def html(self, folder: Path, title: str) -> str:
        """One file: images inlined as base64 data URIs, tables as HTML, inline CSS."""
        out = []
        for b in self.blocks:
            kind = b[0]
            if kind == "h":
                out.append(f"<h{b[1]}>{_inline(b[2])}</h{b[1]}>")
            elif kind == "p":
                out.append(f"<p>{_inline(b[1])}</p>")
            elif kind == "ul":
                out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b[1]) + "</ul>")
            elif kind == "img":
                data = base64.b64encode((folder / b[1]).read_bytes()).decode()
                alt = html.escape(b[2], quote=True)
                out.append(f'<img alt="{alt}" src="data:image/png;base64,{data}">')
            else:
                _, header, rows, fold = b
                head = "".join(f"<th>{html.escape(str(c))}</th>" for c in header)
                body = "".join(
                    "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>"
                    for r in rows
                )
                t = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
                out.append(
                    f"<details><summary>{_inline(fold)}</summary>{t}</details>" if fold else t
                )
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(out)
            + "\n</body></html>\n"
        )


def _inline(text: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text, quote=False))


def table_cells(df: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """A DataFrame's header and cells as text, digits as :func:`to_markdown` prints them."""
    cols = [str(c) for c in df.columns]
    rows = [
        [format_cell(c, v) for c, v in zip(cols, r, strict=True)]
        for r in df.itertuples(index=False)
    ]
    return cols, rows
