"""Charts for a run report, drawn with matplotlib's Agg renderer and returned as PNG bytes.

Every function takes plain lists or arrays of aggregates (the same dicts a report is built
from) and returns the PNG as ``bytes``. No function touches pyplot or the global backend,
so drawing a report never opens a window or changes a notebook's settings.
"""

import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

DPI = 110
"""Pixels per inch of the PNGs: about 700 px wide at the default figure size."""

SIZE = (6.4, 4.0)
"""Default figure size in inches."""

COLORS = ("#1f5fa8", "#d9822b", "#2b9a66", "#b5485d", "#7a5cb8", "#8c8c8c")
"""Line colours in order of use: the first is the model the section is about."""

PAYLOAD_COLORS = {
    "ciphertext": "#1f5fa8",
    "released": "#e0a030",
    "blinded_ids": "#7a5cb8",
    "masked_value": "#2b9a66",
    "public_parameter": "#9bb7d4",
    "aggregate": "#d9822b",
    "size": "#c8b25a",
    "output": "#b5485d",
    "control": "#8c8c8c",
}
"""One colour per ledger payload category (see :class:`fedscore.ledger.Payload`)."""

PAYLOAD_LABELS = {
    "ciphertext": "encrypted or sealed",
    "released": "released to the receiver",
    "blinded_ids": "blinded IDs",
    "masked_value": "masked values",
    "public_parameter": "public parameters",
    "aggregate": "aggregates",
    "size": "sizes",
    "output": "per-row outputs",
    "control": "control",
}
"""How each payload category is named on a page (``released``: see :mod:`fedscore.report.steps`)."""

MAX_PERSONA_FEATURES = 14
"""A persona heat map shows at most this many features: those that differ most between segments."""

PERSONA_CAP = 1.0
"""The persona colour saturates at a mean twice the average (+100 %) or zero (−100 %)."""

LIFT_MIN_PEOPLE = 20
"""A lift point over fewer people than this is drawn hollow: the lift of a handful of
people is mostly noise (one positive more or less moves it by a whole unit or more)."""


def _figure(size=SIZE):
    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig):
    declutter(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, facecolor="white")
    return buffer.getvalue()


def _visible_ticks(axis):
    """The tick labels ``axis`` draws: inside its view interval, visible, with text."""
    low, high = sorted(axis.get_view_interval())
    slack = 1e-9 * max(1.0, abs(high - low))
    locations = axis.get_majorticklocs()
    ticks = axis.get_major_ticks(len(locations))
    return [tick.label1 for tick, loc in zip(ticks, locations)
            if low - slack <= loc <= high + slack and tick.label1.get_visible() and tick.label1.get_text()]


def overlapping_labels(fig):
    """Tick labels of ``fig`` that overlap a neighbour on the same axis, as drawn.

    Level labels overlap when their boxes do. Slanted labels (persona features) are
    parallel strokes ending at their ticks: they overlap when the distance between two
    strokes, the ticks' spacing times the sine of the slant, is less than a line of text.

    Returns
    -------
    list of tuple
        ``(axis, text, text)`` for each overlapping pair; empty when every label has room.
    """
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    found = []
    for index, ax in enumerate(fig.axes):
        for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            labels = _visible_ticks(axis)
            for i, j in _overlaps(labels, renderer, fig.dpi):
                found.append((f"axes {index} {name}", labels[i].get_text(), labels[j].get_text()))
    return found


def _overlaps(labels, renderer, dpi):
    """Index pairs of ``labels`` (one axis's tick labels) whose text overlaps, with a pixel of air."""
    boxes = [label.get_window_extent(renderer) for label in labels]
    pairs = []
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            a, b = boxes[i], boxes[j]
            slant = np.deg2rad(labels[i].get_rotation() % 180)
            if abs(np.sin(2 * slant)) > 1e-6 and labels[i].get_rotation() == labels[j].get_rotation():
                (xa, ya), (xb, yb) = labels[i].get_transform().transform([labels[i].get_position(),
                                                                          labels[j].get_position()])
                apart = abs((xb - xa) * np.sin(slant) - (yb - ya) * np.cos(slant))
                if apart < labels[i].get_size() * dpi / 72 + 1:
                    pairs.append((i, j))
            elif a.x0 < b.x1 + 1 and b.x0 < a.x1 + 1 and a.y0 < b.y1 + 1 and b.y0 < a.y1 + 1:
                pairs.append((i, j))
    return pairs


