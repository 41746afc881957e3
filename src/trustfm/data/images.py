"""Image data: read a folder of class folders or a table of image paths, check every file, decode for the model.

Rows come out as :class:`~trustfm.data.validate.LabelledTexts` whose ``texts`` are the images' resolved paths, so
splitting, groups, rejections, hashes and every audit that works on model outputs treat images as they treat texts;
only decoding differs. Each file is checked before training starts, with one line naming file, row and column:

- a path that resolves outside the data root (``..``, an absolute path, a symbolic link) is refused, always;
- the header is read first and an image over ``data.image.max_pixels`` is refused before it is decoded (a
  decompression bomb: a 50,000 x 50,000 PNG is a few kilobytes on disk and 7.5 GB decoded);
- a missing, unreadable or truncated file, or one smaller than ``min_side`` or larger than ``max_side``, is a
  ``bad_image`` (``data.on_problem.bad_image``: error or drop);
- the same bytes at two rows (sha256) is a ``duplicate_image`` (error, drop the later row, or keep);
- grey, palette, 16-bit and RGBA images are converted to RGB (alpha over white), and how many of each were
  converted is reported in the file's notes.

Decoded images are resized (shorter side to ``size``) and centre-cropped to ``size`` x ``size`` RGB, uint8.
"""

from __future__ import annotations

import hashlib
import io
import logging
import warnings
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from trustfm.config.schema import DataConfig, ImageAugmentConfig, ImageConfig
from trustfm.data.validate import LabelledTexts, Rejection
from trustfm.errors import DataError

log = logging.getLogger("trustfm.data")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
FOLDER_COLUMN = "image"  # the column name rows of a class-folder layout are reported under


class ImageProblem(ValueError):
    """Why one image cannot be used: ``kind`` is the ``data.on_problem`` key (``bad_image``)."""

    def __init__(self, reason: str, kind: str = "bad_image"):
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def open_rgb(source: str | Path | bytes, limits: ImageConfig):
    """Open, check and fully decode one image; returns (PIL RGB image, the file's own mode).

    The size check reads the header only, so an oversized file is refused before any pixel is decoded.
    Raises :class:`ImageProblem`.
    """
    from PIL import Image, UnidentifiedImageError

    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    with warnings.catch_warnings():
        # our own max_pixels decides; Pillow's warning threshold (89 M pixels) would only add noise
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(stream)
        except Image.DecompressionBombError:
            raise ImageProblem(f"image has more than twice Pillow's {Image.MAX_IMAGE_PIXELS:,} pixel limit; refused "
                               "before decoding (decompression-bomb guard)") from None
        except UnidentifiedImageError:
            raise ImageProblem("not an image file Pillow can read") from None
        except FileNotFoundError:
            raise ImageProblem("file does not exist") from None
        except OSError as exc:
            raise ImageProblem(f"unreadable ({exc.__class__.__name__}: {exc})") from None
    width, height = image.size
    if width * height > limits.max_pixels:
        raise ImageProblem(f"image is {width:,} x {height:,} = {width * height:,} pixels, over data.image.max_pixels "
                           f"= {limits.max_pixels:,}; refused before decoding (decompression-bomb guard)")
    if min(width, height) < limits.min_side:
        raise ImageProblem(f"image is {width} x {height}, smaller than data.image.min_side = {limits.min_side}")
    if max(width, height) > limits.max_side:
        raise ImageProblem(f"image is {width} x {height}, larger than data.image.max_side = {limits.max_side}")
    mode = image.mode
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageProblem(f"truncated or corrupt image data ({exc})") from None
    return to_rgb(image), mode


