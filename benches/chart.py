#!/usr/bin/env python3
"""Draw time against registry size, regsweep vs the reference, from compare.sh's table.

    benches/chart.py RESULTS.md OUT.svg

Reads the Markdown rows compare.sh writes and plots the warm and cold medians of both
collectors against the number of files in the tree, on log-log axes. Standard library only:
the chart is a plain SVG.
"""
import math
import sys


def rows(path):
    for line in open(path, encoding="utf-8"):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 6 or not cells[1].isdigit():
            continue
        yield {
            "preset": cells[0],
            "files": int(cells[1]),
            "cache": cells[2],
            "regsweep": float(cells[3]),
            "reference": float(cells[4]),
        }


def main():
    data = list(rows(sys.argv[1]))
    if not data:
        sys.exit("chart.py: no result rows in " + sys.argv[1])
    width, height, left, right, top, bottom = 720, 440, 80, 190, 40, 60
    xs = [d["files"] for d in data]
    ys = [d[k] for d in data for k in ("regsweep", "reference")]
    x0, x1 = math.log10(min(xs) / 2), math.log10(max(xs) * 2)
    y0, y1 = math.floor(math.log10(min(ys))), math.ceil(math.log10(max(ys)))

    def px(x):
        return left + (math.log10(x) - x0) / (x1 - x0) * (width - left - right)

    def py(y):
        return height - bottom - (math.log10(y) - y0) / (y1 - y0) * (height - top - bottom)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="22" font-size="15">GC dry run: time against registry size '
        f'(2 cores, log-log)</text>',
    ]
    for e in range(y0, y1 + 1):
        y = py(10**e)
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{10**e:g} s</text>')
    for d in {d["files"]: d for d in data}.values():
        x = px(d["files"])
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{height - bottom}" stroke="#eee"/>')
        out.append(
            f'<text x="{x:.1f}" y="{height - bottom + 18}" text-anchor="middle">'
            f'{d["preset"]} ({d["files"] / 1000:,.0f}k files)</text>'
        )
    out.append(
        f'<line x1="{left}" x2="{left}" y1="{top}" y2="{height - bottom}" stroke="black"/>'
        f'<line x1="{left}" x2="{width - right}" y1="{height - bottom}" y2="{height - bottom}" stroke="black"/>'
    )
    series = [
        ("reference", "warm", "#c0392b", ""),
        ("reference", "cold", "#c0392b", "6,4"),
        ("regsweep", "warm", "#1f6fb2", ""),
        ("regsweep", "cold", "#1f6fb2", "6,4"),
    ]
    legend_y = top + 10
    for tool, cache, color, dash in series:
        points = sorted((d["files"], d[tool]) for d in data if d["cache"] == cache)
        if not points:
            continue
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
        out.append(
            f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2" '
            f'stroke-dasharray="{dash}"/>'
        )
        for x, y in points:
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3.5" fill="{color}"/>')
            out.append(
                f'<text x="{px(x) + 6:.1f}" y="{py(y) - 6:.1f}" fill="{color}">{y:.2f}s</text>'
            )
        lx = width - right + 20
        out.append(
            f'<line x1="{lx}" x2="{lx + 30}" y1="{legend_y}" y2="{legend_y}" stroke="{color}" '
            f'stroke-width="2" stroke-dasharray="{dash}"/>'
            f'<text x="{lx + 38}" y="{legend_y + 4}">{tool}, {cache}</text>'
        )
        legend_y += 22
    out.append("</svg>")
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
