"""Reading and writing batch-job outputs: scores, feature vectors and error tables.

Layout of a job folder (what `artmem score` / `artmem extract` write and every other part reads):

    OUT/scores.parquet     path, score                  (score jobs)
    OUT/features.parquet   path, embedding (float32 list) (feature jobs)
    OUT/features.json      {"model", "layer", "dim", "count", ...}
    OUT/errors.parquet     path, reason                 (unreadable images; may be empty)
    OUT/job.json           the job spec (model, layer, shard size, ...) used to resume safely
    OUT/shards/<kind>-<NNNNN>.parquet and <kind>-<NNNNN>.errors.parquet  (incremental results)

`read_features` / `read_scores` accept the folder or the table file (Parquet or CSV), and fall back
to the finished shards of an interrupted job when the merged table is not there yet.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from artmem.errors import ArtmemError

logger = logging.getLogger(__name__)

SCORES = "scores"
FEATURES = "features"
ERRORS = "errors"
SHARDS_DIR = "shards"
JOB_FILE = "job.json"


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


def atomic_write_parquet(df: pd.DataFrame, path: Path) -> Path:
    """Write Parquet to a temporary name then rename, so a kill never leaves a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if "embedding" in df.columns:
        _features_table_write(df, tmp)
    else:
        df.to_parquet(tmp, index=False)
    os.replace(tmp, path)
    return path