def declutter(fig, min_ticks=2):
    """Thin out the numeric ticks of every axis whose labels overlap, until none do.

    Category axes (fixed ticks: persona features, ledger directions) keep their labels:
    the figure is sized for them.
    """
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            locator = axis.get_major_locator()
            if not isinstance(locator, MaxNLocator):
                continue
            bins = max(min_ticks, len(_visible_ticks(axis)))
            while bins > min_ticks and _axis_overlaps(fig, axis):
                bins -= 1
                axis.set_major_locator(MaxNLocator(nbins=bins, steps=[1, 2, 2.5, 5, 10]))
    return fig


def _axis_overlaps(fig, axis):
    fig.canvas.draw()
    return bool(_overlaps(_visible_ticks(axis), fig.canvas.get_renderer(), fig.dpi))


def _style(ax):
    ax.grid(True, color="#e3e3e3", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _percent(ax, axis="both"):
    if axis in ("x", "both"):
        ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0 if ax.get_xlim()[1] > 0.5 else None))
    if axis in ("y", "both"):
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))


def human_bytes(n, compact=False):
    """``1234567`` → ``"1.2 MB"`` (powers of 1000, as file sizes are usually shown).

    With ``compact``, a whole number drops its decimal (``"20 MB"``): for axis ticks.
    """
    n = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            if unit == "B" or (compact and round(n, 1).is_integer()):
                return f"{n:.0f} {unit}"
            return f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def _curves(curves):
    """Normalise ``[{"label", "fraction", "gain"}, ...]`` into float arrays, skipping empty ones."""
    out = []
    for curve in curves:
        fraction = np.asarray(curve.get("fraction", ()), dtype=float)
        gain = np.asarray(curve.get("gain", ()), dtype=float)
        if fraction.size and fraction.shape == gain.shape:
            out.append((str(curve.get("label", "model")), fraction, gain))
    return out


def _x_limit(curves):
    """Right end of the x axis: the whole population, or a little past curves that stop early."""
    ends = [float(fraction.max()) for _, fraction, _ in _curves(curves)]
    end = max(ends) if ends else 1.0
    return 1.0 if end >= 0.9 else min(1.0, end * 1.1)


def gain_chart(curves, *, base_rate=None, population="population", title="Cumulative gain"):
    """Share of all positives captured against share of the population targeted.

    Parameters
    ----------
    curves : list of dict
        Each ``{"label": str, "fraction": [...], "gain": [...]}`` (as from
        :func:`fedscore.metrics.gain_curve`).
    base_rate : float, optional
        Positive rate of the population; draws the best possible curve when given.
    population : str
        Who was scored, for the axis label (``"validation customers"``).
    """
    fig = _figure()
    ax = fig.add_subplot()
    for (label, fraction, gain), color in zip(_curves(curves), COLORS):
        ax.plot(np.r_[0.0, fraction], np.r_[0.0, gain], color=color, linewidth=2, label=label,
                marker="o" if len(fraction) < 20 else None, markersize=4)
    ax.plot([0, 1], [0, 1], color="#999999", linestyle="--", linewidth=1, label="random targeting")
    if base_rate and 0 < base_rate < 1:
        ax.plot([0, base_rate, 1], [0, 1, 1], color="#bbbbbb", linestyle=":", linewidth=1, label="perfect model")
    right = _x_limit(curves)
    top = max([float(g.max()) for _, f, g in _curves(curves)] + [right])
    ax.set_xlim(0, right)
    ax.set_ylim(0, min(1.02, top * 1.1))
    ax.set_xlabel(f"share of the {population} targeted (highest scores first)")
    ax.set_ylabel("share of all positives reached")
    ax.set_title(title, loc="left", fontsize=11)
    _percent(ax)
    _style(ax)
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    return _png(fig)


def lift_chart(curves, *, rows=None, min_people=LIFT_MIN_PEOPLE, population="population", title="Lift"):
    """Positive rate in the top share of scores divided by the overall positive rate.

    Every point of the curves is drawn, from the smallest share on (the top 1 % too);
    points over fewer than ``min_people`` people are drawn hollow and named as noisy.

    Parameters
    ----------
    curves : list of dict
        The same gain curves as :func:`gain_chart`; lift is ``gain / fraction``.
    rows : int, optional
        People scored: says which points cover fewer than ``min_people``.
    population : str
        Who was scored, for the axis label.
    """
    fig = _figure()
    ax = fig.add_subplot()
    top, noisy = 1.0, False
    for (label, fraction, gain), color in zip(_curves(curves), COLORS):
        keep = fraction > 0
        fraction, lift = fraction[keep], gain[keep] / fraction[keep]
        if not lift.size:
            continue
        top = max(top, float(np.nanmax(lift)))
        few = fraction * rows < min_people if rows else np.zeros(len(fraction), dtype=bool)
        ax.plot(fraction, lift, color=color, linewidth=2, label=label)
        marker = "o" if len(fraction) < 20 else None
        solid = ~few if marker else np.zeros(len(fraction), dtype=bool)
        if marker and solid.any():
            ax.plot(fraction[solid], lift[solid], "o", color=color, markersize=4)
        if few.any():
            noisy = True
            ax.plot(fraction[few], lift[few], "o", markersize=5, markerfacecolor="white", markeredgecolor=color)
    if noisy:
        ax.plot([], [], "o", markersize=5, markerfacecolor="white", markeredgecolor="#555555",
                label=f"fewer than {min_people} people: mostly noise")
    ax.axhline(1.0, color="#999999", linestyle="--", linewidth=1, label="random targeting")
    ax.set_xlim(0, _x_limit(curves))
    ax.set_ylim(0, top * 1.08)
    ax.set_xlabel(f"share of the {population} targeted (highest scores first)")
    ax.set_ylabel("lift (× the overall positive rate)")
    ax.set_title(title, loc="left", fontsize=11)
    _percent(ax, "x")
    _style(ax)
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    return _png(fig)


