"""Pure HTML builders for the dataset and model cards (plain data in, one HTML string out).

Every text that reaches the page goes through :func:`esc` (``html.escape`` with quotes); images are
``data:`` URIs built by the caller (:func:`png_data_uri`). The page needs no server, no network and
no JavaScript: inline CSS only.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "bar_chart",
    "dataset_card",
    "esc",
    "fmt",
    "image",
    "kv_table",
    "model_card",
    "page",
    "png_data_uri",
    "section",
    "table",
]

_CSS = """
body{font-family:system-ui,-apple-system,"DejaVu Sans",Arial,sans-serif;margin:24px auto;max-width:1200px;color:#1d232a;background:#fafbfc;padding:0 16px}
h1{font-size:26px;border-bottom:3px solid #2f6fb3;padding-bottom:6px}h2{font-size:20px;margin-top:28px;color:#2f6fb3}
table{border-collapse:collapse;margin:8px 0;font-size:13px;background:#fff}th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef3f8}td.num{text-align:right;font-variant-numeric:tabular-nums}.ok{color:#1a7f37;font-weight:600}.bad{color:#cf222e;font-weight:600}
.grid{display:flex;flex-wrap:wrap;gap:8px}.tile{background:#fff;border:1px solid #d0d7de;padding:4px;font-size:11px;max-width:260px;word-break:break-all}
.tile img{display:block;image-rendering:pixelated}img.plot{max-width:100%;border:1px solid #d0d7de;background:#fff}
.bar{display:flex;align-items:center;font-size:12px;margin:2px 0}.bar .name{width:220px;overflow:hidden;white-space:nowrap}
.bar .track{width:420px;background:#e6ebf1;height:14px;margin:0 8px}.bar .fill{background:#2f6fb3;height:14px}
.note{color:#57606a;font-size:13px}pre{background:#fff;border:1px solid #d0d7de;padding:8px;white-space:pre-wrap;font-size:12px}
"""


def esc(value: Any) -> str:
    """``value`` as escaped HTML text (``None`` → ``-``)."""
    return html.escape("-" if value is None else str(value), quote=True)


def fmt(value: Any) -> str:
    """A cell's text: floats to 4 significant digits, NaN as ``NaN``, None as ``-`` (not escaped)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def png_data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` of encoded PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def section(heading: str, body: str, anchor: str = "") -> str:
    """``<section><h2>heading</h2>body</section>``; ``body`` is HTML already built (not escaped)."""
    ident = f' id="{esc(anchor)}"' if anchor else ""
    return f"<section{ident}><h2>{esc(heading)}</h2>\n{body}\n</section>\n"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[int] = ()) -> str:
    """An HTML table; every cell is formatted (:func:`fmt`) and escaped; ``numeric`` columns align right."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{esc(fmt(v))}</td>' if i in numeric else f"<td>{esc(fmt(v))}</td>"
            for i, v in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def kv_table(items: Mapping[str, Any]) -> str:
    """A two-column (item, value) table."""
    return table(["item", "value"], [[k, v] for k, v in items.items()])


def image(uri: str, alt: str, css_class: str = "plot", width_px: int | None = None) -> str:
    """An ``<img>`` of a ``data:`` URI or relative link."""
    width = f' width="{int(width_px)}"' if width_px else ""
    return f'<img class="{esc(css_class)}" src="{esc(uri)}" alt="{esc(alt)}"{width}>'


def bar_chart(values: Mapping[str, float | None], scale: float = 1.0, unit: str = "") -> str:
    """Horizontal CSS bars (no image): ``values`` in ``[0, scale]``; None/NaN shown as ``n/a``."""
    rows = []
    for name, v in values.items():
        ok = v is not None and math.isfinite(v)
        width = max(0.0, min(1.0, float(v) / scale)) * 100.0 if ok and scale > 0 else 0.0
        label = f"{fmt(float(v))}{unit}" if ok else "n/a"
        rows.append(
            f'<div class="bar"><span class="name">{esc(name)}</span><span class="track"><span class="fill" style="display:block;width:{width:.1f}%"></span></span><span>{esc(label)}</span></div>'
        )
    return "".join(rows)


def _tiles(tiles: Sequence[Mapping[str, Any]]) -> str:
    out = []
    for t in tiles:
        img = image(t["uri"], t.get("caption", ""), css_class="", width_px=t.get("width_px")) if t.get("uri") else ""
        out.append(f'<div class="tile">{img}<div>{esc(t.get("caption", ""))}</div></div>')
    return f'<div class="grid">{"".join(out)}</div>'


def page(title: str, body: str, subtitle: str = "") -> str:
    """A complete HTML document (inline CSS, no scripts)."""
    sub = f'<p class="note">{esc(subtitle)}</p>' if subtitle else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{esc(title)}</title><style>{_CSS}</style></head>\n'
        f"<body><h1>{esc(title)}</h1>{sub}\n{body}</body></html>\n"
    )


def _passed(ok: Any) -> str:
    return '<span class="ok">passed</span>' if ok else '<span class="bad">FAILED</span>'


def dataset_card(data: Mapping[str, Any]) -> str:
    """The dataset card.

    Args:
        data: Plain data (:func:`tasks.report.collect.dataset_card_data`): ``dataset``, ``version``,
            ``record``, ``about`` (source, homepage, licence, citation, description...), ``counts``
            ``{split: n}``, ``totals`` (parsed/written/rejected), ``rejects`` ``[{reason, count,
            examples: [{source_key, detail, uri?}]}]``, ``validation`` ``{success, failures,
            checks: [{scope, check, success, unexpected, detail}]}``, ``samples`` ``[{uri, caption}]``,
            ``samples_note``, ``params``.

    Returns:
        The HTML page.
    """
    parts = [section("Source", kv_table(data.get("about", {})), "source")]
    counts = data.get("counts", {})
    rows = [[split, n] for split, n in counts.items()] + [["total", sum(int(n) for n in counts.values())]]
    totals = data.get("totals", {})
    parts.append(
        section(
            "Counts per split",
            table(["split", "records"], rows, numeric=[1]) + (kv_table(totals) if totals else ""),
            "counts",
        )
    )
    rejects = data.get("rejects", [])
    if rejects:
        body = table(["reason", "count"], [[r["reason"], r["count"]] for r in rejects], numeric=[1])
        for r in rejects:
            examples = r.get("examples", [])
            if not examples:
                continue
            body += f"<h3>{esc(r['reason'])}</h3>"
            with_pixels = [e for e in examples if e.get("uri")]
            if with_pixels:
                body += _tiles(
                    [
                        {
                            "uri": e["uri"],
                            "caption": f"{e['source_key']}: {e.get('detail') or ''}",
                            "width_px": e.get("width_px"),
                        }
                        for e in with_pixels
                    ]
                )
            without = [e for e in examples if not e.get("uri")]
            if without:
                body += table(
                    ["source key", "stage", "detail"],
                    [[e["source_key"], e.get("stage"), e.get("detail")] for e in without],
                )
    else:
        body = '<p class="note">no rejects: every parsed input was written</p>'
    parts.append(section("Rejects by reason", body, "rejects"))
    heading = "Sample skeleton images" if data.get("record") == "sequences" else "Samples with skeletons"
    samples = data.get("samples", [])
    body = (f'<p class="note">{esc(data["samples_note"])}</p>' if data.get("samples_note") else "") + (
        _tiles(samples) if samples else ""
    )
    parts.append(section(heading, body or '<p class="note">no samples to show</p>', "samples"))
    v = data.get("validation", {})
    body = f"<p>gate: {_passed(v.get('success'))}</p>"
    if v.get("failures"):
        body += "<ul>" + "".join(f"<li>{esc(f)}</li>" for f in v["failures"]) + "</ul>"
    checks = v.get("checks", [])
    headers = ["scope", "check", "success", "unexpected", "detail"]
    failed = [c for c in checks if not c.get("success")]
    passed = [c for c in checks if c.get("success")]
    if failed:
        body += table(headers, [[c.get(h) for h in headers] for c in failed], numeric=[3])
    if passed:
        body += f"<details><summary>{len(passed)} checks passed</summary>"
        body += table(headers, [[c.get(h) for h in headers] for c in passed], numeric=[3]) + "</details>"
    parts.append(section("Validation", body, "validation"))
    if data.get("params"):
        parts.append(section("Build parameters", f"<pre>{esc(data['params'])}</pre>", "params"))
    return page(f"Dataset card: {data.get('dataset')}@{data.get('version')}", "".join(parts), data.get("subtitle", ""))


def model_card(data: Mapping[str, Any]) -> str:
    """The model card.

    Args:
        data: Plain data (:func:`tasks.report.collect.model_card_data`): ``task``, ``model_version``,
            ``lineage`` ``{item: value}``, ``metrics`` ``{name: float}`` (flattened), ``history``
            ``[{epoch, loss, ...}]``, ``plots`` ``{"history"|"per_joint"|"confusion"|"worst": uri}``,
            ``per_item`` ``{"title", "values": {name: float}, "scale", "unit"}`` or None,
            ``decision`` (``decision.json``) or None, ``champion`` (current alias) or None.

    Returns:
        The HTML page.
    """
    plots = data.get("plots", {})
    parts = [section("Lineage", kv_table(data.get("lineage", {})), "lineage")]
    metrics = data.get("metrics", {})
    parts.append(
        section(
            "Metrics",
            table(["metric", "value"], [[k, v] for k, v in metrics.items()], numeric=[1])
            if metrics
            else '<p class="note">no metrics recorded</p>',
            "metrics",
        )
    )
    history = data.get("history", [])
    body = image(plots["history"], "training curves") if plots.get("history") else ""
    if history:
        keys = [k for k in dict.fromkeys(k for h in history for k in h) if k != "epoch"]
        body += table(
            ["epoch", *keys],
            [[h.get("epoch", i + 1), *(h.get(k) for k in keys)] for i, h in enumerate(history)],
            numeric=list(range(len(keys) + 1)),
        )
    parts.append(section("Training curves", body or '<p class="note">no history recorded</p>', "curves"))
    per_item = data.get("per_item")
    body = ""
    if per_item and per_item.get("values"):
        body += f"<h3>{esc(per_item.get('title', ''))}</h3>" + bar_chart(
            per_item["values"], per_item.get("scale", 1.0), per_item.get("unit", "")
        )
    for key, alt in (("per_joint", "per-joint chart"), ("confusion", "confusion matrix")):
        if plots.get(key):
            body += image(plots[key], alt)
    parts.append(
        section("Per-joint / per-class", body or '<p class="note">no per-joint or per-class metrics</p>', "per-item")
    )
    parts.append(
        section(
            "Worst predictions",
            image(plots["worst"], "worst predictions")
            if plots.get("worst")
            else '<p class="note">no contact sheet recorded</p>',
            "worst",
        )
    )
    d = data.get("decision")
    if d:
        status = str(d.get("status"))
        cls = "ok" if d.get("promote") or status in ("unchanged", "first_model", "no_thresholds") else "bad"
        body = (f'<p>status: <span class="{cls}">{esc(status)}</span>; candidate {esc(d.get("candidate"))} vs champion {esc(d.get("champion"))}'
                f'{"; forced by " + esc(d.get("forced_by")) if d.get("forced_by") else ""}; decided {esc(d.get("decided_at"))}</p>')  # fmt: skip
        body += "<ul>" + "".join(f"<li>{esc(r)}</li>" for r in d.get("reasons", [])) + "</ul>"
        checks = d.get("checks", [])
        if checks:
            rows = []
            for c in checks:
                iv = c.get("interval")
                interval = (
                    f"[{fmt(_num(iv.get('low')))}, {fmt(_num(iv.get('high')))}]" if isinstance(iv, Mapping) else None
                )
                rows.append(
                    [
                        c.get("metric"),
                        c.get("kind"),
                        _num(c.get("value")),
                        _num(c.get("baseline")),
                        _num(c.get("improvement")),
                        _num(c.get("required")),
                        interval,
                        c.get("passed"),
                    ]
                )
            body += table(
                ["metric", "check", "candidate", "champion", "delta", "required", "interval", "pass"],
                rows,
                numeric=[2, 3, 4, 5],
            )
    else:
        body = f'<p class="note">no retrain decision recorded for this model (current champion: {esc(data.get("champion") or "none")})</p>'
    parts.append(section("Decision against the champion", body, "decision"))
    return page(f"Model card: {data.get('task')}@{data.get('model_version')}", "".join(parts), data.get("subtitle", ""))


def _num(v: Any) -> Any:
    """A JSON number back from ``decision.json`` (``"nan"`` strings → float)."""
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return v
    return v
