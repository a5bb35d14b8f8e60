"""The report's plots (matplotlib, Agg backend): each function turns result documents into one PNG.

Runs are labelled (``A``, ``B``...) by the caller; strategies keep one colour across every plot, runs one line style.
"""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: render straight to PNG

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from bench.report.tables import Labelled
from bench.results import block_histogram

COLOURS = {"push": "#1f77b4", "pull": "#d62728", "hybrid": "#2ca02c"}
FALLBACK = ["#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
LINESTYLES = ["-", "--", ":", "-."]
#: Percentiles marked on the spectrum's x axis.
SPECTRUM_TICKS = [0.5, 0.9, 0.99, 0.999, 0.9999, 0.99999]
DPI = 100


def colour(strategy: str) -> str:
    """The strategy's colour (stable for the three reference strategies, then by name)."""
    return COLOURS.get(strategy) or FALLBACK[sum(map(ord, strategy)) % len(FALLBACK)]


def figure_text(value: float) -> str:
    """A value as plots label it: plain digits, no exponent."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _plain_log_axis(axis: Any) -> None:
    """Label a log axis with plain numbers (1, 2, 5, 10, 20...) instead of powers of ten."""
    plain = FuncFormatter(lambda v, _: figure_text(v))
    axis.set_major_formatter(plain)
    axis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
    axis.set_minor_formatter(plain)


def png(figure: Figure) -> bytes:
    """The figure as PNG bytes (the figure is closed)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def _series_label(runs: Labelled, label: str, strategy: str) -> str:
    return strategy if len(runs) == 1 else f"{label} {strategy}"


def p99_over_time(runs: Labelled) -> bytes:
    """Read p99 per second of each strategy (all operations when reads are not split out), spikes shaded."""
    figure, axes = plt.subplots(figsize=(11, 4.5))
    marked: set[tuple[float, float]] = set()
    for r, (label, doc) in enumerate(runs):
        for strategy, figures in doc["strategies"].items():
            points = figures.get("series") or []
            key = "read_p99_ms" if any(p.get("read_p99_ms") is not None for p in points) else "p99_ms"
            t = np.array([p["t_s"] for p in points], dtype=float)
            y = np.array([p.get(key) or np.nan for p in points], dtype=float)  # empty windows leave a gap
            y[y <= 0] = np.nan
            axes.plot(
                t,
                y,
                LINESTYLES[r % len(LINESTYLES)],
                color=colour(strategy),
                label=_series_label(runs, label, strategy) + ("" if key == "read_p99_ms" else " (all ops)"),
            )
            spike = figures.get("spike")
            if spike is not None:
                window = (spike["at_s"], spike["at_s"] + max(spike.get("during_s") or 0.0, 0.2))
                if window not in marked:
                    axes.axvspan(*window, color="orange", alpha=0.25, label="spike" if not marked else None)
                    axes.axvline(window[0], color="orange", linewidth=1.5)
                    marked.add(window)
    axes.set_yscale("log")
    _plain_log_axis(axes.yaxis)
    axes.set_xlabel("seconds since the strategy's load started")
    axes.set_ylabel("read p99 (ms, log scale)")
    axes.set_title("p99 over time" + (" (spike shaded)" if marked else ""))
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="upper left", fontsize="small", ncol=2)
    return png(figure)


def _spectrum(block: dict[str, Any] | None) -> tuple[np.ndarray, np.ndarray]:
    """(1/(1-p), latency ms) points of a latency block's histogram, HdrHistogram's percentile iteration."""
    hist = block_histogram(block) if block else None
    if hist is None or hist.get_total_count() == 0:
        return np.array([]), np.array([])
    xs, ys = [], []
    for step in hist.get_percentile_iterator(5):
        level = step.percentile_level_iterated_to / 100.0
        if level >= 1.0:  # the 100th percentile sits at infinity on this axis
            break
        xs.append(1.0 / (1.0 - level))
        ys.append(step.value_iterated_to / 1000.0)
    xs.append(float(hist.get_total_count()))  # the maximum, placed at its own resolution 1/(1-(n-1)/n)
    ys.append(hist.get_max_value() / 1000.0)
    return np.array(xs), np.array(ys)


