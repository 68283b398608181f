"""Pictures the demo shows: overlays with a drawn legend, the CAM blended over the image with a colour bar,
and referring candidates outlined and numbered. Pure functions, numpy in (H×W×3 uint8), numpy out."""

from __future__ import annotations

import numpy as np

import dglrsis

STRIP_ROW = 22  # pixels per legend row drawn under an overlay
BAR_WIDTH = 70  # pixels of the colour-bar panel right of the CAM
OUTLINE = (255, 220, 0)  # candidate outline
CHOSEN = (255, 40, 40)  # referred mask fill
HIGHLIGHT = (0, 230, 255)  # the candidate picked in the table


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one bitmap size
        return ImageFont.load_default()


def _text_colour(rgb) -> tuple:
    return (0, 0, 0) if sum(rgb) > 380 else (255, 255, 255)


def legend_strip(image: np.ndarray, names: list[str], palette: list) -> np.ndarray:
    """``image`` with a legend drawn under it: one swatch + name per class (``palette[k + 1]`` for
    ``names[k]``), wrapped onto as many rows as the width needs. Returns (H + rows·STRIP_ROW)×W×3."""
    from PIL import Image, ImageDraw

    h, w = image.shape[:2]
    font = _font(13)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    items, x, rows = [], 6, 1
    for k, name in enumerate(names):
        width = 18 + int(probe.textlength(name, font=font)) + 14
        if x + width > w and x > 6:
            x, rows = 6, rows + 1
        items.append((x, rows - 1, name, tuple(int(v) for v in palette[k + 1])))
        x += width
    canvas = Image.new("RGB", (w, h + rows * STRIP_ROW), (255, 255, 255))
    canvas.paste(Image.fromarray(image), (0, 0))
    draw = ImageDraw.Draw(canvas)
    for x, row, name, rgb in items:
        y = h + row * STRIP_ROW + 4
        draw.rectangle([x, y, x + 13, y + 13], fill=rgb, outline=(0, 0, 0))
        draw.text((x + 18, y - 1), name, fill=(0, 0, 0), font=font)
    return np.asarray(canvas)


def colour_bar(height: int, width: int = BAR_WIDTH, label: str = "CAM") -> np.ndarray:
    """A vertical colour bar of :func:`dglrsis.heatmap` (1 at the top, 0 at the bottom) with ticks."""
    from PIL import Image, ImageDraw

    height = max(height, 60)
    top, bottom, bar_w = 18, 8, 16
    span = height - top - bottom
    ramp = np.linspace(1.0, 0.0, span, dtype=np.float32)[:, None].repeat(bar_w, 1)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    canvas.paste(Image.fromarray(dglrsis.heatmap(ramp)), (8, top))
    draw = ImageDraw.Draw(canvas)
    font = _font(11)
    draw.text((4, 2), label, fill=(0, 0, 0), font=font)
    for value in (1.0, 0.5, 0.0):
        y = top + round((1 - value) * (span - 1))
        draw.line([8 + bar_w, y, 8 + bar_w + 4, y], fill=(0, 0, 0))
        draw.text((8 + bar_w + 7, y - 6), f"{value:.1f}", fill=(0, 0, 0), font=font)
    return np.asarray(canvas)


def cam_figure(image: np.ndarray, cam: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The CAM (H×W in [0, 1]) blended over ``image`` at ``alpha``, with a colour bar to its right."""
    heat = dglrsis.heatmap(cam).astype(np.float32)
    blended = ((1 - alpha) * image.astype(np.float32) + alpha * heat).round().astype(np.uint8)
    return np.concatenate([blended, colour_bar(image.shape[0])], axis=1)[: image.shape[0]]


def edges(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """Boundary pixels (H×W bool) of a boolean mask: pixels of the mask with a 4-neighbour outside it."""
    inner = mask.copy()
    for _ in range(width):
        eroded = inner.copy()
        eroded[1:] &= inner[:-1]
        eroded[:-1] &= inner[1:]
        eroded[:, 1:] &= inner[:, :-1]
        eroded[:, :-1] &= inner[:, 1:]
        inner = eroded
    return mask & ~inner


def candidate_overlay(
    image: np.ndarray,
    referred: np.ndarray,
    candidates: list[tuple[int, np.ndarray]],
    highlight: int | None = None,
) -> np.ndarray:
    """The referred mask filled red, each ``(rank, mask)`` candidate outlined and numbered beside it;
    candidate ``highlight`` (a rank) outlined thicker in cyan."""
    from PIL import Image, ImageDraw

    out = dglrsis.overlay(image, referred.astype(np.uint8), [(0, 0, 0), CHOSEN], alpha=0.5)
    for rank, mask in candidates:
        thick = rank == highlight
        out[edges(mask, 3 if thick else 1)] = HIGHLIGHT if thick else OUTLINE
    canvas = Image.fromarray(out)
    draw = ImageDraw.Draw(canvas)
    font = _font(14)
    h, w = referred.shape
    for rank, mask in candidates:
        ys, xs = np.nonzero(mask)
        if len(xs):  # the number sits just above the candidate's top-left corner, not over it
            x = float(np.clip(xs.min(), 0, w - 18))
            y = float(ys.min() - 20 if ys.min() >= 20 else min(ys.max() + 2, h - 19))
            colour = HIGHLIGHT if rank == highlight else OUTLINE
            draw.rectangle([x, y, x + 16 + 8 * (rank >= 10), y + 18], fill=colour)
            draw.text((x + 4, y + 1), str(rank), fill=_text_colour(colour), font=font)
    return np.asarray(canvas)
