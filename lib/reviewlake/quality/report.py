"""The quality report: ``QDIR/report.html`` for a person, and the short summary on stdout.

The page is one self-contained HTML file (inline CSS, plots as base64 PNGs drawn with
matplotlib's Agg backend): the verdict, every constraint with its status and the failing
values, the anomaly checks, the histogram of the report column, the review-length
distribution, the metrics table, the suggestions and the column profiles.
"""
from __future__ import annotations

import base64
import html
import io
import json
from typing import Any, Iterable

from .results import EngineResult
from .suite import Suite

CSS = """
body{font:14px/1.45 -apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;
max-width:1200px;color:#1f2328;padding:0 16px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:32px;border-bottom:1px solid
#d0d7de;padding-bottom:4px}
table{border-collapse:collapse;width:100%;margin:8px 0}th,td{border:1px solid #d0d7de;
padding:4px 8px;text-align:left;vertical-align:top}th{background:#f6f8fa}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.badge{display:inline-block;padding:2px 10px;border-radius:12px;color:#fff;font-weight:600}
.passed,.Success{background:#1a7f37}.failed,.Error{background:#cf222e}.Warning{background:#9a6700}
tr.fail-Error td{background:#ffebe9}tr.fail-Warning td{background:#fff8c5}
.meta{color:#57606a}code{font-size:12px;word-break:break-all}
.plots{display:flex;flex-wrap:wrap;gap:16px}.plots figure{margin:0;flex:1 1 480px}
figcaption{color:#57606a;font-size:13px}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _num(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return f"{int(value):,}"
        return f"{value:.6g}"
    if isinstance(value, int):
        return f"{value:,}"
    return _e(value)


def _table(header: Iterable[str], rows: Iterable[Iterable[str]], row_classes=None) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for i, r in enumerate(rows):
        cls = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        body.append(f"<tr{cls}>" + "".join(r) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def plot_histogram(hist: dict[str, Any]) -> str | None:
    """Bars of the report column's values (numeric values in numeric order)."""
    values = hist.get("values") or []
    if not values:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def order(v):
        try:
            return (0, float(v["value"]), "")
        except (TypeError, ValueError):
            return (1, 0.0, str(v["value"]))
    values = sorted(values, key=order)
    fig, ax = plt.subplots(figsize=(6, 3.4))
    labels = [str(v["value"]) for v in values]
    counts = [v["count"] for v in values]
    bars = ax.bar(range(len(values)), counts, color="#0969da")
    ax.set_xticks(range(len(values)))
    ax.set_xticklabels(labels, rotation=0 if len(values) <= 12 else 70, fontsize=8)
    for b, v in zip(bars, values):
        ax.annotate(f"{100 * v['ratio']:.1f}%", (b.get_x() + b.get_width() / 2, b.get_height()),
                    ha="center", va="bottom", fontsize=8)
    ax.set_xlabel(hist.get("column", ""))
    ax.set_ylabel("reviews")
    ax.set_title(f"{hist.get('column', '')} ({hist.get('bins', len(values))} distinct values)")
    ax.spines[["top", "right"]].set_visible(False)
    try:
        return _png(fig)
    finally:
        plt.close(fig)


def plot_lengths(lengths: dict[str, Any]) -> str | None:
    """The review-length distribution: share of reviews per word, bucket by bucket, on a
    logarithmic word axis (the buckets widen with the length), with the 64-word mark."""
    n = lengths.get("sampled_rows") or 0
    buckets = [dict(b, **{"from": max(1, b["from"])}) for b in lengths.get("buckets") or []
               if b["to"] is None or b["to"] > 1]   # every review has at least one word
    if not buckets or not n:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    top = max(int(lengths.get("max") or 0) + 1, buckets[-1]["from"] + 1)
    edges = [b["from"] for b in buckets] + [top]
    density = [100.0 * b["count"] / n / max(1, (b["to"] or top) - b["from"]) for b in buckets]
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.stairs(density, edges, fill=True, color="#8250df", alpha=0.85)
    ax.set_xscale("log")
    ax.axvline(64, color="#cf222e", linestyle="--", linewidth=1)
    covered = sum(b["count"] for b in lengths["buckets"] if b["to"] is not None and b["to"] <= 64)
    ax.annotate(f"64 words: {100 * covered / n:.0f}% of reviews are shorter", (64, max(density)),
                xytext=(6, -4), textcoords="offset points", fontsize=8, color="#cf222e",
                va="top")
    ax.set_xlabel(f"words in {lengths.get('column', '')} (log scale)")
    ax.set_ylabel("% of reviews per word")
    ax.set_title("review length")
    ax.spines[["top", "right"]].set_visible(False)
    try:
        return _png(fig)
    finally:
        plt.close(fig)


