"""Bad score values in training data are one-line user errors naming the file and row."""

from __future__ import annotations

import numpy as np

from artmem.cli import main


def test_infinite_score_is_exit_2_naming_the_row(synthetic_collection, tmp_path, capsys):
    table = synthetic_collection.table.copy()
    table.loc[5, "true_memorability"] = np.inf
    coll = type(synthetic_collection)(table, synthetic_collection.root, "inf")
    coll.save(tmp_path / "c")
    rc = main(["memorability", "train", str(tmp_path / "c" / "collection.parquet"), "-o", str(tmp_path / "run"),
               "--score-column", "true_memorability", "--model", "tiny_test", "--method", "ridge",
               "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2, err
    assert len(err) == 1 and "row 5" in err[0] and table.at[5, "path"] in err[0] and "collection.parquet" in err[0]