def to_rgb(image):
    """An RGB copy of a PIL image: transparency is laid over white, 16-bit and float grey scaled to 8 bits."""
    from PIL import Image

    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = values.max() if values.size and values.max() > 255 else 255.0
        image = Image.fromarray(np.clip(values / top * 255.0, 0, 255).astype(np.uint8), mode="L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def square(image, size: int) -> np.ndarray:
    """Shorter side resized to ``size`` (bilinear, antialiased), centre-cropped: uint8 array (size, size, 3)."""
    from PIL import Image, ImageOps

    return np.asarray(ImageOps.fit(image, (size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def decode_image(source, limits: ImageConfig) -> np.ndarray:
    """One model input from a path, encoded bytes, a PIL image or an array (h, w, 3) or (h, w) of uint8:
    the checked, converted and squared image, uint8 (size, size, 3)."""
    if isinstance(source, (str, Path, bytes)):
        return square(open_rgb(source, limits)[0], limits.size)
    if isinstance(source, np.ndarray):
        from PIL import Image

        if source.dtype != np.uint8 or source.ndim not in (2, 3) or (source.ndim == 3 and source.shape[2] not in (1, 3, 4)):
            raise ImageProblem(f"an image array must be uint8 (h, w), (h, w, 1), (h, w, 3) or (h, w, 4), not "
                               f"{source.dtype} {source.shape}")
        source = Image.fromarray(source[..., 0] if source.ndim == 3 and source.shape[2] == 1 else source)
    return square(to_rgb(source), limits.size)


# --------------------------------------------------------------------------------------------------------------------
# reading a labelled image dataset


def folder_table(folder: Path, *, labelled: bool = True):
    """A class-folder layout as a table: columns ``image`` (path relative to ``folder``) and ``label`` (the class
    folder's name), files sorted by path; row ``i`` is data row ``i + 1``. Files without an image suffix are skipped
    and counted in the returned note. Unlabelled images (``labelled=False``) may also lie in ``folder`` itself."""
    import pandas as pd

    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not labelled:
        classes = [folder, *classes]
    if not classes:
        raise DataError("a folder of images needs one sub-folder per class (train/cat/1.png, train/dog/2.png)",
                        file=str(folder))
    rows, skipped = [], 0
    for class_dir in classes:
        found = class_dir.iterdir() if class_dir == folder else class_dir.rglob("*")
        for path in sorted(p for p in found if p.is_file() and not p.name.startswith(".")):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                rows.append({FOLDER_COLUMN: str(path.relative_to(folder)), "label": class_dir.name})
            else:
                skipped += 1
    note = f"{skipped} files without an image suffix skipped" if skipped else None
    return pd.DataFrame(rows, columns=[FOLDER_COLUMN, "label"], dtype=object), note


def resolve_inside(root: Path, relative: str) -> Path:
    """``root / relative`` with every link resolved; :class:`ImageProblem` (kind ``outside_root``) when it leaves
    ``root``."""
    base = root.resolve()
    path = (base / relative).resolve()
    if not path.is_relative_to(base):
        raise ImageProblem(f"path leaves the data root {base}; refused", kind="outside_root")
    return path


def load_labelled_images(path: Path, config: DataConfig, *, known_labels: list[str] | None = None,
                         labelled: bool = True) -> LabelledTexts:
    """Read and check one image dataset (a class-folder layout or a table of paths); ``texts`` are resolved paths.

    ``source_sha256`` covers the table and every kept image's bytes, so the run's data hash changes when an
    image does.
    """
    from trustfm.data.io import read_table_source
    from trustfm.data.validate import labelled_columns, validate_table

    image_config = config.image
    notes = []
    if path.is_dir():
        frame, note = folder_table(path, labelled=labelled)
        notes += [f"read as a folder of class folders ({len(frame)} images)"] + ([note] if note else [])
        column, label_column, root = FOLDER_COLUMN, "label" if labelled else None, path
        id_column, group_columns = None, []
    else:
        column = image_config.column
        label_column, id_column, group_columns, wanted = labelled_columns(config, column, labelled=labelled)
        frame, source = read_table_source(path, config.format, columns=wanted)
        notes += [f"read as {source.describe()}", *source.notes]
        root = image_config.root or path.parent
    part = validate_table(frame, file=str(path), text_column=column, label_column=label_column, id_column=id_column,
                          group_columns=group_columns, policies=config.on_problem, known_labels=known_labels)
    keep, rejected, modes, digest = _check_images(part, root, column, config)
    kept = part.subset(keep)
    kept.texts = [str(resolve_inside(root, part.texts[i])) for i in keep]
    kept.rows_in, kept.rejected = part.rows_in, sorted(part.rejected + rejected, key=lambda r: r.row)
    converted = {mode: n for mode, n in modes.items() if mode != "RGB"}
    if converted:
        notes.append("converted to RGB: " + ", ".join(f"{n} {mode}" for mode, n in sorted(converted.items())))
    duplicates = sum(r.kind == "duplicate_image" for r in rejected)
    if duplicates:
        notes.append(f"{duplicates} duplicate images dropped (the same bytes as an earlier row)")
    kept.notes = [*notes, *part.notes]
    kept.source_sha256 = digest
    log.info("%s: %d images in, %d kept, %d dropped", path, part.rows_in, len(kept), len(kept.rejected))
    return kept


def _check_images(part: LabelledTexts, root: Path, column: str, config: DataConfig):
    """Open and decode every image of ``part``; returns (kept positions, rejections, modes seen, content sha256)."""
    policies = config.on_problem
    digest = hashlib.sha256()
    if Path(part.file).is_file():
        digest.update(Path(part.file).read_bytes())
    seen: dict[str, int] = {}
    keep, rejected, modes = [], [], Counter()
    for i, relative in enumerate(part.texts):
        row = int(part.rows[i])
        try:
            path = resolve_inside(root, relative)
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                raise ImageProblem(f"image file {relative!r} does not exist under {root}") from None
            except OSError as exc:
                raise ImageProblem(f"image file {relative!r} cannot be read ({exc.strerror or exc})") from None
            _, mode = open_rgb(data, config.image)
        except ImageProblem as problem:
            if problem.kind == "outside_root" or policies.bad_image == "error":
                raise DataError(f"{relative!r}: {problem.reason}"
                                + ("" if problem.kind == "outside_root" else
                                   " (data.on_problem.bad_image: drop skips such files)"),
                                file=part.file, row=row, column=column) from None
            rejected.append(Rejection(part.file, row, column, problem.kind, problem.reason))
            continue
        sha = hashlib.sha256(data).hexdigest()
        if sha in seen and policies.duplicate_image != "keep":
            reason = f"the same image bytes as row {seen[sha]}"
            if policies.duplicate_image == "error":
                raise DataError(f"{relative!r}: {reason} (data.on_problem.duplicate_image: drop or keep)",
                                file=part.file, row=row, column=column)
            rejected.append(Rejection(part.file, row, column, "duplicate_image", reason))
            continue
        seen.setdefault(sha, row)
        digest.update(sha.encode())
        modes[mode] += 1
        keep.append(i)
    return np.asarray(keep, dtype=np.int64), rejected, modes, digest.hexdigest()


# --------------------------------------------------------------------------------------------------------------------
# model inputs


@dataclass
class EncodedImages:
    """Decoded images ready for the model: ``pixels`` uint8 (n, size, size, 3).

    The image counterpart of :class:`~trustfm.data.batching.EncodedTexts`: every image has length 1 (no padding to
    save) and nothing is truncated. With ``augment`` set, :meth:`make_batch` draws a random crop, flip and colour
    change per image from ``(seed, the batch's rows)``, so a resumed run repeats an uninterrupted one.
    """

    pixels: np.ndarray
    augment: ImageAugmentConfig | None = None
    seed: int = 0

    @property
    def lengths(self) -> np.ndarray:
        return np.ones(len(self.pixels), dtype=np.int64)

    @property
    def truncated(self) -> np.ndarray:
        return np.zeros(len(self.pixels), dtype=bool)

    def __len__(self) -> int:
        return len(self.pixels)

    def make_batch(self, index: np.ndarray, pad_id: int = 0) -> dict:
        """``{"pixel_values": float32 tensor (b, 3, size, size) in [0, 1]}`` for rows ``index``."""
        import torch

        pixels = torch.from_numpy(np.ascontiguousarray(self.pixels[np.asarray(index)])).permute(0, 3, 1, 2)
        batch = pixels.to(torch.float32).div_(255.0)
        if self.augment is not None and len(index):
            generator = torch.Generator().manual_seed(
                int(zlib.crc32(np.asarray(index, dtype=np.int64).tobytes()) ^ (self.seed * 2654435761)) % (2**63))
            batch = augment_batch(batch, self.augment, generator)
        return {"pixel_values": batch}


def encode_images(sources: Sequence, limits: ImageConfig, *, augment: ImageAugmentConfig | None = None,
                  seed: int = 0, cache: dict[str, np.ndarray] | None = None,
                  cache_limit: int = 0) -> EncodedImages:
    """Decode ``sources`` (paths, bytes, PIL images or uint8 arrays) into :class:`EncodedImages`.

    ``cache``: decoded pixels by path, read first and filled up to ``cache_limit`` entries (a caller that decodes
    the same paths often keeps one). A bad image raises :class:`ImageProblem` naming its position (1-based) and path.
    """
    pixels = np.empty((len(sources), limits.size, limits.size, 3), dtype=np.uint8)
    for i, source in enumerate(sources):
        key = str(source) if isinstance(source, (str, Path)) else None
        if cache is not None and key in cache:
            pixels[i] = cache[key]
            continue
        try:
            pixels[i] = decode_image(source, limits)
        except ImageProblem as problem:
            raise ImageProblem(f"image {i + 1}{f' ({key})' if key else ''}: {problem.reason}", problem.kind) from None
        if cache is not None and key is not None and len(cache) < cache_limit:
            cache[key] = pixels[i]
    return EncodedImages(pixels, augment, seed)


def augment_batch(batch, config: ImageAugmentConfig, generator):
    """Random-resized crop, horizontal flip and colour jitter (brightness, contrast, saturation) of a batch
    (b, 3, s, s) in [0, 1], one draw per image from ``generator``; returns a new tensor in [0, 1]."""
    import math

    import torch
    import torch.nn.functional as F

    def uniform(low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), generator=generator))

    out = torch.empty_like(batch)
    size = batch.shape[-1]
    grey_weights = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
    for i in range(batch.shape[0]):
        image = batch[i]
        if config.crop_scale < 1.0:
            area = uniform(config.crop_scale, 1.0) * size * size
            ratio = math.exp(uniform(math.log(3 / 4), math.log(4 / 3)))
            width = min(size, max(1, round(math.sqrt(area * ratio))))
            height = min(size, max(1, round(math.sqrt(area / ratio))))
            top = int(torch.randint(0, size - height + 1, (), generator=generator))
            left = int(torch.randint(0, size - width + 1, (), generator=generator))
            image = F.interpolate(image[None, :, top:top + height, left:left + width], size=(size, size),
                                  mode="bilinear", align_corners=False, antialias=True)[0]
        if config.flip and float(torch.rand((), generator=generator)) < 0.5:
            image = image.flip(-1)
        if config.brightness:
            image = image * uniform(1 - config.brightness, 1 + config.brightness)
        if config.contrast:
            mean = (image * grey_weights).sum(0).mean()
            image = (image - mean) * uniform(1 - config.contrast, 1 + config.contrast) + mean
        if config.saturation:
            grey = (image * grey_weights).sum(0, keepdim=True)
            image = (image - grey) * uniform(1 - config.saturation, 1 + config.saturation) + grey
        out[i] = image.clamp(0.0, 1.0)
    return out


# --------------------------------------------------------------------------------------------------------------------
# example images for results and reports


def png_data_uri(pixels: np.ndarray) -> str:
    """A uint8 image (h, w, 3) as a ``data:image/png;base64,...`` URI, for a result file or an HTML report."""
    import base64

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def heatmap_overlay(pixels: np.ndarray, attribution: np.ndarray, *, alpha: float = 0.85) -> np.ndarray:
    """``attribution`` (h, w), any sign, drawn over a greyed ``pixels`` (h, w, 3): red where it is positive, blue
    where negative, opacity by magnitude relative to the image's 99th percentile (a few extreme pixels would
    otherwise wash the rest out); uint8 (h, w, 3)."""
    grey = pixels.astype(np.float64).mean(axis=2, keepdims=True).repeat(3, axis=2) * 0.5 + 255 * 0.25
    peak = float(np.percentile(np.abs(attribution), 99)) or float(np.abs(attribution).max()) or 1.0
    strength = np.clip(np.abs(attribution) / peak, 0.0, 1.0)[..., None] * alpha
    colour = np.where(attribution[..., None] >= 0, np.array([214.0, 39.0, 40.0]), np.array([31.0, 119.0, 180.0]))
    return np.clip(grey * (1 - strength) + colour * strength, 0, 255).astype(np.uint8)