def _details(d: dict[str, Any] | None) -> str:
    if not d:
        return ""
    parts = [_e(d.get("summary", ""))]
    if d.get("values"):
        parts.append("<br>" + ", ".join(f"<code>{_e(v['value'])}</code> ({v['rows']:,} rows)"
                                        for v in d["values"]))
    if d.get("examples"):
        parts.append("<br>e.g. " + "; ".join("<code>" + _e(json.dumps(x, default=str)) + "</code>"
                                              for x in d["examples"]))
    return "".join(parts)


def render_html(summary: dict[str, Any], check_rows: list[dict[str, Any]],
                result: EngineResult, suite: Suite) -> str:
    status = summary["status"]
    c = summary["counts"]
    details_by_key = {(f["check"], f["constraint"]): f.get("details")
                      for f in summary["errors"] + summary["warnings"]}
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>reviewlake quality: "
           f"{_e(status)}</title><style>{CSS}</style></head><body>"]
    out.append(f"<h1>Data quality <span class='badge {status}'>{status.upper()}</span></h1>")
    tags = ", ".join(f"{k}={v}" for k, v in (summary.get("tags") or {}).items()) or "none"
    out.append(
        f"<p class='meta'>{_num(summary.get('rows'))} reviews in <code>{_e(summary['input'])}"
        f"</code> &middot; engine <b>{_e(summary['engine'])}</b> (asked: "
        f"{_e(summary['engine_requested'])}) &middot; suite <code>{_e(summary['suite'])}</code>"
        f" &middot; run {_e(summary['run_id'])} &middot; tags {_e(tags)} &middot; "
        f"{_e(summary.get('started_at', ''))}</p>")
    verdict = ("An Error-level check failed: the pipeline stops here (exit code 3)."
               if status == "failed" else "No Error-level check failed: the pipeline goes on.")
    out.append(f"<p><b>{verdict}</b> {c['constraints']} constraints: {c['passed']} passed, "
               f"{c['failed_error']} Error failures, {c['failed_warning']} Warning failures; "
               f"{c['anomaly_checks']} anomaly checks against {summary['history_runs']} earlier "
               f"runs: {c['anomalies']} anomalies.</p>")

    # checks
    out.append("<h2>Checks</h2>")
    rows, classes = [], []
    for r in check_rows:
        ok = r["constraint_status"] == "Success"
        d = details_by_key.get((r["check"], r["constraint"]))
        rows.append([f"<td>{_e(r['check'])}</td>",
                     f"<td><span class='badge {_e(r['check_level'])}'>{_e(r['check_level'])}"
                     f"</span></td>",
                     f"<td><span class='badge {'Success' if ok else _e(r['check_level'])}'>"
                     f"{'pass' if ok else 'FAIL'}</span></td>",
                     f"<td><code>{_e(r['constraint'])}</code></td>",
                     f"<td>{_e(r['constraint_message'])}"
                     f"{'<br>' + _details(d) if d else ''}</td>"])
        classes.append("" if ok else f"fail-{r['check_level']}")
    out.append(_table(["check", "level", "status", "constraint", "message / failing values"],
                      rows, classes))
    if summary.get("anomalies"):
        out.append("<h2>Anomaly checks</h2>")
        out.append(_table(
            ["check", "metric", "strategy", "value", "earlier runs", "status", "message"],
            [[f"<td>{_e(a['check'])}</td>", f"<td>{_e(a['metric'])}</td>",
              f"<td>{_e(a['strategy'])}</td>", f"<td class='num'>{_num(a['value'])}</td>",
              f"<td class='num'>{a['history']}</td>",
              f"<td><span class='badge {'Success' if a['status'] == 'Success' else a['level']}'>"
              f"{'pass' if a['status'] == 'Success' else 'FAIL'}</span></td>",
              f"<td>{_e(a['message'])}</td>"] for a in summary["anomalies"]]))

    # plots
    profile = result.profile or {}
    figs = []
    if profile.get("histogram"):
        png = plot_histogram(profile["histogram"])
        if png:
            figs.append((png, f"Histogram of {profile['histogram']['column']} (every row)."))
    if profile.get("lengths"):
        ln = profile["lengths"]
        png = plot_lengths(ln)
        if png:
            sample = ("every review" if ln.get("sample_fraction", 1) >= 1 else
                      f"a random sample of {ln['sampled_rows']:,} reviews "
                      f"({100 * ln['sample_fraction']:.1f}%)")
            q = ln.get("quantiles_at_most") or {}
            qs = ", ".join(f"{int(float(k) * 100)}% &le; {v}" for k, v in q.items()
                           if k in ("0.5", "0.8", "0.9", "0.99"))
            figs.append((png, f"Words per review in {ln['column']}, counted on {sample}: mean "
                              f"{ln.get('mean', 0):.1f}, max {ln.get('max', 0):,}; {qs} words."))
    if figs:
        out.append("<h2>Distributions</h2><div class='plots'>")
        for png, caption in figs:
            out.append(f"<figure><img alt='{_e(caption)}' src='data:image/png;base64,{png}'>"
                       f"<figcaption>{caption}</figcaption></figure>")
        out.append("</div>")

    # metrics
    out.append(f"<h2>Metrics ({len(result.metrics)})</h2>")
    out.append(_table(["entity", "instance", "name", "value"],
                      [[f"<td>{_e(m['entity'])}</td>", f"<td>{_e(m['instance'])}</td>",
                        f"<td>{_e(m['name'])}</td>", f"<td class='num'>{_num(m['value'])}</td>"]
                       for m in result.metrics]))
    # suggestions
    out.append(f"<h2>Suggested constraints ({len(result.suggestions)})</h2>")
    if result.suggestions:
        out.append(_table(["column", "description", "rule", "code"],
                          [[f"<td>{_e(s.column)}</td>", f"<td>{_e(s.description)}</td>",
                            f"<td>{_e(s.rule)}</td>", f"<td><code>{_e(s.code)}</code></td>"]
                           for s in result.suggestions]))
    else:
        out.append("<p class='meta'>None (suggestions are off in this suite).</p>")
    cols = profile.get("columns") or {}
    if cols:
        out.append("<h2>Column profiles</h2>")
        out.append(_table(
            ["column", "type", "completeness", "approx. distinct", "minimum", "histogram bins"],
            [[f"<td>{_e(name)}</td>",
              f"<td>{_e(p['type'])}{' (inferred)' if p.get('inferred') else ''}</td>",
              f"<td class='num'>{p['completeness']:.4f}</td>",
              f"<td class='num'>{_num(p['approx_distinct'])}</td>",
              f"<td class='num'>{_num(p.get('minimum'))}</td>",
              f"<td class='num'>{_num(p.get('histogram_bins'))}</td>"]
             for name, p in cols.items()]))
    out.append("<h2>Run</h2>")
    out.append("<pre>" + _e(json.dumps({k: summary[k] for k in (
        "run_id", "engine", "input", "output", "repository", "dataset_date", "params",
        "timings", "seconds") if k in summary}, indent=2, default=str)) + "</pre>")
    out.append("</body></html>")
    return "\n".join(out)