def _features_table_write(df: pd.DataFrame, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    vectors = stack_vectors(df["embedding"])
    dim = vectors.shape[1] if vectors.ndim == 2 else 0
    flat = pa.array(vectors.reshape(-1), type=pa.float32())
    emb = pa.FixedSizeListArray.from_arrays(flat, dim) if dim else pa.array([], pa.list_(pa.float32(), 0))
    cols = {c: pa.array(df[c].tolist()) for c in df.columns if c != "embedding"}
    cols["embedding"] = emb
    pq.write_table(pa.table(cols), path)


def stack_vectors(values) -> np.ndarray:
    values = list(values)
    if not values:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([np.asarray(v, dtype=np.float32).reshape(-1) for v in values])


def write_json(obj: dict, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)
    return path


def errors_frame(rows: list[tuple[str, str]] | pd.DataFrame | None = None) -> pd.DataFrame:
    """An errors table (`path`, `reason`), empty when there are none."""
    if isinstance(rows, pd.DataFrame):
        return rows[["path", "reason"]].reset_index(drop=True)
    rows = rows or []
    return pd.DataFrame(
        {"path": pd.Series([r[0] for r in rows], dtype="str"),
         "reason": pd.Series([r[1] for r in rows], dtype="str")}
    )


def write_errors(out: str | Path, errors: pd.DataFrame, csv: bool = False) -> list[Path]:
    """OUT/errors.parquet (+ .csv): one row per unreadable image, always written (maybe empty)."""
    out = Path(out)
    paths = [atomic_write_parquet(errors_frame(errors), out / f"{ERRORS}.parquet")]
    if csv:
        errors.to_csv(out / f"{ERRORS}.csv", index=False)
        paths.append(out / f"{ERRORS}.csv")
    return paths


def write_scores(out: str | Path, scores: pd.DataFrame, csv: bool = False) -> list[Path]:
    """OUT/scores.parquet (+ .csv) with columns `path`, `score` (extra columns are kept)."""
    out = Path(out)
    missing = {"path", "score"} - set(scores.columns)
    if missing:
        raise ValueError(f"scores table lacks column(s) {sorted(missing)}")
    cols = ["path", "score"] + [c for c in scores.columns if c not in ("path", "score")]
    df = scores[cols].reset_index(drop=True)
    paths = [atomic_write_parquet(df, out / f"{SCORES}.parquet")]
    if csv:
        df.to_csv(out / f"{SCORES}.csv", index=False)
        paths.append(out / f"{SCORES}.csv")
    return paths


def write_features(
    out: str | Path,
    paths: list[str],
    vectors: np.ndarray,
    meta: dict | None = None,
    csv: bool = False,
) -> list[Path]:
    """OUT/features.parquet (`path`, `embedding` fixed-size float32 list) + OUT/features.json.

    `meta` should name at least `model` and `layer`; `dim` and `count` are filled in.
    With `csv`, OUT/features.csv holds `path` and the vector as space-separated numbers.
    """
    out = Path(out)
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 and len(paths) == 0:
        vectors = vectors.reshape(0, 0)
    if len(paths) != len(vectors):
        raise ValueError(f"{len(paths)} paths but {len(vectors)} vectors")
    meta = {"model": None, "layer": None, **(meta or {})}
    meta["dim"] = int(vectors.shape[1]) if vectors.ndim == 2 else 0
    meta["count"] = len(paths)
    df = pd.DataFrame({"path": list(paths), "embedding": list(vectors)})
    written = [atomic_write_parquet(df, out / f"{FEATURES}.parquet"), write_json(meta, out / f"{FEATURES}.json")]
    if csv:
        text = pd.DataFrame(
            {"path": list(paths), "embedding": [" ".join(f"{x:.8g}" for x in v) for v in vectors]}
        )
        text.to_csv(out / f"{FEATURES}.csv", index=False)
        written.append(out / f"{FEATURES}.csv")
    return written


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


def read_job_record(folder: str | Path) -> JobRecord | None:
    """The job record of a job folder (or of the folder holding a result file); None without one.

    The one reader of job.json: the results readers, the web explorer and the report use it.

    Raises:
        ArtmemError: job.json exists but is not a JSON object.
    """
    base = Path(folder)
    if not base.is_dir():
        base = base.parent
    path = base / JOB_FILE
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ArtmemError(f"{path}: not a readable job record ({exc})") from exc
    if not isinstance(raw, dict):
        raise ArtmemError(f"{path}: not a job record (a JSON object is expected)")
    proc = raw.get("processor")
    return JobRecord(raw.get("kind"), dict(proc) if isinstance(proc, dict) else {}, raw)


def _resolve(file_or_dir: str | Path, kind: str) -> Path | list[Path]:
    """The table file of `kind` in a job folder (or the file itself), else the finished shards."""
    p = Path(file_or_dir)
    if p.is_dir():
        for name in (f"{kind}.parquet", f"{kind}.csv"):
            if (p / name).exists():
                return p / name
        shards = sorted((p / SHARDS_DIR).glob(f"{kind}-*[0-9].parquet")) if (p / SHARDS_DIR).is_dir() else []
        if shards:
            logger.warning("%s: no %s.parquet yet, reading %d finished shard(s)", p, kind, len(shards))
            return shards
        raise ArtmemError(f"{p}: no {kind}.parquet (run `artmem {'score' if kind == SCORES else 'extract'}` first)")
    if not p.exists():
        raise ArtmemError(f"{p}: no such file")
    return p


def _read_arrow(path: Path):
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path)
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


def read_features(file_or_dir: str | Path) -> FeatureSet:
    """Load feature vectors from a job folder, features.parquet or features.csv.

    Returns:
        FeatureSet(paths, vectors float32 (N, D), meta from features.json when present).
    """
    src = _resolve(file_or_dir, FEATURES)
    files = src if isinstance(src, list) else [src]
    paths: list[str] = []
    blocks: list[np.ndarray] = []
    for f in files:
        if f.suffix.lower() == ".csv":
            df = pd.read_csv(f)
            if not {"path", "embedding"} <= set(df.columns):
                raise ArtmemError(f"{f}: needs columns path, embedding")
            vec = np.stack([np.asarray(str(s).split(), dtype=np.float32) for s in df["embedding"]]) if len(df) else np.zeros((0, 0), np.float32)
            paths += df["path"].astype(str).tolist()
        else:
            table = _read_arrow(f)
            if table.num_rows == 0 and isinstance(src, list):
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
    meta: dict = {}
    base = Path(file_or_dir) if Path(file_or_dir).is_dir() else Path(file_or_dir).parent
    meta_file = base / f"{FEATURES}.json"
    if meta_file.exists():
        meta = json.loads(meta_file.read_text())
    elif (job := read_job_record(base)) is not None:  # an interrupted job: no features.json yet
        meta = {"model": job.model, "layer": job.layer}
    meta.setdefault("dim", int(vectors.shape[1]) if vectors.ndim == 2 else 0)
    meta["count"] = len(paths)
    return FeatureSet(paths, vectors, meta)


