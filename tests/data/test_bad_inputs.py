"""The bad-input folder: every good image kept (as RGB, oriented), every bad one reported with its reason."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from artmem.cli import main
from artmem.data.check import check_collection
from artmem.data.images import get_max_image_pixels, load_image, set_max_image_pixels
from artmem.errors import ImageReadError

BAD = {
    "truncated.jpg": "truncated",
    "empty.jpg": "empty",
    "text.jpg": "not an image",
    "bomb.png": "decompression-bomb limit",
}
CHECK_ONLY = {"bad_crc.png": "corrupt PNG"}  # decodes, but `collection check` flags the checksum
GOOD = ["good.jpg", "good_grey.png", "grey_alpha.png", "cmyk.jpg", "sixteen.png", "palette_alpha.png",
        "exif_rotated.jpg", "one_pixel.png"]


@pytest.fixture
def low_limit():
    old = get_max_image_pixels()
    set_max_image_pixels(10_000)
    yield
    set_max_image_pixels(old)


def test_conversions_and_orientation(bad_folder, low_limit):
    for name in GOOD:
        img = load_image(bad_folder / name)
        assert img.mode == "RGB", name
    cmyk = np.asarray(load_image(bad_folder / "cmyk.jpg"))
    assert cmyk[..., 0].mean() > 200 and cmyk[..., 1:].mean() < 60  # CMYK (0,255,255,0) is red
    assert np.asarray(load_image(bad_folder / "sixteen.png")).min() == 255  # 65535 -> white, not clipped
    pal = np.asarray(load_image(bad_folder / "palette_alpha.png"))
    assert tuple(pal[0, 0]) == (255, 255, 255)  # transparent -> white background
    assert tuple(pal[5, 5]) == (0, 255, 0)
    rot = load_image(bad_folder / "exif_rotated.jpg")
    assert rot.size == (20, 40)  # stored 40x20 with orientation 6
    arr = np.asarray(rot).astype(int)
    assert arr[:15, :, 0].mean() > 200 and arr[:15, :, 2].mean() < 60  # red (stored left) now on top
    assert arr[25:, :, 2].mean() > 200
    assert rot.info["original_size"] == (20, 40)
    assert load_image(bad_folder / "one_pixel.png").size == (1, 1)


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_files_raise_with_reason(bad_folder, low_limit, name):
    with pytest.raises(ImageReadError) as exc:
        load_image(bad_folder / name)
    assert BAD[name] in exc.value.reason
    assert exc.value.path.endswith(name)


def test_missing_file_reason(tmp_path):
    with pytest.raises(ImageReadError, match="file not found"):
        load_image(tmp_path / "nope.jpg")


def test_check_collection_keeps_good_reports_bad(bad_folder):
    table = check_collection(bad_folder, workers=0, max_pixels=10_000, progress=False)
    got = dict(zip(table["path"], table["reason"], strict=False))
    assert set(table.loc[table["ok"], "path"]) == set(GOOD)
    for name, key in {**BAD, **CHECK_ONLY}.items():
        assert key in got[name]
    assert get_max_image_pixels() != 10_000  # the check's limit does not leak


def test_cli_import_and_check_with_missing_csv_row(bad_folder, tmp_path, capsys):
    csv = bad_folder / "list.csv"
    csv.write_text("path,kind\n" + "".join(f"{n},good\n" for n in GOOD) + "".join(f"{n},bad\n" for n in [*BAD, *CHECK_ONLY])
                   + "missing.jpg,bad\n")
    out = tmp_path / "imported"
    assert main(["collection", "import", "--format", "csv", str(csv), "-o", str(out)]) == 0
    import_errors = pd.read_parquet(out / "errors.parquet")
    assert import_errors.to_dict("records") == [{"path": "missing.jpg", "reason": "file not found"}]
    capsys.readouterr()
    check_out = tmp_path / "check"
    rc = main(["collection", "check", str(out), "-o", str(check_out), "--max-pixels", "10000"])
    assert rc == 0
    printed = capsys.readouterr()
    assert str(check_out / "errors.parquet") in printed.out
    assert "5 of 13 images unreadable" in printed.err
    errors = pd.read_parquet(check_out / "errors.parquet")
    assert sorted(errors["path"]) == sorted([*BAD, *CHECK_ONLY])
    assert main(["collection", "check", str(out), "--max-pixels", "10000", "--strict"]) == 1
    strict = capsys.readouterr()
    assert "truncated.jpg\t" in strict.out and "(--strict)" in strict.err


def test_check_in_worker_processes(bad_folder, tmp_path):
    # more than 64 files so the process pool is used; the limit reaches the workers
    import shutil

    many = tmp_path / "many"
    many.mkdir()
    for i in range(6):
        for f in bad_folder.iterdir():
            shutil.copyfile(f, many / f"{i}_{f.name}")
    table = check_collection(many, workers=2, max_pixels=10_000, progress=False)
    assert len(table) == 78
    assert (~table["ok"]).sum() == 30
    assert table.loc[table["path"].str.endswith("bomb.png"), "reason"].str.contains("limit").all()
