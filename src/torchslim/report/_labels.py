"""Point labels that never overlap: a greedy placement pass in display coordinates.

Each label tries positions around its point, nearest first (rings of growing radius, sixteen
directions each), and takes the first whose box, padded, stays inside the axes and clears every
marker and every label placed before it. Labels placed away from their point get a thin leader
line. Crowded charts (many candidates at nearly the same accuracy and latency) fan out; if a
label finds no free place within the largest ring it takes the one that overlaps least, which
the browser test would catch.
"""

from __future__ import annotations

import math

_PAD = 2.5  # px of clearance around each label box: browsers' text metrics differ slightly
_MARKER = 6.0  # px half-size of the box kept clear around every plotted point
_RADII = (4, 10, 18, 28, 40, 54, 70, 88, 108, 130, 155, 185, 220)
_ANGLES = [math.radians(a) for a in (45, 135, -45, -135, 90, -90, 0, 180, 22, 158, -22, -158, 68, 112, -68, -112)]

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in display pixels


def _overlap(a: Box, b: Box) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


def _outside(box: Box, frame: Box) -> float:
    """How far ``box`` sticks out of ``frame`` (0 when inside)."""
    return max(frame[0] - box[0], 0) + max(box[2] - frame[2], 0) + max(frame[1] - box[1], 0) + max(box[3] - frame[3], 0)


def place_labels(ax, points: list[tuple[float, float, str, str]], *, fontsize: float = 8.5,
                 obstacles: list[tuple[float, float]] = ()) -> list:
    """Annotate ``points`` ((x, y, text, gid) in data coordinates) without overlaps; returns the
    annotations. ``obstacles``: more data points to keep clear (the baseline, stars). Call it
    after the axes' limits and the figure's layout are final."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.font_manager import FontProperties

    fig = ax.figure
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer).bounds
    frame = (frame[0] + 2, frame[1] + 2, frame[0] + frame[2] - 2, frame[1] + frame[3] - 2)
    to_px = ax.transData.transform
    font = FontProperties(size=fontsize)
    markers = [tuple(to_px((x, y))) for x, y, _, _ in points] + [tuple(to_px(p)) for p in obstacles]
    taken: list[Box] = [(mx - _MARKER, my - _MARKER, mx + _MARKER, my + _MARKER) for mx, my in markers]
    out = []
    # Points in the crowd first, while there is still room near them.
    order = sorted(range(len(points)), key=lambda i: -sum(1 for m in markers if math.dist(m, markers[i]) < 60))
    for i in order:
        x, y, text, gid = points[i]
        px, py = to_px((x, y))
        w, h, _ = renderer.get_text_width_height_descent(text, font, ismath=False)
        best, best_cost = None, math.inf
        for r in _RADII:
            for a in _ANGLES:
                cx, cy = px + math.cos(a) * (r + w / 2 + _PAD), py + math.sin(a) * (r + h / 2 + _PAD)
                box = (cx - w / 2 - _PAD, cy - h / 2 - _PAD, cx + w / 2 + _PAD, cy + h / 2 + _PAD)
                cost = sum(_overlap(box, t) for t in taken) + 1e3 * _outside(box, frame)
                if cost < best_cost:
                    best, best_cost = (cx, cy, r, box), cost
                if cost == 0:
                    break
            if best_cost == 0:
                break
        cx, cy, r, box = best
        taken.append(box)
        scale = 72.0 / fig.dpi  # display pixels -> offset points
        arrow = dict(arrowstyle="-", color="#757575", lw=0.6, shrinkA=0, shrinkB=3) if r > 10 else None
        ann = ax.annotate(text, (x, y), xytext=((cx - px) * scale, (cy - py) * scale), textcoords="offset points",
                          ha="center", va="center", fontsize=fontsize, arrowprops=arrow, zorder=6)
        ann.set_gid(gid)
        out.append(ann)
    return out
