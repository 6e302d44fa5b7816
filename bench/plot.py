"""Line charts as standalone SVG (no plotting library in the environment): one panel per group,
one line per series, log-log axes (latency against registry size, docs/benchmarks.md) or linear
ones (recovery against release hop, docs/science.md)."""

from __future__ import annotations

import math
from html import escape

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f")
WIDTH, HEIGHT, MARGIN = 420, 300, 52


def _ticks(low: float, high: float) -> list[float]:
    """Powers of ten spanning [low, high]."""
    return [10.0**e for e in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)]


def _linear_ticks(low: float, high: float) -> list[float]:
    """About five round steps spanning [low, high]."""
    if high <= low:
        high = low + 1.0
    raw = (high - low) / 5
    step = min((m * 10 ** math.floor(math.log10(raw)) for m in (1, 2, 5, 10)), key=lambda s: abs(s - raw))
    first = math.floor(low / step) * step
    return [first + i * step for i in range(math.ceil((high - first) / step) + 1)]


def _label(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 10 else f"{round(value, 6):g}"


def panel(
    title: str,
    series: dict[str, list[tuple[float, float]]],
    x_label: str,
    y_label: str,
    left: float,
    log: bool = True,
) -> list[str]:
    """One panel at x offset `left`: every line is (x, y) points (x, y > 0 on `log` axes)."""
    xs = [x for points in series.values() for x, _ in points]
    ys = [y for points in series.values() for _, y in points]
    ticks = _ticks if log else _linear_ticks
    scale = math.log10 if log else float
    x_ticks, y_ticks = ticks(min(xs), max(xs)), ticks(min(ys), max(ys))
    lx, hx = scale(x_ticks[0]), scale(x_ticks[-1])
    ly, hy = scale(y_ticks[0]), scale(y_ticks[-1])
    plot_w, plot_h = WIDTH - 2 * MARGIN, HEIGHT - 2 * MARGIN

    def px(x: float) -> float:
        return left + MARGIN + (scale(x) - lx) / max(hx - lx, 1e-9) * plot_w

    def py(y: float) -> float:
        return MARGIN + plot_h - (scale(y) - ly) / max(hy - ly, 1e-9) * plot_h

    out = [
        f'<text x="{left + WIDTH / 2}" y="20" text-anchor="middle" font-weight="bold">{escape(title)}</text>'
    ]
    for t in x_ticks:
        out.append(
            f'<line x1="{px(t):.1f}" y1="{MARGIN}" x2="{px(t):.1f}" y2="{MARGIN + plot_h}" stroke="#ddd"/>'
        )
        out.append(
            f'<text x="{px(t):.1f}" y="{MARGIN + plot_h + 16}" text-anchor="middle">{_label(t)}</text>'
        )
    for t in y_ticks:
        x0, x1 = left + MARGIN, left + MARGIN + plot_w
        out.append(f'<line x1="{x0}" y1="{py(t):.1f}" x2="{x1}" y2="{py(t):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left + MARGIN - 6}" y="{py(t) + 4:.1f}" text-anchor="end">{_label(t)}</text>')
    centre = left + MARGIN + plot_w / 2
    out.append(f'<text x="{centre}" y="{HEIGHT - 8}" text-anchor="middle">{escape(x_label)}</text>')
    out.append(
        f'<text transform="translate({left + 14},{MARGIN + plot_h / 2}) rotate(-90)" '
        f'text-anchor="middle">{escape(y_label)}</text>'
    )
    for colour, (name, points) in zip(PALETTE, series.items(), strict=False):
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in sorted(points))
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2">')
        out.append(f"<title>{escape(name)}</title></polyline>")
        out.extend(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{colour}"/>' for x, y in points)
    return out


def chart(
    panels: dict[str, dict[str, list[tuple[float, float]]]], x_label: str, y_label: str, log: bool = True
) -> str:
    """Panels side by side with one legend below (each operation keeps its colour in every panel)."""
    names = list(dict.fromkeys(n for series in panels.values() for n in series))
    legend_h = 18 * math.ceil(len(names) / 2) + 10
    width, height = WIDTH * len(panels), HEIGHT + legend_h
    body: list[str] = []
    for i, (title, series) in enumerate(panels.items()):
        ordered = {n: series[n] for n in names if n in series}
        body += panel(title, ordered, x_label, y_label, i * WIDTH, log)
    for i, name in enumerate(names):
        x, y = 20 + (i % 2) * width / 2, HEIGHT + 14 + 18 * (i // 2)
        body.append(f'<rect x="{x}" y="{y - 9}" width="14" height="4" fill="{PALETTE[i % len(PALETTE)]}"/>')
        body.append(f'<text x="{x + 20}" y="{y - 4}">{escape(name)}</text>')
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="11"><rect width="100%" height="100%" fill="white"/>'
        + "".join(body)
        + "</svg>\n"
    )
