"""``trustfm data images digits|shapes OUT_DIR``: write an image dataset to train on."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from trustfm.cli import data_app


class ImageDataset(str, Enum):
    digits = "digits"
    shapes = "shapes"


@data_app.command("images")
def images(
    dataset: ImageDataset = typer.Argument(..., help="digits: scikit-learn's 1,797 handwritten digits (real data, "
                                                    "class folders); shapes: the generated demo set (a table with "
                                                    "a background group)"),
    out_dir: Path = typer.Argument(..., help="folder to write into (created)"),
    rows: int = typer.Option(600, "--rows", help="shapes: images to generate"),
    seed: int = typer.Option(0, "--seed", help="shapes: random seed"),
) -> None:
    """Write an image dataset and print the data.train setting that reads it."""
    from trustfm.data.image_datasets import write_digits, write_shapes

    if dataset is ImageDataset.digits:
        target = write_digits(out_dir)
        typer.echo(f"{target}: 1797 greyscale digit images in class folders; train with data.modality: image, "
                   f"data.train: {target}, data.image.augment.flip: false")
    else:
        target = write_shapes(out_dir, n=rows, seed=seed)
        typer.echo(f"{target}: {rows} shape images; train with data.modality: image, data.train: {target}, "
                   "data.group_columns: [background]")
