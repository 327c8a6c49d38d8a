"""Training curves (Chollet 2nd ed. listings 8.x, 1st ed. 5.x): training and validation loss
and accuracy per epoch, side by side, the training values as dots and the validation
values as a line, as the book plots them.

Drawn with matplotlib (the Agg renderer, no screen needed) when it imports, otherwise,
or with backend="pillow", with pillow: axes with tick labels, the dots and lines, a
legend and a title per panel.
"""

import math

import numpy as np

from .images import write_png

__all__ = ["TRAINING_COLOR", "VALIDATION_COLOR", "history_metrics", "plot_history"]

TRAINING_COLOR = (31, 119, 180)  # the dots: matplotlib's "tab:blue"
VALIDATION_COLOR = (255, 127, 14)  # the line: "tab:orange"
_BACKENDS = ("auto", "matplotlib", "pillow")


def _history_dict(history):
    data = getattr(history, "history", history)
    if not isinstance(data, dict):
        raise TypeError(
            "history must be a History (with a .history dict) or a dict of per-epoch lists, "
            f"got {type(history).__name__}"
        )
    return data


def history_metrics(history):
    """The metrics plot_history shows by default: "loss" and the first accuracy-like metric
    ("accuracy", "acc", then any name containing "acc"); without those, the first two
    training metrics (names not starting with "val_")."""
    data = _history_dict(history)
    training = [key for key in data if not key.startswith("val_")]
    chosen = ["loss"] if "loss" in training else []
    accuracy = [key for key in ("accuracy", "acc") if key in training] + [key for key in training if "acc" in key]
    if accuracy:
        chosen.append(accuracy[0])
    for key in training:
        if len(chosen) >= 2:
            break
        if key not in chosen:
            chosen.append(key)
    if not chosen:
        raise ValueError(f"history has no training metric to plot; its keys: {list(data)}")
    return chosen


def _series(data, key):
    try:
        values = np.asarray(data[key], dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"history[{key!r}] must be a list of numbers, got {data[key]!r}") from None
    if values.size == 0:
        raise ValueError(f"history[{key!r}] is empty: nothing to plot")
    if not np.isfinite(values).any():
        raise ValueError(f"history[{key!r}] has no finite value to plot: {data[key]!r}")
    return values


def _curves(history, metrics):
    data = _history_dict(history)
    if metrics is None:
        metrics = history_metrics(data)
    elif isinstance(metrics, str):
        metrics = [metrics]
    metrics = list(metrics)
    if not metrics:
        raise ValueError("metrics is empty: give at least one metric name (or None for loss and accuracy)")
    curves = []
    for metric in metrics:
        if metric not in data:
            raise ValueError(f"metrics: history has no {metric!r}; its keys: {', '.join(map(repr, data))}")
        validation = f"val_{metric}"
        curves.append((metric, _series(data, metric), _series(data, validation) if validation in data else None))
    return curves


def plot_history(history, path=None, metrics=None, backend="auto", size=(1000, 400)):
    """Training and validation curves, one panel per metric; an RGB uint8 array (height, width, 3).

    history: a History object or its .history dict. metrics: names of training metrics
    (their "val_" twins are drawn when present); default history_metrics(history).
    backend: "auto" (matplotlib when it imports, pillow otherwise), "matplotlib" or
    "pillow". size: (width, height) in pixels. With `path`, also writes a PNG.
    """
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, _BACKENDS))}, got {backend!r}")
    if not (isinstance(size, (tuple, list)) and len(size) == 2
            and all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in size)):
        raise ValueError(f"size must be (width, height) in pixels, got {size!r}")
    curves = _curves(history, metrics)
    width, height = int(size[0]), int(size[1])
    if width < 160 * len(curves) or height < 120:
        raise ValueError(
            f"size {size!r} is too small for {len(curves)} panel(s): at least {160 * len(curves)} wide and 120 high"
        )
    if backend == "auto":
        try:
            import matplotlib  # noqa: F401
            backend = "matplotlib"
        except ImportError:
            backend = "pillow"
    image = _plot_matplotlib(curves, width, height) if backend == "matplotlib" else _plot_pillow(curves, width, height)
    if path is not None:
        write_png(image, path)
    return image


# --------------------------------------------------------------------------- matplotlib


def _plot_matplotlib(curves, width, height):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError as error:
        raise ImportError(f"plot_history(backend='matplotlib') needs matplotlib: {error}") from None
    dpi = 100
    figure = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(figure)  # draws into memory, no window
    axes = figure.subplots(1, len(curves), squeeze=False)[0]
    colors = [tuple(c / 255 for c in color) for color in (TRAINING_COLOR, VALIDATION_COLOR)]
    for ax, (metric, training, validation) in zip(axes, curves):
        ax.plot(np.arange(1, training.size + 1), training, "o", color=colors[0], label=f"Training {metric}")
        if validation is not None:
            ax.plot(np.arange(1, validation.size + 1), validation, "-", color=colors[1], label=f"Validation {metric}")
        ax.set_title(f"Training and validation {metric}" if validation is not None else f"Training {metric}")
        ax.set_xlabel("Epochs")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
    figure.tight_layout()
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[:, :, :3]
    # figsize * dpi can round to one pixel less or more: pad with white or cut to the size asked
    result = np.full((height, width, 3), 255, dtype=np.uint8)
    rows, columns = min(height, rgb.shape[0]), min(width, rgb.shape[1])
    result[:rows, :columns] = rgb[:rows, :columns]
    return result


# --------------------------------------------------------------------------- pillow


