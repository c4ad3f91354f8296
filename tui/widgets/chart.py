"""A small braille line chart for train and eval loss (2×4 dots per cell; 16 colours are enough)."""
from __future__ import annotations

import math

from rich.text import Text
from textual.widget import Widget

# Bit of each dot in a braille cell, indexed [row][column].
_DOTS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))
AXIS_WIDTH = 8  # the y axis's gutter: a label of at most AXIS_WIDTH - 2 characters, a space, the axis


def axis_label(value: float, width: int = AXIS_WIDTH - 2) -> str:
    """`value` in at most `width` characters, with as many significant digits as fit: 2.31, 0.0123, then 5.2e-4
    (a loss near 1e-4 as 0.0005185 would push its row of the plot sideways)."""
    for digits in range(4, 0, -1):
        plain = f"{value:.{digits}g}"
        mantissa, _, exponent = f"{value:.{digits - 1}e}".partition("e")
        for text in (plain, f"{mantissa}e{int(exponent)}"):
            if len(text) <= width:
                return text
    return f"{value:.0e}"[:width]


def _plot(grid: list[list[int]], owner: list[list[int]], points: list[tuple[float, float]], series: int,
          x_range: tuple[float, float], y_range: tuple[float, float]) -> None:
    """Draw `points` as a connected line into the dot grid; `owner` remembers which series drew a cell."""
    rows, cols = len(grid) * 4, len(grid[0]) * 2
    (x0, x1), (y0, y1) = x_range, y_range

    def to_px(x: float, y: float) -> tuple[int, int]:
        px = round((x - x0) / ((x1 - x0) or 1) * (cols - 1))
        py = round((y1 - y) / ((y1 - y0) or 1) * (rows - 1))
        return min(max(px, 0), cols - 1), min(max(py, 0), rows - 1)

    def dot(px: int, py: int) -> None:
        grid[py // 4][px // 2] |= _DOTS[py % 4][px % 2]
        owner[py // 4][px // 2] = max(owner[py // 4][px // 2], series)

    pixels = [to_px(x, y) for x, y in points]
    for (ax, ay), (bx, by) in zip(pixels, pixels[1:]):
        n = max(abs(bx - ax), abs(by - ay), 1)
        for i in range(n + 1):
            dot(round(ax + (bx - ax) * i / n), round(ay + (by - ay) * i / n))
    if len(pixels) == 1:
        dot(*pixels[0])


def render_chart(series: list[tuple[list[tuple[float, float]], str]], width: int, height: int,
                 x_max: float | None = None) -> list[Text]:
    """Lines of a chart `width`×`height` cells with a y axis; later series draw over earlier ones."""
    plot_w = max(width - AXIS_WIDTH, 2)
    plot_h = max(height - 1, 1)
    # a diverged run's NaN or inf loss has no place on the axis (its log line says it): only finite points are drawn
    series = [([(x, y) for x, y in points if math.isfinite(y)], style) for points, style in series]
    values = [y for points, _ in series for _, y in points]
    if not values:
        blank = [Text(" " * width) for _ in range(plot_h)]
        blank[plot_h // 2] = Text("no loss yet".center(width), style="dim")
        return blank + [Text(" " * width)]
    y0, y1 = min(values), max(values)
    min_span = abs(y1) * 0.1 or 0.001  # two nearly equal losses must not fill the whole height (at any scale)
    if y1 - y0 < min_span:
        mid = (y0 + y1) / 2
        y0, y1 = mid - min_span / 2, mid + min_span / 2
    pad = (y1 - y0) * 0.05
    y0, y1 = y0 - pad, y1 + pad
    xs = [x for points, _ in series for x, _ in points]
    x_hi = max([x_max or 0, *xs])
    x_range = (0.0, float(x_hi) or 1.0)

    grid = [[0] * plot_w for _ in range(plot_h)]
    owner = [[0] * plot_w for _ in range(plot_h)]
    for i, (points, _style) in enumerate(series, start=1):
        _plot(grid, owner, points, i, x_range, (y0, y1))

    labels = {0: y1, plot_h - 1: y0}
    if plot_h >= 5:
        labels[(plot_h - 1) // 2] = (y0 + y1) / 2
    lines = []
    for r in range(plot_h):
        line = Text(f"{axis_label(labels[r]):>{AXIS_WIDTH - 2}} ┤" if r in labels else " " * (AXIS_WIDTH - 1) + "│",
                    style="dim")
        for c in range(plot_w):
            bits = grid[r][c]
            line.append(chr(0x2800 + bits) if bits else " ", style=series[owner[r][c] - 1][1] if bits else "")
        lines.append(line)
    right = f"step {x_hi:g}"
    axis = " " * AXIS_WIDTH + "0" + right.rjust(plot_w - 1)
    lines.append(Text(axis[:width], style="dim"))
    return lines


class StepChart(Widget):
    """Two series of (step, value) drawn against the step, the first cyan, the second yellow (the border's subtitle
    is their legend): the loss chart, and the memory chart of a past run."""

    DEFAULT_CSS = """
    StepChart { height: 1fr; min-height: 5; border: round $primary-darken-2; padding: 0 1; }
    """
    EMPTY = ""  # what the chart says before its first point ("": the bare axis)

    def __init__(self, title: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.series: list[list[tuple[float, float]]] = [[], []]
        self.total_steps: int | None = None
        self.border_title = title

    def render(self) -> Text:
        size = self.content_size
        if self.EMPTY and not any(self.series):
            blank = [" " * size.width] * max(size.height, 1)
            blank[len(blank) // 2] = self.EMPTY.center(size.width)
            return Text("\n".join(blank), style="dim")
        lines = render_chart(list(zip(self.series, ("cyan", "bold yellow"))), size.width, size.height,
                             x_max=self.total_steps)
        return Text("\n").join(lines)


class LossChart(StepChart):
    """Train loss (every logged step) and eval loss (each evaluation) against the step."""

    def __init__(self, **kwargs) -> None:
        super().__init__("loss", **kwargs)
        self.border_subtitle = "[cyan]⣀ train[/]  [yellow]⣀ eval[/]"

    @property
    def train(self) -> list[tuple[float, float]]:
        return self.series[0]

    @property
    def eval(self) -> list[tuple[float, float]]:
        return self.series[1]

    def reset(self, total_steps: int | None = None) -> None:
        self.series, self.total_steps = [[], []], total_steps
        self.refresh()

    def add_train(self, step: int, loss: float) -> None:
        self.train.append((step, loss))
        self.refresh()

    def add_eval(self, step: int, loss: float) -> None:
        self.eval.append((step, loss))
        self.refresh()
