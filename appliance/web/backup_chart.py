"""The Backups tab's chart of sizes over time, drawn on the server as SVG (no script): a
line of each backup's total restored size (dump + files) and a bar of what it added to
the repository, oldest on the left."""

from __future__ import annotations

from dataclasses import dataclass

# The drawing's size in SVG units (it scales to the page's width).
WIDTH, HEIGHT = 640, 160
# Room for the axis labels: left of the plot and under it.
LEFT, BOTTOM, TOP = 64, 20, 10
# Backups drawn at most: the newest ones.
POINTS = 60
UNITS = ("B", "KB", "MB", "GB", "TB")


def human_bytes(value: int | float | None) -> str:
    if value is None:
        return "–"
    size = float(value)
    for unit in UNITS:
        if abs(size) < 1000 or unit == UNITS[-1]:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} {UNITS[-1]}"


@dataclass
class Point:
    x: float
    y_total: float
    bar_top: float
    label: str


@dataclass
class Chart:
    width: int
    height: int
    left: int
    plot_bottom: float
    bar_width: float
    points: list[Point]
    line: str
    top_label: str
    first: str
    last: str


def size_chart(rows: list[dict]) -> Chart | None:
    """The chart of the done backups among `rows` (any order), or None without two."""
    done = [row for row in rows if row["state"] == "done"
            and row["dump_bytes"] is not None and row["files_bytes"] is not None]
    done = sorted(done, key=lambda row: row["started_at"])[-POINTS:]
    if len(done) < 2:
        return None
    totals = [row["dump_bytes"] + row["files_bytes"] for row in done]
    highest = max(max(totals), 1)
    plot_width, plot_height = WIDTH - LEFT - 8, HEIGHT - BOTTOM - TOP
    step = plot_width / (len(done) - 1)
    bottom = TOP + plot_height
    points = []
    for index, (row, total) in enumerate(zip(done, totals)):
        added = row["bytes_added"] or 0
        points.append(Point(
            x=round(LEFT + index * step, 1),
            y_total=round(bottom - plot_height * total / highest, 1),
            bar_top=round(bottom - plot_height * min(added, highest) / highest, 1),
            label=(f"#{row['id']} {row['kind']} {row['started_at']:%Y-%m-%d %H:%M}: "
                   f"{human_bytes(total)} restored, {human_bytes(added)} added")))
    return Chart(width=WIDTH, height=HEIGHT, left=LEFT, plot_bottom=bottom,
                 bar_width=max(2.0, min(12.0, step / 2)), points=points,
                 line=" ".join(f"{p.x},{p.y_total}" for p in points),
                 top_label=human_bytes(highest),
                 first=f"{done[0]['started_at']:%Y-%m-%d}",
                 last=f"{done[-1]['started_at']:%Y-%m-%d}")