def nice_ticks(low, high, count=6):
    """Round tick values in [low, high], at most count + 1 of them, 1, 2, 2.5 or 5 times a
    power of ten apart; returns (ticks, step)."""
    if not high > low:
        low, high = low - 0.5, high + 0.5
    raw = (high - low) / max(count, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.floor(low / step + 1e-9) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        if value >= low - step * 1e-9:
            ticks.append(value)
        value += step
    return ticks, step


def _tick_label(value, step):
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    return f"{value:.{decimals}f}"


def _plot_pillow(curves, width, height):
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    try:
        font = ImageFont.load_default(size=12)
    except TypeError:  # pillow without FreeType: the fixed bitmap font
        font = ImageFont.load_default()
    panel_width = width // len(curves)
    for index, (metric, training, validation) in enumerate(curves):
        _draw_panel(draw, font, index * panel_width, panel_width, height, metric, training, validation)
    return np.asarray(image, dtype=np.uint8).copy()


def _text_size(draw, text, font):
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left, bottom


def _draw_panel(draw, font, x0, panel_width, height, metric, training, validation):
    black, gray = (0, 0, 0), (225, 225, 225)
    values = training if validation is None else np.concatenate([training, validation])
    values = values[np.isfinite(values)]
    epochs = max(training.size, 0 if validation is None else validation.size)
    low, high = float(values.min()), float(values.max())
    pad = 0.05 * (high - low) if high > low else 0.5
    y_low, y_high = low - pad, high + pad  # room around the extreme dots
    y_ticks, y_step = nice_ticks(y_low, y_high)
    x_pad = 0.05 * (epochs - 1) if epochs > 1 else 0.5
    x_low, x_high = 1.0 - x_pad, epochs + x_pad
    x_step = max(1, int(math.ceil(nice_ticks(1.0, float(max(epochs, 2)))[1])))
    x_ticks = list(range(x_step, epochs + 1, x_step))  # multiples of the step, and epoch 1
    if not x_ticks or x_ticks[0] > 2:
        x_ticks.insert(0, 1)

    label_width = max(_text_size(draw, _tick_label(t, y_step), font)[0] for t in y_ticks)
    _, text_height = _text_size(draw, "Epochs", font)
    left = x0 + label_width + 12
    right = x0 + panel_width - 12
    top = text_height + 14
    bottom = height - 2 * text_height - 18

    def to_pixel(epoch, value):
        px = left + (epoch - x_low) / (x_high - x_low) * (right - left)
        py = bottom - (value - y_low) / (y_high - y_low) * (bottom - top)
        return px, py

    # grid, ticks and their labels
    for t in y_ticks:
        _, py = to_pixel(x_low, t)
        draw.line([(left, py), (right, py)], fill=gray)
        draw.line([(left - 4, py), (left, py)], fill=black)
        label = _tick_label(t, y_step)
        w, h = _text_size(draw, label, font)
        draw.text((left - 6 - w, py - h / 2 - 1), label, fill=black, font=font)
    for t in x_ticks:
        px, _ = to_pixel(t, y_low)
        draw.line([(px, bottom), (px, bottom + 4)], fill=black)
        label = f"{int(round(t))}"
        w, _ = _text_size(draw, label, font)
        draw.text((px - w / 2, bottom + 6), label, fill=black, font=font)
    draw.rectangle([left, top, right, bottom], outline=black)
    w, _ = _text_size(draw, "Epochs", font)
    draw.text(((left + right) / 2 - w / 2, bottom + text_height + 10), "Epochs", fill=black, font=font)
    title = f"Training and validation {metric}" if validation is not None else f"Training {metric}"
    w, _ = _text_size(draw, title, font)
    draw.text(((left + right) / 2 - w / 2, 4), title, fill=black, font=font)

    # the curves: validation as a line, training as dots (drawn last, on top)
    if validation is not None:
        points = [to_pixel(e + 1, v) for e, v in enumerate(validation) if np.isfinite(v)]
        if len(points) > 1:
            draw.line(points, fill=VALIDATION_COLOR, width=2)
        for px, py in points:
            draw.point((px, py), fill=VALIDATION_COLOR)
    for e, v in enumerate(training):
        if np.isfinite(v):
            px, py = to_pixel(e + 1, v)
            draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=TRAINING_COLOR)

    # legend: in the corner of the axes that hides the fewest points
    entries = [(f"Training {metric}", "dot")] + ([(f"Validation {metric}", "line")] if validation is not None else [])
    box_width = max(_text_size(draw, text, font)[0] for text, _ in entries) + 34
    box_height = len(entries) * (text_height + 6) + 6
    shown = [to_pixel(e + 1, v) for series in (training, validation) if series is not None
             for e, v in enumerate(series) if np.isfinite(v)]
    corners = [(right - box_width - 6, top + 6), (left + 6, top + 6),
               (right - box_width - 6, bottom - box_height - 6), (left + 6, bottom - box_height - 6)]

    def hidden(corner):
        cx, cy = corner
        return sum(cx - 4 <= px <= cx + box_width + 4 and cy - 4 <= py <= cy + box_height + 4 for px, py in shown)

    bx, by = min(corners, key=hidden)  # min keeps the first corner among equals: top right
    draw.rectangle([bx, by, bx + box_width, by + box_height], fill=(255, 255, 255), outline=(160, 160, 160))
    for row, (text, kind) in enumerate(entries):
        cy = by + 6 + row * (text_height + 6) + text_height / 2
        if kind == "dot":
            draw.ellipse([bx + 12, cy - 3, bx + 18, cy + 3], fill=TRAINING_COLOR)
        else:
            draw.line([(bx + 6, cy), (bx + 24, cy)], fill=VALIDATION_COLOR, width=2)
        draw.text((bx + 30, cy - text_height / 2 - 1), text, fill=black, font=font)