def format_summary(summary: dict[str, Any]) -> str:
    """The few lines printed on stdout."""
    c = summary["counts"]
    lines = [f"quality {summary['status'].upper()}: {summary['rows']:,} rows in "
             f"{summary['input']} (engine {summary['engine']}, run {summary['run_id']})"]
    for f in summary["errors"] + summary["warnings"]:
        detail = f.get("details", {}).get("summary") if f.get("details") else None
        values = f.get("details", {}).get("values") if f.get("details") else None
        shown = ""
        if values:
            shown = " [" + ", ".join(f"{v['value']!s}: {v['rows']}" for v in values[:5]) + "]"
        lines.append(f"  {f['level']:<7} FAIL {f['check']}: {f['constraint']}")
        lines.append(f"          {f['message']}" + (f" -- {detail}{shown}" if detail else ""))
    lines.append(f"  {c['constraints']} constraints: {c['passed']} passed, {c['failed_error']} "
                 f"Error, {c['failed_warning']} Warning failed; {c['anomaly_checks']} anomaly "
                 f"checks ({summary['history_runs']} earlier runs): {c['anomalies']} anomalies")
    lines.append(f"  {c['metrics']} metrics, {c['suggestions']} suggestions; report "
                 f"{summary['output'].rstrip('/')}/report.html ({summary['seconds']:.1f}s)")
    return "\n".join(lines)
