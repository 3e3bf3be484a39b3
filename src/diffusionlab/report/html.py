"""The report as one self-contained HTML page (inline CSS, images by relative path).

Compact by design: settings in a small table, how each model was made (provenance) folded into a <details>
element, numbers rounded to what they mean (4 significant digits, seconds to 0.1 s, percentages to 0.1 %), every
figure captioned, and a grid's per-cell labels (an illusion's pass/fail by the classifier) as a table under it.

Figures show at their natural size (width and height given, no max-width): a grid's labels are pixels, and a
nearest-neighbour downscale by a non-integer factor drops rows and columns of them ("s gma" for "sigma"); a figure
wider than the page scrolls sideways instead. Only print fits them to the page (the PDF keeps every pixel)."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from diffusionlab.figures.grid import show_prompt
from diffusionlab.report.context import Figure, Section, SectionOut

# -- HTML ---------------------------------------------------------------------------------------------------------------
CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;max-width:1100px;margin:1.5em auto;padding:0 1em;
color:#222;line-height:1.4}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin:1.6em 0 .3em}
nav ol{columns:3;font-size:.92em} .id{font-family:monospace;background:#eef;padding:0 .3em;border-radius:3px}
figure{margin:.6em 1em .6em 0;display:inline-block;vertical-align:top;max-width:100%;overflow-x:auto}
figure img{image-rendering:pixelated;border:1px solid #ddd}
figure img.plot{image-rendering:auto}
figcaption{font-size:.88em;color:#444;max-width:640px}
table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ccc;padding:.2em .55em;text-align:left;
vertical-align:top} th{background:#f4f4f4}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.settings{font-size:.88em} .settings td:first-child{color:#555;white-space:nowrap} .meta{color:#666;font-size:.9em}
details{margin:.4em 0;font-size:.88em} summary{cursor:pointer;color:#555}
.cells{font-size:.75em;font-family:monospace} .cells td{padding:0 .3em;text-align:center}
.cells .pass{background:#e3f5e1;color:#1a6b14} .cells .fail{background:#fbe3e3;color:#a01818}
.note{background:#fff8e0;border-left:4px solid #e0b000;padding:.3em .6em;margin:.4em 0}
.status-error .note{background:#fde8e8;border-color:#d33} .status-missing h2{color:#a60}
code{background:#f4f4f4;padding:0 .2em}
@media print{body{max-width:none;margin:0} figure{overflow:visible} figure img{max-width:100%;height:auto}
nav{break-after:page}
figure,tr{break-inside:avoid}}
"""
PART_HEADS = {"A": "Part A — diffusion as an image tool", "B": "Part B — diffusion from scratch"}
# settings a figure without a caption of its own is labelled with (steps, prompts, ...), in this order
LABEL_KEYS = ("steps", "i_start", "prompt", "prompts", "pairs", "n", "cfg")
_LONG_DECIMAL = re.compile(r"(?<![\w.])\d+\.\d{5,}(?![\w.])")


def _e(s: Any) -> str:
    return html.escape(str(s))


# -- numbers rounded to what they mean ------------------------------------------------------------------------------
def format_seconds(s: float) -> str:
    """0.1 s below 100 s, whole seconds above."""
    return f"{s:.1f} s" if s < 100 else f"{s:.0f} s"


def format_number(v: float) -> str:
    """4 significant digits (a loss of 0.027338259278776797 -> 0.02734)."""
    return f"{v:.4g}"


def round_text(text: str) -> str:
    """Long decimals inside free text (captions, notes, a command line) rounded to 4 significant digits."""
    return _LONG_DECIMAL.sub(lambda m: format_number(float(m.group())), text)


def format_value(key: str, v: Any) -> str:
    """A setting's value for the page: seconds by their key, floats to 4 digits, lists and dicts item by item."""
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        return format_seconds(v) if "second" in key else format_number(v)
    if isinstance(v, (list, tuple)):
        return ", ".join(show_prompt(x) if isinstance(x, str) else format_value(key, x) for x in v)
    if isinstance(v, dict):
        return ", ".join(f"{k}: {format_value(str(k), x)}" for k, x in v.items())
    return show_prompt(round_text(v)) if isinstance(v, str) else str(v)  # the empty prompt shows as ''


# -- the page --------------------------------------------------------------------------------------------------------
def render_html(
    sections: list[tuple[Section, SectionOut]],
    meta: dict[str, Any],
    training: SectionOut | None = None,
    root: Path | None = None,
) -> str:
    """The page; root is the report folder the figures' paths are relative to (their sizes are read there)."""
    entries = ([("training", "Training (--train)", "T", training)] if training else []) + [
        (s.id, s.title, s.part, o) for s, o in sections
    ]
    parts = [*_head(meta), _status_line(entries), *_contents(entries)]
    last_part = None
    for sid, title, part, o in entries:
        if part != last_part and part in PART_HEADS:
            parts.append(f"<h1>{_e(PART_HEADS[part])}</h1>")
        last_part = part
        parts += _section(sid, title, o, root)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _head(meta: dict[str, Any]) -> list[str]:
    return [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>diffusionlab report</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>diffusionlab: the course project, reproduced</h1>",
        f'<p class="meta"><code>{_e(meta["command"])}</code><br>Part A model: {_e(meta["model"])} · seed '
        f"{meta['seed']} · device {_e(meta['device'])} ({_threads(meta['threads'])}, "
        f"{_e(meta.get('precision', 'precision not recorded'))}) · {_e(meta['budget'])} "
        f"budget · total {format_seconds(meta['seconds'])} · {_e(meta['created'])} · diffusionlab "
        f"{_e(meta['version'])}, torch {_e(meta['torch'])}, Python {_e(meta['python'])}</p>",
    ]


