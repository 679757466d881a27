"""File names that are not valid UTF-8 (b'caf\\xe9.jpg' on Linux) are ordinary, readable images:
every command keeps going and reads the exact bytes of the name."""

from __future__ import annotations

import os
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from artmem.cli import main
from artmem.data.pathnames import native_path, shown_path, table_path

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="only Linux file systems take any bytes as a name")

RAW = b"caf\xe9.jpg"  # Latin-1 e-acute: not valid UTF-8


@pytest.fixture
def latin1_folder(tmp_path):
    root = tmp_path / "coll"
    (root / "a").mkdir(parents=True)
    Image.new("RGB", (40, 30), (200, 30, 30)).save(root / "a" / "x.jpg")
    Image.new("RGB", (40, 30), (30, 200, 30)).save(root / "a" / "y.jpg")
    Image.new("RGB", (30, 40), (30, 30, 200)).save(os.fsencode(root / "a") + b"/" + RAW, format="JPEG")
    return root


def test_table_path_round_trips_the_bytes():
    native = os.fsdecode(b"a/" + RAW)
    t = table_path(native)
    t.encode("utf-8")  # valid UTF-8: Arrow/Parquet/JSON take it
    assert os.fsencode(native_path(t)) == b"a/" + RAW
    assert shown_path(t) == "a/caf\\xe9.jpg"
    assert table_path("plain/é.jpg") == "plain/é.jpg" == native_path("plain/é.jpg")


def test_import_check_profile_keep_the_image(latin1_folder, tmp_path, capsys):
    from artmem.data.collection import Collection

    assert main(["collection", "import", str(latin1_folder), "--format", "folder", "-o", str(tmp_path / "c")]) == 0
    coll = Collection.load(tmp_path / "c" / "collection.parquet")
    assert len(coll) == 3
    odd = [p for p in coll.paths if p.startswith("a/caf")]
    assert len(odd) == 1 and os.path.isfile(coll.abs_path(odd[0]))
    assert main(["collection", "check", str(latin1_folder)]) == 0
    assert main(["collection", "profile", str(latin1_folder), "-o", str(tmp_path / "prof")]) == 0
    prof = pd.read_parquet(tmp_path / "prof" / "sizes.parquet")
    row = prof[prof["path"] == odd[0]]
    assert len(row) == 1 and int(row["width"].iloc[0]) == 30  # the file itself was read


def test_score_and_extract_read_it(latin1_folder, tmp_path):
    for cmd, kind in (("score", "scores"), ("extract", "features")):
        out = tmp_path / cmd
        assert main([cmd, str(latin1_folder), "-o", str(out), "--model", "tiny_test", "--device", "cpu",
                     "--workers", "0"]) == 0
        table = pd.read_parquet(out / f"{kind}.parquet")
        assert len(table) == 3, cmd
        assert len(pd.read_parquet(out / "errors.parquet")) == 0
    scores = pd.read_parquet(tmp_path / "score" / "scores.parquet").set_index("path")["score"]
    assert np.isfinite(scores.to_numpy()).all()


def test_csv_row_matched_to_a_non_utf8_file_is_readable(latin1_folder, tmp_path):
    """A CSV naming `a/café.jpg` while the disk holds the Latin-1 bytes: matched by its ASCII
    key, stored as a valid table path, read from the exact bytes."""
    from artmem.data.collection import Collection

    pd.DataFrame({"path": ["a/café.jpg", "a/x.jpg"]}).to_csv(tmp_path / "list.csv", index=False)
    assert main(["collection", "import", str(tmp_path / "list.csv"), "--format", "csv", "--root",
                 str(latin1_folder), "-o", str(tmp_path / "c")]) == 0
    coll = Collection.load(tmp_path / "c" / "collection.parquet")
    assert len(coll) == 2 and all(os.path.isfile(p) for p in coll.abs_paths())
