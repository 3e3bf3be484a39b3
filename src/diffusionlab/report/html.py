"""The report as one self-contained HTML page (inline CSS, images by relative path)."""

from __future__ import annotations

import html
from typing import Any

from diffusionlab.figures import show_prompt
from diffusionlab.report.context import Section, SectionOut

# -- HTML ---------------------------------------------------------------------------------------------------------------
CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
nav ol{columns:2} .id{font-family:monospace;background:#eef;padding:0 .3em;border-radius:3px}
figure{margin:1em 0;display:inline-block;vertical-align:top;max-width:100%}
figure img{max-width:100%;image-rendering:pixelated;border:1px solid #ddd}
figcaption{font-size:.9em;color:#555}
table{border-collapse:collapse;margin:.6em 0} td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;
vertical-align:top} th{background:#f4f4f4}
.settings td:first-child{color:#555;white-space:nowrap} .meta{color:#666;font-size:.9em}
.note{background:#fff8e0;border-left:4px solid #e0b000;padding:.3em .6em;margin:.4em 0}
.status-error .note{background:#fde8e8;border-color:#d33} .status-missing h2{color:#a60}
code{background:#f4f4f4;padding:0 .2em}
"""


def _e(s: Any) -> str:
    return html.escape(str(s))


def _value(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return ", ".join(show_prompt(x) if isinstance(x, str) else str(x) for x in v)
    return str(v)


def render_html(
    sections: list[tuple[Section, SectionOut]], meta: dict[str, Any], training: SectionOut | None = None
) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>diffusionlab report</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>diffusionlab: the course project, reproduced</h1>",
        f'<p class="meta">{_e(meta["command"])}<br>Part A model: {_e(meta["model"])} · seed {meta["seed"]} · '
        f"device {_e(meta['device'])} ({_e(meta['threads'])} threads) · {_e(meta['budget'])} budget · "
        f"total {meta['seconds']:.1f} s · {_e(meta['created'])} · diffusionlab {_e(meta['version'])}, "
        f"torch {_e(meta['torch'])}, Python {_e(meta['python'])}</p>",
        "<nav><h3>Contents</h3><ol>",
    ]
    entries = ([("training", "Training (--train)", training)] if training else []) + [
        (s.id, s.title, o) for s, o in sections
    ]
    for sid, title, o in entries:
        flag = "" if o.status == "ok" else f" ({o.status})"
        parts.append(
            f'<li><a href="#{_e(sid)}"><span class="id">{_e(sid)}</span> {_e(title)}</a>{flag} '
            f'<span class="meta">{o.seconds:.1f} s</span></li>'
        )
    parts.append("</ol></nav>")
    heads = {"A": "Part A — diffusion as an image tool", "B": "Part B — diffusion from scratch", "S": "Scores"}
    last_part = None
    for sid, title, o in entries:
        part = next((s.part for s, _ in sections if s.id == sid), "B")
        if part != last_part and sid != "training":
            if part != "S":
                parts.append(f"<h1>{_e(heads[part])}</h1>")
            last_part = part
        parts.append(f'<section id="{_e(sid)}" data-section="{_e(sid)}" class="status-{o.status}">')
        parts.append(f'<h2><span class="id">{_e(sid)}</span> {_e(title)}</h2>')
        parts.append(f'<p class="meta">seed {o.seed} · {o.seconds:.1f} s · {o.status}</p>')
        if o.caption or o.inputs:
            inputs = f' <span class="inputs">Test images: {_e(o.inputs)}.</span>' if o.inputs else ""
            parts.append(f"<p>{_e(o.caption)}{inputs}</p>")
        for note in o.notes:
            parts.append(f'<p class="note">{_e(note)}</p>')
        if o.table:
            parts.append("<table>")
            parts.append("<tr>" + "".join(f"<th>{_e(c)}</th>" for c in o.table[0]) + "</tr>")
            for row in o.table[1:]:
                parts.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>")
            parts.append("</table>")
        for f in o.figures:
            parts.append(
                f'<figure><img src="{_e(f.path)}" alt="{_e(sid)}: {_e(f.caption or f.path)}" loading="eager">'
                f"<figcaption>{_e(f.caption)}</figcaption></figure>"
            )
        if o.settings:
            parts.append('<table class="settings">')
            for k, v in o.settings.items():
                parts.append(f"<tr><td>{_e(k)}</td><td>{_e(_value(v))}</td></tr>")
            parts.append("</table>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