def _threads(n: Any) -> str:
    return f"{_e(n)} thread" + ("" if n == 1 else "s")


def _status_line(entries: list[tuple[str, str, str, SectionOut]]) -> str:
    """How many sections are complete, first thing on the page: a missing or failed one is not hidden."""
    counts: dict[str, int] = {}
    for *_, o in entries:
        counts[o.status] = counts.get(o.status, 0) + 1
    said = ", ".join(f"{n} {status}" for status, n in sorted(counts.items(), key=lambda kv: kv[0] != "ok"))
    bad = [sid for sid, *_, o in entries if o.status != "ok"]
    where = f" (see {', '.join(bad)})" if bad else ""
    return f'<p class="meta">{len(entries)} sections: {_e(said)}{_e(where)}</p>'


def _contents(entries: list[tuple[str, str, str, SectionOut]]) -> list[str]:
    parts = ["<nav><h3>Contents</h3><ol>"]
    for sid, title, _, o in entries:
        flag = "" if o.status == "ok" else f" ({o.status})"
        parts.append(
            f'<li><a href="#{_e(sid)}"><span class="id">{_e(sid)}</span> {_e(title)}</a>{flag} '
            f'<span class="meta">{format_seconds(o.seconds)}</span></li>'
        )
    parts.append("</ol></nav>")
    return parts


def _section(sid: str, title: str, o: SectionOut, root: Path | None) -> list[str]:
    parts = [
        f'<section id="{_e(sid)}" data-section="{_e(sid)}" class="status-{o.status}">',
        f'<h2><span class="id">{_e(sid)}</span> {_e(title)}</h2>',
        f'<p class="meta">seed {o.seed} · {format_seconds(o.seconds)} · {o.status}</p>',
    ]
    if o.caption or o.inputs:
        inputs = f' <span class="inputs">Test images: {_e(o.inputs)}.</span>' if o.inputs else ""
        parts.append(f"<p>{_e(round_text(o.caption))}{inputs}</p>")
    parts += [f'<p class="note">{_e(round_text(note))}</p>' for note in o.notes]
    if o.table:
        parts += _table(o.table)
    parts += [_figure(sid, f, o.settings, image_size(root / f.path) if root else None) for f in o.figures]
    if o.settings:
        parts += _settings_table(o.settings, "settings")
    if o.provenance:
        parts.append(
            f'<details class="provenance"><summary>Provenance: how the model was trained '
            f"({len(o.provenance)} entries)</summary>"
        )
        parts += _settings_table(o.provenance, "settings provenance")
        parts.append("</details>")
    parts.append("</section>")
    return parts


def _table(rows: list[list[str]]) -> list[str]:
    parts = ["<table>", "<tr>" + "".join(f"<th>{_e(c)}</th>" for c in rows[0]) + "</tr>"]
    for row in rows[1:]:
        cells = [f"<td>{_e(row[0])}</td>"] + [f'<td class="num">{_e(round_text(str(c)))}</td>' for c in row[1:]]
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</table>")
    return parts


def _settings_table(settings: dict[str, Any], css: str) -> list[str]:
    rows = [f"<tr><td>{_e(k)}</td><td>{_e(format_value(k, v))}</td></tr>" for k, v in settings.items()]
    return [f'<table class="{css}">', *rows, "</table>"]


def figure_label(f: Figure, settings: dict[str, Any]) -> str:
    """The figure's caption; a figure without one is labelled with its section's steps, prompts, CFG ..."""
    if f.caption:
        return round_text(f.caption)
    found = [f"{k} {format_value(k, settings[k])}" for k in LABEL_KEYS if k in settings]
    return " · ".join(found)


def image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of an image file from its header; None when it is missing or not an image."""
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, UnidentifiedImageError):
        return None


def _figure(sid: str, f: Figure, settings: dict[str, Any], size: tuple[int, int] | None) -> str:
    label = figure_label(f, settings)
    plot = ' class="plot"' if f.path.endswith("_loss.png") else ""  # a matplotlib plot: smooth scaling
    dims = f' width="{size[0]}" height="{size[1]}"' if size else ""  # its natural size: see the module's docstring
    img = f'<img src="{_e(f.path)}"{plot}{dims} alt="{_e(sid)}: {_e(label or f.path)}" loading="eager">'
    return f'<figure><a href="{_e(f.path)}">{img}</a><figcaption>{_e(label)}</figcaption>{_cells(f)}</figure>'


def _cells(f: Figure) -> str:
    """A grid's per-cell labels as a table shaped like the grid; a classifier's verdict colours each cell."""
    if not f.cells:
        return ""
    per_row = f.cells_per_row or len(f.cells)
    rows = []
    for start in range(0, len(f.cells), per_row):
        tds = []
        for c in f.cells[start : start + per_row]:
            mark, css = {True: (" ✓", "pass"), False: (" ✗", "fail")}.get(c.passed, ("", ""))
            title = {True: "passed", False: "failed"}.get(c.passed, "")
            tds.append(f'<td class="{css}" title="{title}">{_e(c.label)}{mark}</td>')
        rows.append("<tr>" + "".join(tds) + "</tr>")
    scored = [c.passed for c in f.cells if c.passed is not None]
    summary = f'<div class="meta">{sum(scored)} of {len(scored)} passed the classifier</div>' if scored else ""
    return f'{summary}<table class="cells">{"".join(rows)}</table>'
