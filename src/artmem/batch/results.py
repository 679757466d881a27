"""Reading and writing batch-job outputs: scores, feature vectors and error tables.

Layout of a job folder (what `artmem score` / `artmem extract` write and every other part reads):

    OUT/scores.parquet     path, score                  (score jobs)
    OUT/features.parquet   path, embedding (float32 list) (feature jobs)
    OUT/<kind>.dataset.json  instead of a merged table: the shard dataset (artmem.batch.dataset)
    OUT/features.json      {"model", "layer", "dim", "count", ...}
    OUT/errors.parquet     path, reason                 (unreadable images; may be empty)
    OUT/job.json           the job spec (model, layer, shard size, ...) used to resume safely
    OUT/shards/<kind>-<NNNNN>.parquet and <kind>-<NNNNN>.errors.parquet  (incremental results)

OUT is a folder or an fsspec URL (s3://..., every file goes through `artmem.batch.storage`).
`read_features` / `read_scores` accept the folder or the table file (Parquet or CSV), read a
merged table or a shard dataset alike, and fall back to the finished shards of an interrupted job.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from artmem.batch import storage
from artmem.batch.storage import Location
from artmem.errors import ArtmemError

logger = logging.getLogger(__name__)

SCORES = "scores"
FEATURES = "features"
ERRORS = "errors"
SHARDS_DIR = "shards"
JOB_FILE = "job.json"
TABLE_SUFFIXES = (".parquet", ".csv")


@dataclass
class FeatureSet:
    """Feature vectors keyed by image path.

    Attributes:
        paths: image paths (relative POSIX paths of the collection), one per row of `vectors`.
        vectors: float32 array (N, D).
        meta: the job's features.json ({model, layer, dim, count, ...}).
    """

    paths: list[str]
    vectors: np.ndarray
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.vectors = np.asarray(self.vectors, dtype=np.float32)
        if self.vectors.ndim != 2:
            raise ValueError(f"vectors must be 2-D (N, D), got shape {self.vectors.shape}")
        if len(self.paths) != len(self.vectors):
            raise ValueError(f"{len(self.paths)} paths but {len(self.vectors)} vectors")

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def normalized(self) -> np.ndarray:
        """Rows scaled to unit L2 norm (zero rows stay zero)."""
        norms = np.linalg.norm(self.vectors, axis=1, keepdims=True)
        return self.vectors / np.maximum(norms, 1e-12)

    def to_frame(self) -> pd.DataFrame:
        """DataFrame[path, embedding] with one float32 array per row."""
        return pd.DataFrame({"path": list(self.paths), "embedding": list(self.vectors)})

    def select(self, paths: list[str]) -> FeatureSet:
        """The rows of `paths`, in that order (KeyError for a path that has no vector)."""
        index = {p: i for i, p in enumerate(self.paths)}
        missing = [p for p in paths if p not in index]
        if missing:
            raise KeyError(f"no features for {len(missing)} path(s), e.g. {missing[0]!r}")
        rows = [index[p] for p in paths]
        return FeatureSet(list(paths), self.vectors[rows], dict(self.meta))


# ----------------------------------------------------------------------------------- writing


def atomic_write_parquet(df: pd.DataFrame, path: Location) -> Location:
    """Write Parquet atomically (temporary file + rename locally, one object PUT on an object
    store), so a kill never leaves a partial file under `path`. Returns the location written."""
    return storage.write_parquet(frame_to_arrow(df), path)


def frame_to_arrow(df: pd.DataFrame):
    """A results DataFrame as an Arrow table; an `embedding` column becomes a fixed-size float32
    list (the schema every artmem features table has)."""
    import pyarrow as pa

    if "embedding" not in df.columns:
        return pa.Table.from_pandas(df, preserve_index=False)
    vectors = stack_vectors(df["embedding"])
    dim = vectors.shape[1] if vectors.ndim == 2 else 0
    flat = pa.array(vectors.reshape(-1), type=pa.float32())
    emb = pa.FixedSizeListArray.from_arrays(flat, dim) if dim else pa.array([], pa.list_(pa.float32(), 0))
    cols = {c: pa.array(df[c].tolist()) for c in df.columns if c != "embedding"}
    cols["embedding"] = emb
    return pa.table(cols)


def stack_vectors(values) -> np.ndarray:
    values = list(values)
    if not values:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([np.asarray(v, dtype=np.float32).reshape(-1) for v in values])


def write_json(obj: dict, path: Location) -> Location:
    return storage.write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def read_json(path: Location):
    return json.loads(storage.read_text(path))


def errors_frame(rows: list[tuple[str, str]] | pd.DataFrame | None = None) -> pd.DataFrame:
    """An errors table (`path`, `reason`), empty when there are none."""
    if isinstance(rows, pd.DataFrame):
        return rows[["path", "reason"]].reset_index(drop=True)
    rows = rows or []
    return pd.DataFrame(
        {"path": pd.Series([r[0] for r in rows], dtype="str"),
         "reason": pd.Series([r[1] for r in rows], dtype="str")}
    )


def write_errors(out: Location, errors: pd.DataFrame, csv: bool = False) -> list[Location]:
    """OUT/errors.parquet (+ .csv): one row per unreadable image, always written (maybe empty)."""
    paths = [atomic_write_parquet(errors_frame(errors), storage.join(out, f"{ERRORS}.parquet"))]
    if csv:
        paths.append(storage.write_csv(errors, storage.join(out, f"{ERRORS}.csv")))
    return paths


def write_scores(out: Location, scores: pd.DataFrame, csv: bool = False) -> list[Location]:
    """OUT/scores.parquet (+ .csv) with columns `path`, `score` (extra columns are kept)."""
    missing = {"path", "score"} - set(scores.columns)
    if missing:
        raise ValueError(f"scores table lacks column(s) {sorted(missing)}")
    cols = ["path", "score"] + [c for c in scores.columns if c not in ("path", "score")]
    df = scores[cols].reset_index(drop=True)
    paths = [atomic_write_parquet(df, storage.join(out, f"{SCORES}.parquet"))]
    if csv:
        paths.append(storage.write_csv(df, storage.join(out, f"{SCORES}.csv")))
    return paths


def write_features(
    out: Location,
    paths: list[str],
    vectors: np.ndarray,
    meta: dict | None = None,
    csv: bool = False,
) -> list[Location]:
    """OUT/features.parquet (`path`, `embedding` fixed-size float32 list) + OUT/features.json.

    `meta` should name at least `model` and `layer`; `dim` and `count` are filled in.
    With `csv`, OUT/features.csv holds `path` and the vector as space-separated numbers.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 and len(paths) == 0:
        vectors = vectors.reshape(0, 0)
    if len(paths) != len(vectors):
        raise ValueError(f"{len(paths)} paths but {len(vectors)} vectors")
    df = pd.DataFrame({"path": list(paths), "embedding": list(vectors)})
    written = [atomic_write_parquet(df, storage.join(out, f"{FEATURES}.parquet")),
               write_features_meta(out, meta, int(vectors.shape[1]) if vectors.ndim == 2 else 0, len(paths))]
    if csv:
        text = pd.DataFrame(
            {"path": list(paths), "embedding": [" ".join(f"{x:.8g}" for x in v) for v in vectors]}
        )
        written.append(storage.write_csv(text, storage.join(out, f"{FEATURES}.csv")))
    return written


