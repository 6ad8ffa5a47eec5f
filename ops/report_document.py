"""The cutover report as a list of sections of simple blocks, rendered to Markdown and to HTML.

Built once from the sources, rendered twice, so both files always say the same thing. The HTML
is self-contained (inline CSS, plots as inline SVG, screenshots as base64 data); the Markdown
links the plot and screenshot files that lie next to it.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field

Cell = str | int | float | None

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:72rem;margin:2rem auto;
padding:0 1rem;color:#1b1f24;line-height:1.45}
h1{margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:1px solid #d0d7de;padding-bottom:.2rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}
th,td{border:1px solid #d0d7de;padding:.25rem .55rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
.verdict{font-size:1.3rem;font-weight:700;padding:.6rem 1rem;border-radius:6px;margin:1rem 0}
.verdict.pass{background:#dafbe1;color:#116329}.verdict.fail{background:#ffebe9;color:#a40e26}
.verdict.incomplete{background:#fff8c5;color:#7d4e00}
.pass{color:#116329}.fail,.breach{color:#a40e26}.muted{color:#57606a}
pre{background:#f6f8fa;padding:.6rem;overflow-x:auto;font-size:.8rem;max-height:24rem}
figure{margin:1rem 0}figure img,figure svg{max-width:100%;height:auto;border:1px solid #d0d7de}
figcaption{color:#57606a;font-size:.85rem}
caption{text-align:left;font-weight:600;padding:.2rem 0}
"""


@dataclass(frozen=True, slots=True)
class Paragraph:
    text: str
    tone: str = ""  # "", "muted"


@dataclass(frozen=True, slots=True)
class Bullets:
    items: list[str]


@dataclass(frozen=True, slots=True)
class Table:
    columns: list[str]
    rows: Sequence[Sequence[Cell]]
    caption: str = ""


@dataclass(frozen=True, slots=True)
class Code:
    """Preformatted text under a title (a redacted sample pair)."""

    title: str
    text: str


@dataclass(frozen=True, slots=True)
class Plot:
    """An SVG plot; `file` is its name next to the Markdown report."""

    svg: str
    file: str
    caption: str


@dataclass(frozen=True, slots=True)
class Image:
    """A PNG; `link` is its path relative to the Markdown report."""

    data: bytes
    link: str
    caption: str


Block = Paragraph | Bullets | Table | Code | Plot | Image


@dataclass(slots=True)
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass(slots=True)
class Report:
    title: str
    verdict: str  # "pass", "fail" or "incomplete"
    headline: str
    reasons: list[str]
    generated_at: str
    sections: list[Section]


def _cell_text(value: Cell) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _md_text(text: str) -> str:
    # Text from the sources is never markup: a Markdown viewer must not run `<img onerror=…>`.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _md_cell(value: Cell) -> str:
    text = _md_text(_cell_text(value)).replace("\\", "\\\\").replace("|", "\\|")
    return text.replace("\n", " ")


def render_markdown(report: Report) -> str:
    lines = [f"# {report.title}", "", f"_generated {report.generated_at}_", ""]
    lines.append(f"**Verdict: {report.verdict.upper()}** — {_md_text(report.headline)}")
    lines.append("")
    lines += [f"- {_md_text(reason)}" for reason in report.reasons]
    for section in report.sections:
        lines += ["", f"## {section.title}"]
        for block in section.blocks:
            lines += ["", *_md_block(block)]
    return "\n".join(lines).rstrip() + "\n"


def _md_block(block: Block) -> list[str]:
    if isinstance(block, Paragraph):
        text = _md_text(block.text)
        return [f"_{text}_" if block.tone == "muted" else text]
    if isinstance(block, Bullets):
        return [f"- {_md_text(item)}" for item in block.items]
    if isinstance(block, Table):
        lines = [f"**{_md_text(block.caption)}**", ""] if block.caption else []
        lines.append("| " + " | ".join(_md_cell(c) for c in block.columns) + " |")
        lines.append("|" + "|".join("---" for _ in block.columns) + "|")
        lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
        return lines
    if isinstance(block, Code):
        fence = "````" if "```" in block.text else "```"
        return [f"**{_md_text(block.title)}**", "", f"{fence}text", block.text, fence]
    if isinstance(block, Plot):
        return [f"![{block.caption}]({block.file})", "", f"_{block.caption}_"]
    return [f"![{block.caption}]({block.link})", "", f"_{block.caption}_"]


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def render_html(report: Report) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(report.title)}</title>",
        f"<style>{STYLE}</style>",
        "</head>",
        "<body>",
        f"<h1>{_e(report.title)}</h1>",
        f'<p class="muted">generated {_e(report.generated_at)}</p>',
        f'<div class="verdict {_e(report.verdict)}" id="verdict">Verdict: '
        f"{_e(report.verdict.upper())} — {_e(report.headline)}</div>",
    ]
    if report.reasons:
        parts.append("<ul>" + "".join(f"<li>{_e(r)}</li>" for r in report.reasons) + "</ul>")
    for section in report.sections:
        anchor = "".join(c if c.isalnum() else "-" for c in section.title.lower())
        parts.append(f'<section id="{_e(anchor)}">')
        parts.append(f"<h2>{_e(section.title)}</h2>")
        parts += [_html_block(block) for block in section.blocks]
        parts.append("</section>")
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"


_TONES = {"pass": "pass", "fail": "fail", "breach": "breach", "FAIL": "fail"}


def _html_cell(value: Cell, column: str) -> str:
    text = _cell_text(value)
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    tone = _TONES.get(text.split(" ")[0]) if column in ("verdict", "result") else None
    classes = " ".join(c for c in ("num" if numeric else "", tone or "") if c)
    attribute = f' class="{classes}"' if classes else ""
    return f"<td{attribute}>{_e(text)}</td>"


def _html_block(block: Block) -> str:
    if isinstance(block, Paragraph):
        tone = f' class="{_e(block.tone)}"' if block.tone else ""
        return f"<p{tone}>{_e(block.text)}</p>"
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{_e(item)}</li>" for item in block.items) + "</ul>"
    if isinstance(block, Table):
        caption = f"<caption>{_e(block.caption)}</caption>" if block.caption else ""
        head = "".join(f"<th>{_e(c)}</th>" for c in block.columns)
        body = "".join(
            "<tr>" + "".join(_html_cell(c, block.columns[i]) for i, c in enumerate(row)) + "</tr>"
            for row in block.rows
        )
        return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    if isinstance(block, Code):
        return f"<p><strong>{_e(block.title)}</strong></p><pre>{_e(block.text)}</pre>"
    if isinstance(block, Plot):
        return f"<figure>{block.svg}<figcaption>{_e(block.caption)}</figcaption></figure>"
    data = base64.b64encode(block.data).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{_e(block.caption)}">'
        f"<figcaption>{_e(block.caption)}</figcaption></figure>"
    )