def read_scores(file_or_dir: str | Path) -> pd.DataFrame:
    """Load memorability scores (DataFrame with at least `path`, `score`) from a job folder or file."""
    src = _resolve(file_or_dir, SCORES)
    files = src if isinstance(src, list) else [src]
    frames = []
    for f in files:
        df = pd.read_csv(f) if f.suffix.lower() == ".csv" else _read_arrow(f).to_pandas()
        if not {"path", "score"} <= set(df.columns):
            raise ArtmemError(f"{f}: needs columns path, score (got {list(df.columns)})")
        frames.append(df)
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    df["path"] = df["path"].astype(str)
    df["score"] = df["score"].astype("float64")
    return df.reset_index(drop=True)


def read_errors(file_or_dir: str | Path) -> pd.DataFrame:
    """The errors table (`path`, `reason`) of a job folder; empty if the job recorded none."""
    p = Path(file_or_dir)
    if p.is_dir():
        if (p / f"{ERRORS}.parquet").exists():
            return errors_frame(pd.read_parquet(p / f"{ERRORS}.parquet"))
        shard_dir = p / SHARDS_DIR
        parts = sorted(shard_dir.glob("*.errors.parquet")) if shard_dir.is_dir() else []
        frames = [pd.read_parquet(f) for f in parts]
        return errors_frame(pd.concat(frames, ignore_index=True)) if frames else errors_frame()
    if not p.exists():
        raise ArtmemError(f"{p}: no such file")
    return errors_frame(pd.read_csv(p) if p.suffix.lower() == ".csv" else pd.read_parquet(p))


# ----------------------------------------------------------------------------------- lazy reading


def open_dataset(file_or_dir: str | Path, kind: str):
    """The scores or features of a job as one lazy `pyarrow.dataset.Dataset` (nothing read yet).

    The merged OUT/<kind>.parquet when it exists, else the finished shards of the job folder read
    as one dataset (shards with no rows, whose schema lacks the result columns, are left out).
    Unlike `read_scores`/`read_features` this never loads the table: scan it with
    `dataset.to_batches(columns=...)`, count with `count_rows()`, filter with expressions.
    Shards are not restricted to the collection's current images, as `finalize` does.

    Raises:
        ArtmemError: no such results, or a CSV table (lazy reading needs Parquet).
    """
    import pyarrow.dataset as pads
    import pyarrow.parquet as pq

    src = _resolve(file_or_dir, kind)
    files = src if isinstance(src, list) else [src]
    if any(f.suffix.lower() != ".parquet" for f in files):
        raise ArtmemError(f"{files[0]}: lazy reading needs Parquet, not {files[0].suffix}")
    if isinstance(src, list):
        files = [f for f in files if pq.read_metadata(f).num_rows > 0] or files[:1]
    try:
        return pads.dataset([str(f) for f in files], format="parquet")
    except Exception as exc:
        raise ArtmemError(f"{file_or_dir}: cannot open the {kind} as a dataset ({exc})") from exc


def iter_feature_batches(file_or_dir: str | Path, batch_rows: int = 65536):
    """Stream (paths, float32 vectors (n, D)) chunks of a job's features without loading them all."""
    import pyarrow as pa

    dataset = open_dataset(file_or_dir, FEATURES)
    for batch in dataset.to_batches(columns=["path", "embedding"], batch_size=batch_rows):
        if batch.num_rows:
            table = pa.Table.from_batches([batch])
            yield [str(p) for p in table.column("path").to_pylist()], arrow_vectors(table, file_or_dir)