def audience_chart(audiences, *, curve=None, rows=None, positives=None, population="people",
                   title="Audience size vs precision and recall"):
    """Precision and recall of the audience made of the top-scored people, by its size.

    Parameters
    ----------
    audiences : list of dict
        Rows with ``count``, ``precision`` and ``recall`` (as from
        :func:`fedscore.metrics.audience_table`); drawn as marked points.
    curve : dict, optional
        A gain curve ``{"fraction", "gain"}``; with ``rows`` and ``positives`` it draws
        the continuous precision and recall curves.
    rows, positives : int, optional
        Size of the scored population and its number of positives.
    population : str
        Who the audience sizes count, for the axis label (``"held-out media users"``).
    """
    fig = _figure()
    ax = fig.add_subplot()
    drawn = _curves([curve]) if curve else []
    if drawn and rows and positives:
        _, fraction, gain = drawn[0]
        counts = np.maximum(1.0, np.round(fraction * rows))
        ax.plot(counts, gain, color=COLORS[1], linewidth=2, label="recall (share of positives reached)")
        ax.plot(counts, np.minimum(1.0, gain * positives / counts), color=COLORS[0], linewidth=2,
                label="precision (positive rate in the audience)")
    points = [a for a in audiences or () if a.get("count") is not None]
    if points:
        counts = [a["count"] for a in points]
        ax.plot(counts, [a.get("recall", np.nan) for a in points], "o", color=COLORS[1],
                label=None if drawn else "recall (share of positives reached)", linestyle="" if drawn else "-")
        ax.plot(counts, [a.get("precision", np.nan) for a in points], "s", color=COLORS[0],
                label=None if drawn else "precision (positive rate in the audience)", linestyle="" if drawn else "-")
    if rows and positives:
        ax.axhline(positives / rows, color="#999999", linestyle="--", linewidth=1, label="overall positive rate")
    ax.set_ylim(0, 1.02)
    ax.set_xlim(left=0)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
    ax.set_xlabel(f"audience size ({population}, highest scores first)")
    ax.set_ylabel("share")
    ax.set_title(title, loc="left", fontsize=11)
    _percent(ax, "y")
    _style(ax)
    ax.legend(loc="best", fontsize=8, frameon=False)
    return _png(fig)


def pick_persona_features(features, weights, limit=MAX_PERSONA_FEATURES):
    """Indices of the features that set the segments most apart, in their original order.

    Parameters
    ----------
    features : list of str
    weights : array-like, shape (segments, features)
        How distinctive each cell is (larger: more); NaN counts as 0.

    Features named ``party.column`` are picked evenly from each party, so that a joint
    profile shows both parties' columns.
    """
    weights = np.abs(np.nan_to_num(np.asarray(weights, dtype=float), nan=0.0))
    if len(features) <= limit:
        return list(range(len(features)))
    strength = weights.max(axis=0) if weights.size else np.zeros(len(features))
    order = list(np.argsort(-strength, kind="stable"))
    groups = {}
    for i in order:
        prefix, dot, _ = features[i].partition(".")
        groups.setdefault(prefix if dot else "", []).append(i)
    if len(groups) > 4 or "" in groups or any(len(g) < 2 for g in groups.values()):
        return sorted(int(i) for i in order[:limit])
    picked, queues = [], [list(g) for g in groups.values()]
    while len(picked) < limit and any(queues):
        for queue in queues:
            if queue and len(picked) < limit:
                picked.append(queue.pop(0))
    return sorted(int(i) for i in picked)


def format_value(value, kind="number"):
    """A profile value as people read it: shares in percent, numbers to three digits."""
    if value is None or not np.isfinite(value):
        return "–"
    if kind == "share":
        return f"{100 * value:.0f}%"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if abs(value) >= 1 else f"{value:.2f}"