def write_features_meta(out: Location, meta: dict | None, dim: int, count: int) -> Location:
    """OUT/features.json: `meta` (model, layer, ...) with `dim` and `count` filled in."""
    meta = {"model": None, "layer": None, **(meta or {})}
    meta["dim"], meta["count"] = int(dim), int(count)
    return write_json(meta, storage.join(out, f"{FEATURES}.json"))


# ----------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class JobRecord:
    """A job folder's OUT/job.json, as `artmem.batch.job` writes it.

    Attributes:
        kind: result name ("scores", "features", "measures", ...).
        processor: the processor's `spec()` (model, layer, ... for model jobs).
        raw: the whole record.
    """

    kind: str | None
    processor: dict
    raw: dict

    @property
    def model(self) -> str | None:
        return self.processor.get("model")

    @property
    def layer(self) -> str | None:
        return self.processor.get("layer")


def read_job_record(folder: Location) -> JobRecord | None:
    """The job record of a job folder (or of the folder holding a result file); None without one.

    The one reader of job.json: the results readers, the web explorer and the report use it.

    Raises:
        ArtmemError: job.json exists but is not a JSON object.
    """
    path = storage.join(job_folder(folder), JOB_FILE)
    if not storage.exists(path):
        return None
    try:
        raw = read_json(path)
    except (OSError, ValueError) as exc:
        raise ArtmemError(f"{path}: not a readable job record ({exc})") from exc
    if not isinstance(raw, dict):
        raise ArtmemError(f"{path}: not a job record (a JSON object is expected)")
    proc = raw.get("processor")
    return JobRecord(raw.get("kind"), dict(proc) if isinstance(proc, dict) else {}, raw)