def percentile_spectrum(runs: Labelled) -> bytes:
    """Latency by percentile, HdrHistogram style (x = 1/(1-p), log), for reads and publishes of every strategy.

    Solid lines are corrected latency (from the intended start); thin dotted lines the uncorrected service time.
    """
    figure, panes = plt.subplots(1, 2, figsize=(12, 4.8))
    for pane, operation in zip(panes, ("read", "publish"), strict=True):
        widest = 10.0
        for r, (label, doc) in enumerate(runs):
            for strategy, figures in doc["strategies"].items():
                block = figures.get(operation)
                x, y = _spectrum(block)
                if not len(x):
                    continue
                widest = max(widest, float(x.max()))
                style = LINESTYLES[r % len(LINESTYLES)]
                pane.plot(x, y, style, color=colour(strategy), label=_series_label(runs, label, strategy))
                ux, uy = _spectrum((block or {}).get("uncorrected"))
                if len(ux):
                    pane.plot(ux, uy, ":", color=colour(strategy), linewidth=0.9, alpha=0.8)
        pane.set_xscale("log")
        ticks = [p for p in SPECTRUM_TICKS if 1 / (1 - p) <= widest * 1.5]  # no axis beyond the data's resolution
        pane.set_xticks([1 / (1 - p) for p in ticks])
        pane.set_xticklabels([f"{p * 100:g}%" for p in ticks])
        pane.set_xlim(1, widest * 1.5)
        pane.set_yscale("log")
        _plain_log_axis(pane.yaxis)
        pane.set_xlabel("percentile")
        pane.set_ylabel("latency (ms, log scale)")
        pane.set_title(f"{operation} latency by percentile")
        pane.grid(True, which="major", alpha=0.3)
        if pane.lines:
            pane.legend(fontsize="small", title="dotted: uncorrected", title_fontsize="small")
    return png(figure)


def _bars(axes: Any, groups: list[str], series: dict[str, list[float | None]], ylabel: str, title: str) -> None:
    """Grouped bars: one group per entry of ``groups``, one bar per series; missing values say n/a."""
    width = 0.8 / max(len(series), 1)
    x = np.arange(len(groups))
    for i, (name, values) in enumerate(series.items()):
        heights = [v or 0.0 for v in values]
        bars = axes.bar(x + (i - (len(series) - 1) / 2) * width, heights, width, label=name)
        labels = ["n/a" if v is None else figure_text(v) for v in values]
        axes.bar_label(bars, labels=labels, fontsize="x-small", padding=2)
    axes.set_xticks(x, groups)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(True, axis="y", alpha=0.3)
    axes.legend(fontsize="small")


def _groups(runs: Labelled) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (_series_label(runs, label, strategy), strategy, figures)
        for label, doc in runs
        for strategy, figures in doc["strategies"].items()
    ]


def write_amplification_bars(runs: Labelled) -> bytes:
    """Timeline entries written per post, over the whole run and (own scale) for the spike's posts, per strategy."""
    groups = _groups(runs)
    names = [g for g, _, _ in groups]
    panes = [("whole run", [f.get("write_amplification") for _, _, f in groups])]
    if any("spike" in f for _, _, f in groups):
        panes.append(("spike posts", [(f.get("spike") or {}).get("write_amplification") for _, _, f in groups]))
    figure, axes = plt.subplots(1, len(panes), figsize=(max(6, 1.4 * len(groups)) * len(panes), 4.2), squeeze=False)
    for pane, (title, values) in zip(axes[0], panes, strict=True):
        _bars(pane, names, {title: values}, "timeline entries per post", f"write amplification, {title} (measured)")
    return png(figure)


