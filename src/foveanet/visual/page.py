"""One self-contained HTML page listing pictures with their captions: each PNG (or GIF) is
embedded as a base64 ``data:`` URI, so the page can be mailed or moved without its folder.
Captions and titles are HTML-escaped (a layer name is text, not markup)."""
from __future__ import annotations

import base64
import html
import os

__all__ = ["write_page", "render_page"]

MIME = {".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}

STYLE = """body { font-family: sans-serif; margin: 2em; max-width: 72em; color: #222; }
figure { margin: 2em 0; padding-bottom: 1em; border-bottom: 1px solid #ddd; }
img { max-width: 100%; height: auto; }
figcaption { margin-top: 0.5em; }
.file { color: #777; font-size: 90%; }"""


def render_page(items, title: str = "foveanet visualisations", intro: str | None = None) -> str:
    """The HTML text of a page showing ``items`` (``(path, caption)`` pairs; the files are read
    and embedded) under ``title``, with an optional paragraph ``intro``."""
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             f"<title>{html.escape(title)}</title>", f"<style>\n{STYLE}\n</style>", "</head>",
             "<body>", f"<h1>{html.escape(title)}</h1>"]
    if intro:
        parts.append(f"<p>{html.escape(intro)}</p>")
    for path, caption in items:
        path = os.fspath(path)
        ext = os.path.splitext(path)[1].lower()
        mime = MIME.get(ext)
        if mime is None:
            raise ValueError(f"{path}: cannot embed a {ext or 'file without extension'} "
                             f"(the page embeds {', '.join(MIME)})")
        with open(path, "rb") as f:
            data = base64.b64encode(f.read()).decode("ascii")
        name = os.path.basename(path)
        parts += ["<figure>", f'<img src="data:{mime};base64,{data}" alt="{html.escape(name)}">',
                  f"<figcaption>{html.escape(caption)} "
                  f'<span class="file">({html.escape(name)})</span></figcaption>', "</figure>"]
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def write_page(path, items, title: str = "foveanet visualisations",
               intro: str | None = None) -> str:
    """Write ``render_page(items, title, intro)`` to ``path`` (atomically); returns the path."""
    from ..train.io import atomic_write_text
    path = os.fspath(path)
    atomic_write_text(path, render_page(items, title, intro))
    return path
