"""Each dataset reader on a fixture that reproduces its on-disk format and traps."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from artmem.cli import main
from artmem.data.collection import Collection
from artmem.data.readers import import_collection
from artmem.data.readers.common import ascii_key
from artmem.data.readers.wga import url_to_path
from artmem.data.readers.wikiart import read_split_file
from artmem.errors import ArtmemError


def test_wikiart_reads_all_quirks(wikiart_dir):
    coll, errors = import_collection("wikiart", wikiart_dir)
    t = coll.table.set_index("path")
    # mojibake repaired to the files on disk (lossy `joaquãn` and UTF-8-as-Latin-1 `josÃ©`)
    assert "Impressionism/joaquín-sorolla_beach-at-valencia.jpg" in t.index
    assert "Realism/josé-maria-velasco_valley.jpg" in t.index
    # the class is called Art_Nouveau, the folder Art_Nouveau_Modern (both CSV spellings resolve)
    assert t.loc["Art_Nouveau_Modern/gustav-klimt_the-kiss.jpg", "style"] == "Art_Nouveau"
    assert t.loc["Art_Nouveau_Modern/alphonse-mucha_job.jpg", "style"] == "Art_Nouveau"
    # labels merged per image across the style, genre and artist files (artist: header + blank + ,,)
    mucha = t.loc["Art_Nouveau_Modern/alphonse-mucha_job.jpg"]
    assert (mucha["genre"], mucha["artist"]) == ("portrait", "alphonse-mucha")
    assert (mucha["style_split"], mucha["genre_split"], mucha["artist_split"]) == ("train", "val", "train")
    assert mucha["split"] == "train"
    monet = t.loc["Impressionism/claude-monet_water-lilies.jpg"]
    assert (monet["style"], monet["genre"], monet["artist"], monet["split"]) == ("Impressionism", "landscape", "claude-monet", "val")
    assert pd.isna(t.loc["Realism/gustave-courbet_the-stone-breakers.jpg", "artist"])
    assert len(coll) == 8
    assert sorted(errors["path"]) == ["Realism/missing-painter_lost-work.jpg", "Realism/ãnknown-painter_ghost.jpg"]
    assert all(errors["reason"].str.contains("not found"))
    assert all(os.path.isfile(p) for p in coll.abs_paths())


def test_wikiart_split_file_parser_handles_header_blank_and_double_commas(tmp_path):
    f = tmp_path / "artist_train"
    f.write_text("(Path to image),, (Groundtruth class)\n\nRealism/a_b.jpg,,22\nX/c,d.jpg,,3\n")
    assert read_split_file(f) == [("Realism/a_b.jpg", 22), ("X/c,d.jpg", 3)]


def test_ascii_key_matches_mojibake_variants():
    good = "joaquín-sorolla"
    assert ascii_key(good) == ascii_key("joaquãn-sorolla") == ascii_key(good.encode().decode("latin-1"))


def test_wga_catalog(wga_dir):
    coll, errors = import_collection("wga", wga_dir / "catalog.csv")
    assert coll.paths == ["art/a/aachen/j_couple.jpg", "art/b/bosch/garden.jpg"]  # sculpture filtered out
    row = coll.table.iloc[0]
    assert row["born_died"] == "(b. 1552, Köln, d. 1615, Praha)"  # ISO-8859-1 decoded
    assert (row["author"], row["type"], row["school"], row["timeframe"]) == ("AACHEN, Hans von", "genre", "German", "1601-1650")
    assert errors["path"].tolist() == ["art/g/ghost/lost.jpg"]
    every = import_collection("wga", wga_dir, form="all").collection
    assert "art/d/durer/statue.jpg" in every.paths
    assert every.table.set_index("path").loc["art/d/durer/statue.jpg", "author"] == "DÜRER, Albrecht"


def test_wga_url_to_path():
    assert url_to_path("https://www.wga.hu/html/a/aachen/j_couple.html") == "art/a/aachen/j_couple.jpg"
    assert url_to_path("http://www.wga.hu/html/b/bosch/1/garden.html") == "art/b/bosch/1/garden.jpg"
    assert url_to_path("not a url") is None


def test_pandora_tree(pandora_dir):
    coll, errors = import_collection("pandora", pandora_dir.parent)  # parent of Pandora_18k works too
    t = coll.table
    assert coll.paths == ["01_Byzantin_Iconography/Andrei_Rublev/trinity.jpg",
                          "01_Byzantin_Iconography/Theophanes/icon_1.jpg", "18_PopArt/Andy_Warhol/marilyn.png"]
    assert t["movement"].tolist() == ["Byzantin_Iconography", "Byzantin_Iconography", "PopArt"]
    assert t["movement_id"].tolist() == [1, 1, 18]
    assert t["artist"].tolist() == ["Andrei_Rublev", "Theophanes", "Andy_Warhol"]
    assert errors.empty


def test_lamem_splits(lamem_dir):
    coll, errors = import_collection("lamem", lamem_dir, split_id=2)
    t = coll.table
    assert list(t.columns) == ["path", "score", "split"]
    assert t["split"].value_counts().to_dict() == {"train": 5, "test": 2, "val": 1}
    assert t["path"].str.match(r"images/\d{8}\.jpg").all()
    first = t.iloc[0]
    n = int(first["path"][7:15])
    assert first["score"] == pytest.approx(0.5 + n / 20)
    assert errors["path"].tolist() == ["images/00099999.jpg"]
    other = import_collection("lamem", lamem_dir, split_id=3).collection
    assert other.table.set_index("path")["split"].to_dict() != t.set_index("path")["split"].to_dict()
    with pytest.raises(ArtmemError, match="1..5"):
        import_collection("lamem", lamem_dir, split_id=6)


def test_memcat_with_and_without_fa(memcat_dir):
    fa, errors = import_collection("memcat", memcat_dir)
    assert fa.paths == ["animal/bear/000000003481.jpg", "landscape/mountain/000000000724.jpg"]
    assert fa.table["score"].tolist() == pytest.approx([(55 - 4) / 98, 0.7])
    assert errors["path"].tolist() == ["animal/bear/000000009999.jpg"]
    nofa = import_collection("memcat", memcat_dir, score="no-fa").collection
    assert nofa.table["score"].tolist() == pytest.approx([55 / 98, 0.8])
    # a CSV without the published score columns: computed from H, FA and n_resp
    csv = memcat_dir / "memcat_image_data.csv"
    df = pd.read_csv(csv).drop(columns=["memorability_w_fa_correction", "memorability_wo_fa_correction"])
    df.to_csv(csv, index=False)
    computed = import_collection("memcat", csv).collection
    assert computed.table["score"].tolist() == pytest.approx([(55 - 4) / 98, (80 - 10) / 100])


def test_csv_reader_named_columns_and_missing_rows(tmp_path, make_image):
    for name in ("a.jpg", "sub/b.png"):
        make_image(tmp_path / "imgs" / name)
    csv = tmp_path / "meta.csv"
    csv.write_text("file;painter;year;notes\na.jpg;Titian;1540;x\nsub\\b.png;Bellini;1500;y\nlost.jpg;Nobody;1600;z\n")
    coll, errors = import_collection("csv", csv, root=tmp_path / "imgs", path_column="file", label_columns="painter,year")
    assert list(coll.table.columns) == ["path", "painter", "year"]
    assert coll.paths == ["a.jpg", "sub/b.png"]
    assert coll.table["year"].tolist() == [1540, 1500]
    assert errors.to_dict("records") == [{"path": "lost.jpg", "reason": "file not found"}]
    with pytest.raises(ArtmemError, match="no column 'path'"):
        import_collection("csv", csv, root=tmp_path / "imgs")


def test_cli_import_writes_collection_and_errors(wga_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["collection", "import", "--format", "wga", str(wga_dir), "-o", str(out), "--csv"]) == 0
    printed = capsys.readouterr().out.split()
    assert str(out / "collection.parquet") in printed and str(out / "errors.parquet") in printed
    coll = Collection.load(out / "collection.parquet")
    assert len(coll) == 2 and (out / "collection.csv").exists()
    assert pd.read_parquet(out / "errors.parquet")["path"].tolist() == ["art/g/ghost/lost.jpg"]


def test_cli_import_user_errors_exit_2(tmp_path, capsys):
    assert main(["collection", "import", "--format", "lamem", str(tmp_path / "nope"), "-o", str(tmp_path / "o")]) == 2
    assert "no splits/ folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # argparse: unknown format
        main(["collection", "import", "--format", "bogus", str(tmp_path), "-o", str(tmp_path / "o")])
    assert exc.value.code == 2


def test_cli_import_folder_with_levels_and_info(pandora_dir, tmp_path, capsys):
    out = tmp_path / "f"
    assert main(["collection", "import", "--format", "folder", str(pandora_dir), "-o", str(out),
                 "--levels", "movement,artist"]) == 0
    coll = Collection.load(out / "collection.parquet")
    assert list(coll.table.columns) == ["path", "movement", "artist"] and len(coll) == 3
    assert pd.read_parquet(out / "errors.parquet").empty
    capsys.readouterr()
    assert main(["collection", "info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "images: 3" in info and "column movement" in info