def delivery_lag_bars(runs: Labelled) -> bytes:
    """Delivery lag p50 / p99 / max per strategy (of the spike's posts when there was a spike)."""
    groups = _groups(runs)
    spike = any("spike" in f for _, _, f in groups)

    def lag(figures: dict[str, Any]) -> dict[str, Any]:
        of_spike = (figures.get("spike") or {}).get("delivery_lag")
        return of_spike if spike and of_spike else figures["delivery_lag"]

    series = {  # 0 here is an empty block written with zeros: nothing was delivered by writing
        name: [lag(f).get(key) or None for _, _, f in groups]
        for name, key in (("p50", "p50_ms"), ("p99", "p99_ms"), ("max", "max_ms"))
    }
    figure, axes = plt.subplots(figsize=(max(6, 1.6 * len(groups)), 4.2))
    title = "delivery lag of the spike's posts" if spike else "delivery lag"
    _bars(axes, [g for g, _, _ in groups], series, "ms", title + " (n/a: nothing delivered by writing)")
    return png(figure)


#: The report's plots in order: (file suffix, caption, function).
PLOTS = [
    ("p99-over-time", "Read p99 per second; the spike is shaded.", p99_over_time),
    (
        "percentile-spectrum",
        "Latency by percentile (HdrHistogram style: x = 1/(1-p), log scale); solid corrected, dotted service time.",
        percentile_spectrum,
    ),
    ("write-amplification", "Timeline entries written per post, counted as written.", write_amplification_bars),
    ("delivery-lag", "Delivery lag p50 / p99 / max over followers' timelines.", delivery_lag_bars),
]


# -- sweeps ---------------------------------------------------------------------------------------------------------
#: The panes of the sweep plot: (figure key of bench.sweep, axis label, log y axis).
SWEEP_PANES = [
    ("read-p99", "read p99 (ms)", True),
    ("read-p999", "read p99.9 (ms)", True),
    ("publish-p99", "publish p99 (ms)", True),
    ("delivery-p99", "delivery lag p99 (ms)", True),
    ("spike-read-p99", "others' read p99, spike (ms)", True),
    ("write-amplification", "write amplification (entries/post)", False),
    ("timelines-mb", "timelines memory (MB)", False),
    ("redis-cpu", "Redis CPU per op (µs)", False),
    ("pg-rows-per-read", "PG rows read per read", False),
    ("cost", "store cost per op", False),
]


def sweep_plot(runs: Labelled) -> bytes:
    """Each sweep figure against hybrid's threshold (log x) with 95% interval bars; pull and push as bands."""
    figure, panes = plt.subplots(2, 5, figsize=(20, 7.5), squeeze=False)
    for pane, (key, ylabel, log_y) in zip(panes.flat, SWEEP_PANES, strict=True):
        for r, (label, doc) in enumerate(runs):
            block = doc.get("sweep")
            if not block or block["kind"] != "threshold":
                continue
            hybrid = [(p["threshold"], block["figures"].get(p["name"], {}).get(key)) for p in block["points"]]
            hybrid = [(t, v) for t, v in hybrid if t is not None and v is not None]
            if hybrid:
                x = np.array([t for t, _ in hybrid], dtype=float)
                y = np.array([v["median"] for _, v in hybrid])
                errors = np.array(
                    [[v["median"] - v["low"] for _, v in hybrid], [v["high"] - v["median"] for _, v in hybrid]]
                )
                pane.errorbar(
                    x,
                    y,
                    yerr=np.clip(errors, 0, None),
                    fmt="o" + LINESTYLES[r % len(LINESTYLES)],
                    color=colour("hybrid"),
                    capsize=3,
                    label=_series_label(runs, label, "hybrid"),
                )
            for end, style in (("pull", ":"), ("push", "--")):
                value = block["figures"].get(end, {}).get(key)
                if value is None:
                    continue
                pane.axhline(value["median"], linestyle=style, color=colour(end), label=_series_label(runs, label, end))
                if value["low"] != value["high"]:
                    pane.axhspan(value["low"], value["high"], color=colour(end), alpha=0.12)
            limit = block.get("slo_ms", {}).get(key)
            if limit is not None and r == 0:
                pane.axhline(limit, color="black", linewidth=1.2, label="SLO")
        if not pane.get_lines():
            pane.text(0.5, 0.5, "not measured", ha="center", va="center", transform=pane.transAxes, color="#777")
        pane.set_xscale("log")
        _plain_log_axis(pane.xaxis)
        pane.xaxis.set_minor_formatter(NullFormatter())  # thresholds span decades: label the powers of ten only
        if log_y and all(v > 0 for line in pane.get_lines() for v in np.atleast_1d(line.get_ydata())):
            pane.set_yscale("log")
            _plain_log_axis(pane.yaxis)
        pane.set_xlabel("hybrid threshold (followers, log)")
        pane.set_title(ylabel, fontsize="medium")
        pane.grid(True, which="both", alpha=0.3)
    legend: dict[str, Any] = {}
    for pane in panes.flat:  # every series once (the SLO line appears only on bounded figures)
        for handle, text in zip(*pane.get_legend_handles_labels(), strict=True):
            legend.setdefault(text, handle)
    if legend:
        figure.legend(list(legend.values()), list(legend), loc="upper center", ncol=len(legend), fontsize="small")
    figure.tight_layout(rect=(0, 0, 1, 0.95))
    return png(figure)