def job_folder(file_or_dir: Location) -> Location:
    """The job folder of a folder or of a table file in it."""
    loc = storage.location(file_or_dir)
    if storage.suffix(loc) in TABLE_SUFFIXES and not storage.is_dir(loc):
        return storage.parent(loc)
    return loc


def _read_arrow(path: Location, columns: list[str] | None = None):
    try:
        return storage.read_parquet(path, columns=columns)
    except Exception as exc:
        raise ArtmemError(f"{path}: cannot read Parquet ({exc})") from exc


def arrow_vectors(table, path) -> np.ndarray:
    import pyarrow as pa

    col = table.column("embedding").combine_chunks()
    n = len(col)
    if n == 0:
        return np.zeros((0, 0), dtype=np.float32)
    if col.null_count:
        raise ArtmemError(f"{path}: {col.null_count} row(s) have no embedding")
    if pa.types.is_fixed_size_list(col.type):
        dim = col.type.list_size
        flat = col.flatten().to_numpy(zero_copy_only=False)
        return flat.astype(np.float32, copy=False).reshape(n, dim)
    lengths = np.diff(col.offsets.to_numpy())
    if len(set(lengths.tolist())) != 1:
        raise ArtmemError(f"{path}: embeddings have different lengths {sorted(set(lengths.tolist()))[:5]}")
    flat = col.flatten().to_numpy(zero_copy_only=False)
    return flat.astype(np.float32, copy=False).reshape(n, int(lengths[0]))


def read_features(file_or_dir: Location) -> FeatureSet:
    """Load feature vectors from a job folder (merged file or shard dataset; local or a URL),
    features.parquet or features.csv.

    Returns:
        FeatureSet(paths, vectors float32 (N, D), meta from features.json when present); rows
        sorted by path when read from shards (a merged file is sorted already).
    """
    src = resolve_results(file_or_dir, FEATURES)
    paths: list[str] = []
    blocks: list[np.ndarray] = []
    tables = storage.map_files(_read_arrow, src.files) if src.sharded else [None]
    for f, table in zip(src.files, tables, strict=True):
        if storage.suffix(f) == ".csv":
            df = storage.read_csv(f)
            if not {"path", "embedding"} <= set(df.columns):
                raise ArtmemError(f"{f}: needs columns path, embedding")
            vec = np.stack([np.asarray(str(s).split(), dtype=np.float32) for s in df["embedding"]]) if len(df) else np.zeros((0, 0), np.float32)
            paths += df["path"].astype(str).tolist()
        else:
            table = table if table is not None else _read_arrow(f)
            if table.num_rows == 0 and src.sharded:
                continue  # a finished shard whose images all failed has no embedding column
            if not {"path", "embedding"} <= set(table.column_names):
                raise ArtmemError(f"{f}: needs columns path, embedding (got {table.column_names})")
            vec = arrow_vectors(table, f)
            paths += [str(x) for x in table.column("path").to_pylist()]
        if len(vec):
            blocks.append(vec)
    dims = {b.shape[1] for b in blocks}
    if len(dims) > 1:
        raise ArtmemError(f"{file_or_dir}: shards have different dimensions {sorted(dims)}")
    vectors = np.concatenate(blocks) if blocks else np.zeros((0, 0), dtype=np.float32)
    if src.sharded and len(paths) > 1:
        order = np.argsort(np.asarray(paths, dtype=object), kind="stable")
        paths, vectors = [paths[i] for i in order], vectors[order]
    meta = read_features_meta(src.folder)
    meta.setdefault("dim", int(vectors.shape[1]) if vectors.ndim == 2 else 0)
    meta["count"] = len(paths)
    return FeatureSet(paths, vectors, meta)


