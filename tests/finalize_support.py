"""A finished job's shards with every case `finalize` must handle, and the final tables it must
write, computed here with pandas from the shard files alone (not with artmem's code).

The cases: a result for an image that left the collection after its shard ran (stale rows, in
two shards), an error of such an image, an image that failed and succeeded on a later run (its
error dropped), an image that failed twice (the latest error kept), an image that failed in a
shard with no result at all, the same image in two shards, a shard with an errors file only (not
finished: ignored), a gap in the shard ids, and paths that sort differently by bytes and by case
(accents, a quote, a private-use character, a character beyond the BMP).
"""

from __future__ import annotations

import json

import pandas as pd

from artmem.batch import storage
from artmem.batch.processors import BaseProcessor

PATHS = sorted({"B/x.jpg", "a/10.jpg", "a/9.jpg", "caf\u00e9.jpg", "caf\uefe9.jpg", "e/1.jpg", "é/1.jpg",
                "z'quote.jpg", "\U0001f3a8/art.png", "a b/c.jpg"} | {f"many/{i:03d}.jpg" for i in range(30)})
# Images removed from the collection after the shards ran: results in shards 0 and 3, an error in shard 2.
REMOVED = ["a/10.jpg", "many/025.jpg", "many/017.jpg"]


class ScoresStub(BaseProcessor):
    """A scores processor that only writes (finalize needs no model)."""

    kind = "scores"


def _scores(paths: list[str], base: float) -> pd.DataFrame:
    return pd.DataFrame({"path": paths, "score": [base + i / 100 for i in range(len(paths))]})


def write_finished_shards(out) -> None:
    """The shards of an interrupted-and-resumed job under `out` (a folder or an fsspec URL),
    written against PATHS (the collection before REMOVED left it)."""
    import pyarrow as pa

    from artmem.batch.job import shard_errors_file, write_shard_files

    p = PATHS
    write_shard_files(out, "scores", 0, _scores(p[0:10], 0.1), [(p[10], "broken 0"), ("many/017.jpg", "gone 0")])
    write_shard_files(out, "scores", 1, _scores(p[10:18], 0.2), [(p[20], "bad 1"), (p[21], "bad 1")])
    write_shard_files(out, "scores", 2, pd.DataFrame({"path": pd.Series([], dtype="str")}),
                      [(p[20], "bad 2"), (p[22], "bad 2"), ("many/017.jpg", "gone 2")])
    write_shard_files(out, "scores", 3, _scores(p[23:32] + [p[5]], 0.3), [])
    # shard 4 was interrupted after writing its errors (no results file: not finished)
    storage.write_parquet(pa.table({"path": [p[19]], "reason": ["unfinished"]}), shard_errors_file(out, "scores", 4))
    write_shard_files(out, "scores", 6, _scores(p[32:], 0.6), [(p[18], "bad 6")])


def write_collection(folder, paths: list[str]):
    """collection.parquet (a path column, rows in the given order, duplicates kept) in `folder`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"path": pa.array(paths, pa.string())}), folder / "collection.parquet")
    return folder / "collection.parquet"


def current_paths() -> list[str]:
    """The collection once REMOVED left it: shuffled, one path twice (the job's images are its
    distinct paths)."""
    kept = [p for p in PATHS if p not in REMOVED]
    return kept[::-1] + [kept[3]]


def _shards(out) -> dict[int, pd.DataFrame]:
    names = storage.list_names(storage.join(out, "shards"))
    return {int(n[7:12]): storage.read_parquet(storage.join(out, "shards", n)).to_pandas()
            for n in names if n.startswith("scores-") and not n.endswith(".errors.parquet")}


def reference(out) -> dict:
    """What `finalize` must produce from the shards now under `out`, for the collection
    `current_paths()`: {"shards": {id: rows kept, in file order}, "merged": table, "errors": frame,
    "n_total": int}."""
    wanted = set(current_paths())
    shards = {sid: df[df["path"].isin(wanted)].reset_index(drop=True) for sid, df in sorted(_shards(out).items())}
    errs = []
    for sid in shards:
        f = storage.join(out, "shards", f"scores-{sid:05d}.errors.parquet")
        if storage.exists(f):
            errs.append(storage.read_parquet(f).to_pandas())
    errs = pd.concat(errs, ignore_index=True)
    errs = errs[errs["path"].isin(wanted)].drop_duplicates("path", keep="last")
    have = set(pd.concat(list(shards.values()))["path"])
    errs = errs[~errs["path"].isin(have)].sort_values("path").reset_index(drop=True)
    merged = pd.concat(list(shards.values()), ignore_index=True).drop_duplicates("path", keep="first")
    merged = merged.sort_values("path").reset_index(drop=True)
    return {"shards": shards, "merged": merged, "errors": errs, "n_total": len(wanted)}


def read_manifest(out) -> dict:
    return json.loads(storage.read_text(storage.join(out, "scores.dataset.json")))