def rate_plot(runs: Labelled) -> bytes:
    """Read p99 (and p50, thin) against the offered rate, one line per strategy; achieved against offered beside it."""
    figure, (latency, throughput) = plt.subplots(1, 2, figsize=(13, 4.8))
    widest, lowest = 0.0, float("inf")
    for r, (label, doc) in enumerate(runs):
        block = doc.get("sweep")
        if not block or block["kind"] != "rate":
            continue
        for strategy, curve in block["curves"].items():
            offered = np.array([p.get("offered") or p["rate"] for p in curve], dtype=float)
            style = LINESTYLES[r % len(LINESTYLES)]
            name = _series_label(runs, label, strategy)
            p99 = np.array([p.get("read_p99_ms") or np.nan for p in curve], dtype=float)
            p50 = np.array([p.get("read_p50_ms") or np.nan for p in curve], dtype=float)
            latency.plot(offered, p99, "o" + style, color=colour(strategy), label=f"{name} p99")
            latency.plot(offered, p50, "." + style, color=colour(strategy), linewidth=0.8, alpha=0.7)
            achieved = np.array([p.get("achieved") or 0.0 for p in curve], dtype=float)
            throughput.plot(offered, achieved, "o" + style, color=colour(strategy), label=name)
            widest = max(widest, float(offered.max(initial=0)))
            lowest = min(lowest, float(offered.min(initial=np.inf)))
        limit = block.get("slo_ms", {}).get("read-p99")
        if limit is not None and r == 0:
            latency.axhline(limit, color="black", linewidth=1.2, label="SLO read p99")
    if widest > 0:  # the diagonal, over the offered rates (a log axis has no 0)
        throughput.plot([lowest, widest], [lowest, widest], ":", color="#999", label="achieved = offered")
    latency.set_xscale("log")
    _plain_log_axis(latency.xaxis)
    latency.set_xlabel("offered rate (ops/s, log)")
    throughput.set_xlabel("offered rate (ops/s)")  # linear, so keeping up is the diagonal
    for axes in (latency, throughput):
        axes.grid(True, which="both", alpha=0.3)
        if axes.lines:
            axes.legend(fontsize="small")
    latency.set_yscale("log")
    _plain_log_axis(latency.yaxis)
    latency.set_ylabel("read latency (ms, log; dots p50)")
    latency.set_title("read p99 against offered rate")
    throughput.set_ylabel("achieved rate (ops/s)")
    throughput.set_title("achieved against offered rate")
    return png(figure)


#: Plots only sweep results have: (file suffix, caption, function).
SWEEP_PLOTS = [
    (
        "sweep",
        "Threshold sweep: each figure against hybrid's threshold (log x), bars the 95% interval over rounds; "
        "pull dotted and push dashed, shaded by their intervals.",
        sweep_plot,
    ),
]


RATE_PLOTS = [
    (
        "rate-sweep",
        "Rate sweep: read p99 (dots p50) against offered rate per strategy, and achieved against offered rate.",
        rate_plot,
    ),
]


def plots_for(runs: Labelled) -> list[tuple[str, str, Any]]:
    """The plots a report of these runs has: every run's, and a sweep's when any run is one."""
    kinds = {doc["sweep"]["kind"] for _, doc in runs if doc.get("sweep")}
    return PLOTS + (SWEEP_PLOTS if "threshold" in kinds else []) + (RATE_PLOTS if "rate" in kinds else [])
