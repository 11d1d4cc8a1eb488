"""Small self-contained SVG bar charts for the HTML report.

The report must open offline on an air-gapped machine at a registry, so charts are inline
SVG written here (a few dozen lines) rather than a plotting library that pulls in a browser
runtime or a heavy rendering stack.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

__all__ = ["bar_chart", "level_chart", "number", "paired_bar_chart"]

WIDTH = 640
BAR = 18
GAP = 6
LABEL = 170
COLOURS = ("#4C72B0", "#DD8452")


def number(value: float) -> str:
    """A figure as the report's tables write it: whole numbers with thousands separators
    (44,751), others to four significant digits."""
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.4g}" if abs(value) < 1e15 else f"{value:.4g}"


def _scale(values: Sequence[float]) -> float:
    top = max([*values, 0.0])
    return (WIDTH - LABEL - 80) / top if top > 0 else 0.0


def bar_chart(title: str, labels: Sequence[str], values: Sequence[float]) -> str:
    """Horizontal bars, one per label."""
    return paired_bar_chart(title, labels, {"": values})


def paired_bar_chart(
    title: str, labels: Sequence[str], series: Mapping[str, Sequence[float]]
) -> str:
    """Horizontal bars with one bar per series for each label (e.g. before and after)."""
    names = list(series)
    scale = _scale([v for values in series.values() for v in values])
    group = BAR * len(names) + GAP
    height = 40 + group * len(labels) + (20 if any(names) else 0)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'role="img" aria-label="{escape(title)}">',
        f'<text x="0" y="16" font-weight="bold" font-size="14">{escape(title)}</text>',
    ]
    for row, label in enumerate(labels):
        y0 = 30 + row * group
        parts.append(
            f'<text x="{LABEL - 6}" y="{y0 + BAR * len(names) / 2 + 4}" text-anchor="end" '
            f'font-size="12">{escape(str(label))}</text>'
        )
        for k, name in enumerate(names):
            value = float(series[name][row])
            y = y0 + k * BAR
            width = max(value * scale, 0.0)
            colour = COLOURS[k % len(COLOURS)]
            parts.append(
                f'<rect x="{LABEL}" y="{y}" width="{width:.1f}" height="{BAR - 2}" '
                f'fill="{colour}"><title>{escape(name)} {number(value)}</title></rect>'
            )
            x = LABEL + width + 4
            parts.append(
                f'<text x="{x:.1f}" y="{y + BAR - 5}" font-size="11">{number(value)}</text>'
            )
    if any(names):
        y = height - 8
        for k, name in enumerate(names):
            x = LABEL + k * 120
            parts.append(f'<rect x="{x}" y="{y - 10}" width="10" height="10" '
                         f'fill="{COLOURS[k % len(COLOURS)]}"/>')  # fmt: skip
            parts.append(f'<text x="{x + 14}" y="{y}" font-size="12">{escape(name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def level_chart(title: str, rows: Sequence[tuple[str, int, int, str]]) -> str:
    """One bar per quasi-identifier, ``(name, level, height, level name)``: the bar fills
    its own track in proportion to ``level`` of that hierarchy's ``height`` (a fully
    suppressed ``*`` is a full bar, whatever the other hierarchies' heights), labelled with
    the level's name and "level of height"."""
    track = WIDTH - LABEL - 200
    height = 40 + (BAR + GAP) * len(rows)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'role="img" aria-label="{escape(title)}">',
        f'<text x="0" y="16" font-weight="bold" font-size="14">{escape(title)}</text>',
    ]
    for row, (name, level, top, level_name) in enumerate(rows):
        y = 30 + row * (BAR + GAP)
        share = level / top if top > 0 else 0.0
        text = f"{level_name} (level {level} of {top})"
        parts += [
            f'<text x="{LABEL - 6}" y="{y + BAR / 2 + 3}" text-anchor="end" '
            f'font-size="12">{escape(name)}</text>',
            f'<rect x="{LABEL}" y="{y}" width="{track}" height="{BAR - 2}" fill="#e6e6e6"/>',
            f'<rect x="{LABEL}" y="{y}" width="{share * track:.1f}" height="{BAR - 2}" '
            f'fill="{COLOURS[0]}"><title>{escape(name)}: {escape(text)}</title></rect>',
            f'<text x="{LABEL + track + 6}" y="{y + BAR - 5}" font-size="11">{escape(text)}</text>',
        ]
    parts.append("</svg>")
    return "\n".join(parts)
