"""``report.html``: the report's Markdown as one static page (no server, no scripts), its figures embedded (PNG as
``data:`` URIs), so the file can be copied or mailed alone.

The converter covers what prunelab's reports contain: headings, pipe tables, images, bullet lists, ``<details>``
blocks and paragraphs with inline code and bold. Text is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}td,th{border:1px solid #ccc;padding:3px 8px}
th{background:#f3f3f3}img{max-width:100%;margin:.5em 0;border:1px solid #eee}code{background:#f5f5f5}
figure{margin:1em 0}figcaption{font-size:13px;color:#555}"""


def _inline(text: str) -> str:
    text = html.escape(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _image_src(src: str, base: Path | None) -> str:
    """A PNG beside the report, embedded as a data URI; anything else (or a missing file) linked as written."""
    path = (base / src) if base is not None else None
    if path is not None and src.endswith(".png") and path.is_file():
        return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    return src


def to_html(markdown: str, title: str = "prunelab report", base: Path | None = None) -> str:
    out, lines, i = [], markdown.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("|") and i + 1 < len(lines) and set(lines[i + 1].replace("|", "").strip()) <= set("-: "):
            head, i = _cells(line), i + 2
            body: list[list[str]] = []
            while i < len(lines) and lines[i].startswith("|"):
                body.append(_cells(lines[i]))
                i += 1
            out.append("<table><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head) + "</tr>")
            out += ["<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in body]
            out.append("</table>")
            continue
        image = re.fullmatch(r"!\[([^\]]*)\]\(([^)]+)\)", line.strip())
        if image:
            src = html.escape(_image_src(image[2], base))
            out.append(
                f'<figure><img alt="{html.escape(image[1])}" src="{src}"><figcaption>{html.escape(image[1])}'
                "</figcaption></figure>"
            )
        elif m := re.match(r"(#{1,6}) (.*)", line):
            out.append(f"<h{len(m[1])}>{_inline(m[2])}</h{len(m[1])}>")
        elif line.startswith("- "):
            out.append(f"<ul><li>{_inline(line[2:])}</li></ul>")
        elif line.strip() in ("<details>", "</details>") or line.startswith("<details><summary>"):
            out.append(line.strip())
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
        i += 1
    page = "\n".join(out).replace("</ul>\n<ul>", "\n")
    return (
        f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head>\n<body>\n{page}\n</body></html>\n"
    )


def write_html(markdown_path: Path, html_path: Path) -> Path:
    html_path.write_text(to_html(markdown_path.read_text(), base=markdown_path.parent))
    return html_path