def format_change(value):
    """A relative difference as a signed percentage: ``+28 %``, ``−100 %``."""
    if value is None or not np.isfinite(value):
        return "–"
    text = f"{100 * value:+.0f} %"
    return text.replace("-", "−")


def persona_chart(features, segments, *, kinds=None, title="Persona profiles"):
    """Heat map of segment profiles: colour by the difference from the average, labelled with the value.

    Parameters
    ----------
    features : list of str
    segments : list of dict
        Each ``{"segment": name, "size": int, "means": [...], "vs_average": [...],
        "weight": [...]}``: the mean of each feature in its own units, its difference
        from the average as a share of the average (the colour, capped at
        :data:`PERSONA_CAP`) and how distinctive it counts for picking the features shown
        (as from :func:`fedscore.report.sections.persona_section`; the difference when
        absent).
    kinds : list of str, optional
        ``"share"`` or ``"number"`` per feature, for the cell labels.
    """
    kinds = list(kinds) if kinds is not None else ["share" if "=" in f else "number" for f in features]

    def rows(key, fallback=None):
        return np.array([[np.nan if v is None else v for v in (s.get(key) or s.get(fallback) or [None] * len(features))]
                         for s in segments], dtype=float)

    means, colour = rows("means"), rows("vs_average")
    keep = pick_persona_features(features, rows("weight", "vs_average"))
    means, colour = means[:, keep], np.clip(colour[:, keep], -PERSONA_CAP, PERSONA_CAP)
    names = [features[i] for i in keep]
    kinds = [kinds[i] for i in keep]
    height = max(2.6, 1.6 + 0.5 * len(segments) + 0.06 * max((len(n) for n in names), default=0))
    width = max(6.4, 2.2 + 0.62 * len(names))
    fig = _figure((width, height))
    ax = fig.add_subplot()
    image = ax.imshow(colour, aspect="auto", cmap="RdBu_r", vmin=-PERSONA_CAP, vmax=PERSONA_CAP)
    ax.set_xticks(range(len(names)), names, rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(len(segments)), [f"{s['segment']}  (n={s.get('size', '?'):,})" for s in segments],
                  fontsize=9)
    for i in range(means.shape[0]):
        for j in range(means.shape[1]):
            dark = np.isfinite(colour[i, j]) and abs(colour[i, j]) > 0.6 * PERSONA_CAP
            ax.text(j, i, format_value(means[i, j], kinds[j]), ha="center", va="center", fontsize=7,
                    color="white" if dark else "#222222")
    bar = fig.colorbar(image, ax=ax, shrink=0.85, ticks=[-1, -0.5, 0, 0.5, 1])
    bar.ax.set_yticklabels(["−100 %", "−50 %", "average", "+50 %", "+100 %\nor more"], fontsize=8)
    bar.set_label("difference from the average", fontsize=9)
    ax.set_title(title, loc="left", fontsize=11)
    return _png(fig)


def ledger_chart(directions, *, title="Bytes that crossed a party boundary"):
    """Horizontal bars of bytes per direction, split by payload category.

    Parameters
    ----------
    directions : dict
        ``{"brand -> coordinator": {"bytes": int, "payloads": {category: bytes}}, ...}``
        as from :func:`fedscore.report.sections.ledger_section`.
    """
    names = list(directions)
    height = max(2.4, 1.2 + 0.5 * len(names))
    fig = _figure((SIZE[0] + 1.0, height))
    ax = fig.add_subplot()
    categories = [c for c in PAYLOAD_COLORS if any(c in d.get("payloads", {}) for d in directions.values())]
    categories += sorted({c for d in directions.values() for c in d.get("payloads", {})} - set(categories))
    left = np.zeros(len(names))
    for category in categories:
        widths = np.array([directions[n].get("payloads", {}).get(category, 0) for n in names], dtype=float)
        ax.barh(range(len(names)), widths, left=left, color=PAYLOAD_COLORS.get(category, "#444444"),
                label=PAYLOAD_LABELS.get(category, category), height=0.6)
        left += widths
    total = left.max() if len(left) else 0
    for i, n in enumerate(names):
        ax.text(left[i] + total * 0.01, i, human_bytes(directions[n].get("bytes", left[i])),
                va="center", fontsize=8, color="#333333")
    ax.set_yticks(range(len(names)), [n.replace(" -> ", " → ") for n in names], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, max(total * 1.18, 1))
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]))
    ax.xaxis.set_major_formatter(lambda x, _: human_bytes(x, compact=True))
    ax.tick_params(axis="x", labelsize=8)
    ax.set_xlabel("bytes (kind and size only: the ledger never holds a value)")
    ax.set_title(title, loc="left", fontsize=11)
    _style(ax)
    ax.grid(False, axis="y")
    if categories:
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    return _png(fig)
