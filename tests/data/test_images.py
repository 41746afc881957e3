"""Image data: class folders and path tables read, every file checked, bad ones named by file, row and column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trustfm.config.schema import DataConfig, ImageAugmentConfig, ImageConfig, RunConfig
from trustfm.data.images import EncodedImages, decode_image, load_labelled_images
from trustfm.data.prepare import prepare_data
from trustfm.errors import DataError

from conftest import bomb_png


def _png(path: Path, mode: str = "RGB", size=(24, 24), value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    if mode == "RGBA":
        image = Image.fromarray(rng.integers(0, 255, (*size, 4), dtype=np.uint8), "RGBA")
    elif mode == "L":
        image = Image.fromarray(rng.integers(0, 255, size, dtype=np.uint8), "L")
    elif mode == "P":
        image = Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).convert("P")
    else:
        image = Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8))
    image.save(path)
    return path


def _table(folder: Path, rows: list[tuple[str, str]]) -> Path:
    table = folder / "images.csv"
    table.write_text("image,label\n" + "".join(f"{p},{label}\n" for p, label in rows))
    return table


def _config(**image) -> DataConfig:
    return DataConfig(modality="image", image=ImageConfig(size=16, **image), min_class_rows=1)


def test_class_folders_are_read_and_grey_images_converted_and_reported(tmp_path):
    for i in range(3):
        _png(tmp_path / "cat" / f"{i}.png", "L", value=i)
        _png(tmp_path / "dog" / f"{i}.png", value=10 + i)
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    part = load_labelled_images(tmp_path, _config())
    assert part.labels == ["cat"] * 3 + ["dog"] * 3
    assert all(Path(p).is_absolute() and Path(p).exists() for p in part.texts)
    assert "converted to RGB: 3 L" in part.notes
    assert any("1 files without an image suffix skipped" in n for n in part.notes)
    pixels = decode_image(part.texts[0], ImageConfig(size=16))
    assert pixels.shape == (16, 16, 3) and pixels.dtype == np.uint8
    assert (pixels[..., 0] == pixels[..., 1]).all()  # grey stays grey in RGB


def test_table_modes_are_all_converted_and_counted(tmp_path):
    rows = [(_png(tmp_path / f"{m}.png", m, value=i).name, "a" if i % 2 else "b") for i, m in
            enumerate(["RGB", "RGBA", "L", "P"])]
    part = load_labelled_images(_table(tmp_path, rows), _config())
    assert len(part) == 4
    assert "converted to RGB: 1 L, 1 P, 1 RGBA" in part.notes
    # RGBA is laid over white: a fully transparent pixel reads as white
    transparent = np.zeros((24, 24, 4), dtype=np.uint8)
    assert (decode_image(transparent, ImageConfig(size=16)) == 255).all()


@pytest.mark.parametrize("case, expected", [
    ("truncated", "truncated or corrupt image data"),
    ("missing", "does not exist"),
    ("not_image", "not an image file Pillow can read"),
    ("tiny", "smaller than data.image.min_side = 8"),
])
def test_a_bad_image_names_file_row_and_column(tmp_path, case, expected):
    good = [(_png(tmp_path / f"ok{i}.png", value=i).name, "a") for i in range(3)]
    bad = tmp_path / "bad.png"
    if case == "truncated":
        data = _png(tmp_path / "full.png", size=(64, 64)).read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    elif case == "not_image":
        bad.write_bytes(b"hello, I am text")
    elif case == "tiny":
        _png(bad, size=(4, 4))
    table = _table(tmp_path, [*good, ("bad.png", "a")])
    with pytest.raises(DataError) as error:
        load_labelled_images(table, _config())
    message = str(error.value)
    assert expected in message and f"file {table}" in message and "row 4" in message and "column 'image'" in message
    # under drop the row is a rejection, never lost silently
    config = _config().model_copy(update={"on_problem": _config().on_problem.model_copy(update={"bad_image": "drop"})})
    part = load_labelled_images(table, config)
    assert len(part) == 3 and [(r.row, r.kind) for r in part.rejected] == [(4, "bad_image")]
    assert expected in part.rejected[0].reason


@pytest.mark.parametrize("path", ["../outside.png", "/etc/hostname", "link.png"])
def test_a_path_outside_the_data_root_is_refused_even_under_drop(tmp_path, path):
    root = tmp_path / "data"
    rows = [(_png(root / f"ok{i}.png", value=i).name, "a") for i in range(2)]
    _png(tmp_path / "outside.png")
    (root / "link.png").symlink_to(tmp_path / "outside.png")
    table = _table(root, [*rows, (path, "a")])
    config = _config().model_copy(update={"on_problem": _config().on_problem.model_copy(update={"bad_image": "drop"})})
    with pytest.raises(DataError, match="row 3, column 'image'.*leaves the data root .*; refused"):
        load_labelled_images(table, config)


def test_a_decompression_bomb_is_refused_before_it_is_decoded(tmp_path):
    import resource

    rows = [(_png(tmp_path / f"ok{i}.png", value=i).name, "a") for i in range(2)]
    bomb_png(tmp_path / "bomb.png")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(DataError, match="row 3.*refused before decoding \\(decompression-bomb guard\\)"):
        load_labelled_images(_table(tmp_path, [*rows, ("bomb.png", "a")]), _config())
    # 50,000 x 50,000 grey would be 2.5 GB decoded; nothing near that was allocated
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB
    # below Pillow's own hard limit, our max_pixels decides
    bomb_png(tmp_path / "big.png", 12_000, 12_000)
    with pytest.raises(DataError, match="12,000 x 12,000 = 144,000,000 pixels, over data.image.max_pixels"):
        load_labelled_images(_table(tmp_path, [*rows, ("big.png", "a")]), _config())


def test_duplicates_by_content_are_dropped_and_reported_or_refused(tmp_path):
    first = _png(tmp_path / "a.png", value=1)
    (tmp_path / "copy.png").write_bytes(first.read_bytes())
    table = _table(tmp_path, [("a.png", "x"), (_png(tmp_path / "b.png", value=2).name, "y"), ("copy.png", "x")])
    part = load_labelled_images(table, _config())
    assert len(part) == 2
    assert [(r.row, r.kind, r.reason) for r in part.rejected] == [(3, "duplicate_image", "the same image bytes as row 1")]
    assert "1 duplicate images dropped (the same bytes as an earlier row)" in part.notes
    strict = _config().model_copy(update={"on_problem": _config().on_problem.model_copy(
        update={"duplicate_image": "error"})})
    with pytest.raises(DataError, match="row 3.*same image bytes as row 1"):
        load_labelled_images(table, strict)


def test_the_data_hash_covers_the_images_not_only_the_table(tmp_path):
    rows = [(_png(tmp_path / f"{i}.png", value=i).name, "a" if i % 2 else "b") for i in range(20)]
    config = _config().model_copy(update={"train": _table(tmp_path, rows)})
    before = prepare_data(config, seed=0).file_hashes
    _png(tmp_path / "3.png", value=99)  # same name, other pixels
    assert prepare_data(config, seed=0).file_hashes != before


def test_augmentation_is_seeded_by_the_batch_and_stays_in_range():
    pixels = np.random.default_rng(0).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    plain = EncodedImages(pixels).make_batch(np.arange(6))["pixel_values"]
    assert plain.shape == (6, 3, 16, 16) and float(plain.max()) <= 1.0
    augmented = EncodedImages(pixels, ImageAugmentConfig(), seed=3)
    one, again = augmented.make_batch(np.arange(6))["pixel_values"], augmented.make_batch(np.arange(6))["pixel_values"]
    assert (one == again).all() and not (one == plain).all()
    assert float(one.min()) >= 0.0 and float(one.max()) <= 1.0
    other = augmented.make_batch(np.arange(5, -1, -1))["pixel_values"]
    assert not (other.flip(0) == one).all()  # another batch, other draws


@pytest.mark.parametrize("settings, message", [
    ({"data": {"modality": "image", "text_column": "review"}}, "data.text_column is set but data.modality is image"),
    ({"data": {"modality": "image"}, "model": {"name_or_path": "/some/bert"}}, "is not an image model"),
    ({"model": {"name_or_path": "efficientnet-lite0"}}, "is an image model but data.modality is text"),
    ({"data": {"image": {"size": 64}}}, "data.image is set but data.modality is text"),
    ({"data": {"modality": "image"}, "privacy": {"redact": True}}, "privacy.redact: text only"),
    ({"data": {"modality": "image"}, "privacy": {"dp": {"epsilon": 4}}}, "privacy.dp.trainable must be head"),
])
def test_a_mixed_text_and_image_config_is_refused_naming_the_setting(settings, message):
    with pytest.raises(ValueError, match=message):
        RunConfig.model_validate(settings)


def test_a_saved_image_config_loads_again(tmp_path):
    from trustfm.config import dump_config, load_config

    config = RunConfig.model_validate({"data": {"modality": "image", "image": {"size": 32}}})
    dump_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml").data.image.size == 32


def test_data_check_reports_every_image_problem_and_stops_on_an_error_policy(tmp_path):
    import json

    from conftest import run_cli

    rows = [(_png(tmp_path / f"{i}.png", value=i).name, "a" if i % 2 else "b") for i in range(12)]
    (tmp_path / "copy.png").write_bytes((tmp_path / "3.png").read_bytes())
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    _png(tmp_path / "grey.png", "L", value=50)
    table = _table(tmp_path, [*rows, ("copy.png", "a"), ("broken.png", "a"), ("grey.png", "b")])
    result = run_cli(["data", "check", table, "--modality", "image", "--no-issues", "--format", "json",
                      "--set", "data.min_class_rows=1"])
    assert result.returncode == 3 and "row 14, column 'image'" in result.stderr and "Traceback" not in result.stderr
    report = json.loads(result.stdout)
    assert report["modality"] == "image" and report["rows"] == 15 and report["usable_rows"] == 13
    assert report["problems"] == {"duplicate_image": 1, "bad_image": 1}
    assert report["first_rows"] == {"duplicate_image": [13], "bad_image": [14]}
    assert report["blocking"] == {"bad_image": 1} and report["tokens"] is None
    assert "converted to RGB: 1 L" in report["read_notes"]
