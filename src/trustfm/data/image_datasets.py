"""Image datasets written to disk as a user would have them: real digits from scikit-learn, and generated shapes.

- :func:`write_digits`: scikit-learn's bundled handwritten digits (UCI optical recognition of handwritten digits:
  1,797 greyscale 8 x 8 scans of 43 writers' digits, 10 classes), upscaled to 32 x 32 and written as a folder of
  class folders of greyscale PNGs, so reading them also exercises the grey-to-RGB conversion. It ships inside
  scikit-learn, so it is real data that needs no download.
- :func:`write_shapes`: the demo set, a table (``images.csv``: image, label, background) of circles, squares and
  triangles on light or dark backgrounds. The dark-background images (about a third) are dimmer, noisier and carry
  15% label noise: a planted disadvantage that the fairness audit finds (measured in benchmarks/README.md: test
  accuracy 0.64 on dark against 1.00 on light). Re-weighting cannot remove label noise, and narrows the gap little.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

SHAPES = ("circle", "square", "triangle")


def write_digits(folder: str | Path, *, size: int = 32) -> Path:
    """Write scikit-learn's digits as ``folder/<digit>/<index>.png`` (greyscale, ``size`` px); returns ``folder``."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    folder = Path(folder)
    for index, (image, label) in enumerate(zip(digits.images, digits.target)):
        target = folder / str(int(label))
        target.mkdir(parents=True, exist_ok=True)
        grey = Image.fromarray((image / 16.0 * 255.0).round().astype(np.uint8), mode="L")
        grey.resize((size, size), Image.Resampling.BILINEAR).save(target / f"{index:04d}.png")
    return folder


def _shape_mask(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A boolean (size, size) mask of one shape at a random place and scale."""
    radius = rng.uniform(0.18, 0.32) * size
    cy, cx = rng.uniform(radius + 1, size - radius - 1, size=2)
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    if kind == "circle":
        return (y - cy) ** 2 + (x - cx) ** 2 <= radius ** 2
    if kind == "square":
        half = radius * 0.85
        return (np.abs(y - cy) <= half) & (np.abs(x - cx) <= half)
    # triangle pointing up: below the two slanted edges and above the base
    top, base = cy - radius, cy + radius * 0.8
    half_width = (y - top) / (base - top) * radius
    return (y >= top) & (y <= base) & (np.abs(x - cx) <= half_width)


def write_shapes(folder: str | Path, *, n: int = 600, size: int = 64, seed: int = 0) -> Path:
    """Write ``n`` shape images under ``folder/images/`` and ``folder/images.csv``; returns the table's path."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(n):
        kind = SHAPES[index % len(SHAPES)]
        dark = rng.random() < 0.35  # the minority group
        background = rng.uniform(0.05, 0.25, size=3) if dark else rng.uniform(0.7, 0.95, size=3)
        colour = rng.uniform(0.0, 1.0, size=3)
        contrast = 0.35 if dark else 1.0
        image = np.broadcast_to(background, (size, size, 3)).copy()
        mask = _shape_mask(kind, size, rng)
        image[mask] = background + (colour - background) * contrast
        image += rng.normal(0.0, 0.12 if dark else 0.04, size=image.shape)
        label = kind
        if dark and rng.random() < 0.15:  # label noise only where the images are already harder
            label = SHAPES[(SHAPES.index(kind) + 1 + int(rng.integers(2))) % len(SHAPES)]
        name = f"images/{index:04d}.png"
        Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8)).save(folder / name)
        rows.append({"image": name, "label": label, "background": "dark" if dark else "light"})
    table = folder / "images.csv"
    with table.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["image", "label", "background"])
        writer.writeheader()
        writer.writerows(rows)
    return table
