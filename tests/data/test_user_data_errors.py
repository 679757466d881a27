"""User-data mistakes are one-line exit-2 errors naming the file or row, never 'unexpected error'."""

from __future__ import annotations

import os

import pandas as pd
from PIL import Image

from artmem.cli import main
from artmem.data.collection import Collection
from artmem.data.readers.common import PathResolver


def _img(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (20, 20), (1, 2, 3)).save(path)


def test_profile_of_an_empty_collection_is_exit_2(tmp_path, capsys):
    Collection(pd.DataFrame({"path": pd.Series([], dtype=str)}), str(tmp_path), "empty").save(tmp_path / "c")
    rc = main(["collection", "profile", str(tmp_path / "c"), "-o", str(tmp_path / "p")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "no images to profile" in err[0] and "unexpected" not in err[0]


def test_csv_import_refuses_paths_outside_the_root(tmp_path, capsys):
    root, outside = tmp_path / "root", tmp_path / "outside"
    _img(root / "a" / "in.jpg")
    _img(outside / "secret.jpg")
    os.symlink(outside / "secret.jpg", root / "a" / "link.jpg")
    _img(outside / "other.jpg")
    pd.DataFrame({"path": ["a/in.jpg", "../outside/secret.jpg", str(outside / "other.jpg"), "a/link.jpg"],
                  "label": ["x", "y", "z", "w"]}).to_csv(tmp_path / "list.csv", index=False)
    assert main(["collection", "import", str(tmp_path / "list.csv"), "--format", "csv", "--root", str(root),
                 "-o", str(tmp_path / "c")]) == 0
    coll = Collection.load(tmp_path / "c" / "collection.parquet")
    assert coll.paths == ["a/in.jpg"]
    errors = pd.read_parquet(tmp_path / "c" / "errors.parquet")
    assert len(errors) == 3 and errors["reason"].str.contains("outside the image root").all()
    # on request they are kept
    assert main(["collection", "import", str(tmp_path / "list.csv"), "--format", "csv", "--root", str(root),
                 "--allow-outside-root", "-o", str(tmp_path / "c2")]) == 0
    assert len(Collection.load(tmp_path / "c2" / "collection.parquet")) == 4


def test_missing_file_reason_names_the_folder_problem(tmp_path, monkeypatch):
    _img(tmp_path / "a" / "x.jpg")
    (tmp_path / "f").write_text("a file, not a folder")
    r = PathResolver(tmp_path)
    assert r.resolve("a/missing.jpg") == (None, "file not found")  # the folder exists
    assert "no folder 'b'" in r.resolve("b/missing.jpg")[1]
    assert "'f' is not a folder" in r.resolve("f/x.jpg")[1]
    real_scandir = os.scandir

    def denied(path):  # an unreadable folder (chmod 000; the tests may run as root)
        if str(path).endswith("/a"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", denied)
    reason = PathResolver(tmp_path).resolve("a/missing.jpg")[1]
    assert "no folder" not in reason and "cannot be listed: Permission denied" in reason