def read_features_meta(folder: Location) -> dict:
    """OUT/features.json ({model, layer, dim, count, ...}); for an interrupted job (no
    features.json yet) the model and layer of its job record; {} without either."""
    meta_file = storage.join(folder, f"{FEATURES}.json")
    if storage.exists(meta_file):
        return read_json(meta_file)
    if (job := read_job_record(folder)) is not None:
        return {"model": job.model, "layer": job.layer}
    return {}


def read_scores(file_or_dir: Location, columns: list[str] | None = None) -> pd.DataFrame:
    """Load memorability scores (DataFrame with at least `path`, `score`) from a job folder (merged
    file or shard dataset; local or a URL) or a table file. `columns`: read only these (path and
    score are always read). Rows from shards are sorted by path, as a merged file is."""
    src = resolve_results(file_or_dir, SCORES)
    want = None if columns is None else list(dict.fromkeys(["path", "score", *columns]))
    frames = []
    tables = storage.map_files(_read_arrow, src.files) if src.sharded else [None]
    for f, table in zip(src.files, tables, strict=True):
        if storage.suffix(f) == ".csv":
            df = storage.read_csv(f)
        else:
            table = table if table is not None else _read_arrow(f)
            if table.num_rows == 0 and src.sharded:
                continue
            df = (table.select([c for c in want if c in table.column_names]) if want else table).to_pandas()
        if not {"path", "score"} <= set(df.columns):
            raise ArtmemError(f"{f}: needs columns path, score (got {list(df.columns)})")
        frames.append(df)
    if not frames:
        frames = [pd.DataFrame({"path": pd.Series([], dtype="str"), "score": pd.Series([], dtype="float64")})]
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    df["path"] = df["path"].astype(str)
    df["score"] = df["score"].astype("float64")
    if src.sharded:
        df = df.sort_values("path", kind="stable")
    return df.reset_index(drop=True)


def read_errors(file_or_dir: Location) -> pd.DataFrame:
    """The errors table (`path`, `reason`) of a job folder; empty if the job recorded none."""
    loc = storage.location(file_or_dir)
    if storage.suffix(loc) in TABLE_SUFFIXES and not storage.is_dir(loc):
        if not storage.exists(loc):
            raise ArtmemError(f"{loc}: no such file")
        return errors_frame(storage.read_csv(loc) if storage.suffix(loc) == ".csv" else _read_arrow(loc).to_pandas())
    merged = storage.join(loc, f"{ERRORS}.parquet")
    if storage.exists(merged):
        return errors_frame(_read_arrow(merged).to_pandas())
    shard_dir = storage.join(loc, SHARDS_DIR)
    parts = [storage.join(shard_dir, n) for n in storage.list_names(shard_dir) if n.endswith(".errors.parquet")]
    frames = [_read_arrow(f).to_pandas() for f in parts]
    return errors_frame(pd.concat(frames, ignore_index=True)) if frames else errors_frame()


# re-exported: the layout of results (merged file or shard dataset) and the lazy readers
from artmem.batch.dataset import (  # noqa: E402
    DatasetSource,
    has_results,
    iter_feature_batches,
    open_dataset,
    resolve_results,
)

__all__ = [
    "DatasetSource", "FeatureSet", "JobRecord", "arrow_vectors", "atomic_write_parquet", "errors_frame",
    "has_results", "iter_feature_batches", "job_folder", "open_dataset", "read_errors", "read_features",
    "read_features_meta", "read_job_record", "read_scores", "resolve_results", "stack_vectors",
    "write_errors", "write_features", "write_features_meta", "write_json", "write_scores",
]
