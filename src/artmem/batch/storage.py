"""Where batch jobs write: a local folder or an fsspec URL (`s3://bucket/prefix`, `gs://...`).

Every file a job writes or reads in its output folder goes through these functions, so the job,
its readers and both engines work the same on a local (or shared) filesystem and on an object
store. A location is a `Path` for a local folder (`file://` URLs become plain paths) and a URL
string otherwise.

Atomic writes: locally a temporary file is renamed over the final name; on an object store the
object is written in one PUT (or a multipart upload, which only becomes visible when completed), so
a reader never sees a partial object under its final name and no temporary object is left behind.

Credentials and endpoints are fsspec's: for S3 the usual AWS variables (`AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY`, `AWS_PROFILE`, `AWS_ENDPOINT_URL` for MinIO/Ceph/moto) or fsspec's
configuration (`FSSPEC_S3_ENDPOINT_URL`, `FSSPEC_S3_KEY`, ... or `~/.config/fsspec/s3.json`).
Listings are never cached: Ray workers and the driver write the same prefix, and a stale listing
would hide finished shards.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

Location = str | Path

# fsspec storage options for every remote filesystem artmem opens (listings change under us).
_REMOTE_OPTIONS = {"use_listings_cache": False}


def is_remote(loc: Location) -> bool:
    """True for an fsspec URL other than `file://` (s3://, gs://, memory://, ...)."""
    s = str(loc)
    return "://" in s and not s.startswith("file://")


def location(loc: Location) -> Location:
    """The canonical location: a Path for local folders (`file://` stripped), else the URL without
    a trailing slash."""
    s = str(loc)
    if s.startswith("file://"):
        return Path(s[len("file://"):])
    if is_remote(s):
        return s.rstrip("/")
    return Path(loc)


def join(base: Location, *names: str) -> Location:
    base = location(base)
    if isinstance(base, Path):
        return base.joinpath(*names)
    return "/".join([base, *(n.strip("/") for n in names)])


def name(loc: Location) -> str:
    return Path(loc).name if isinstance(location(loc), Path) else str(loc).rstrip("/").rsplit("/", 1)[-1]


def parent(loc: Location) -> Location:
    loc = location(loc)
    return loc.parent if isinstance(loc, Path) else loc.rsplit("/", 1)[0]


def suffix(loc: Location) -> str:
    n = name(loc)
    return n[n.rfind("."):].lower() if "." in n else ""


@contextlib.contextmanager
def reported(loc: Location, action: str):
    """Turn an object store's refusal (no such bucket, no credentials, access denied) into one
    ArtmemError line naming the location; local errors pass unchanged."""
    from artmem.errors import ArtmemError

    try:
        yield
    except ArtmemError:
        raise
    except Exception as exc:  # botocore, gcsfs and aiohttp raise their own types, not OSError
        if not is_remote(loc):
            raise
        raise ArtmemError(f"{loc}: cannot {action} ({type(exc).__name__}: {exc})") from exc


def filesystem(loc: Location):
    """(fsspec filesystem, path inside it) of a remote location.

    Raises:
        ArtmemError: the URL's protocol needs a package that is not installed (e.g. s3fs).
    """
    import fsspec

    from artmem.errors import ArtmemError

    try:
        return fsspec.core.url_to_fs(str(loc), **_REMOTE_OPTIONS)
    except ImportError as exc:
        raise ArtmemError(f"{loc}: {exc} (e.g. pip install s3fs for s3://, gcsfs for gs://)") from exc


def arrow_source(loc: Location):
    """(filesystem or None, path) for pyarrow readers: None and the local path for a local file."""
    loc = location(loc)
    if isinstance(loc, Path):
        return None, str(loc)
    return filesystem(loc)


def exists(loc: Location) -> bool:
    loc = location(loc)
    if isinstance(loc, Path):
        return loc.exists()
    fs, path = filesystem(loc)
    return fs.exists(path)


def is_dir(loc: Location) -> bool:
    """A local folder, or a remote prefix holding at least one object (object stores have no
    empty folders)."""
    loc = location(loc)
    if isinstance(loc, Path):
        return loc.is_dir()
    fs, path = filesystem(loc)
    return fs.isdir(path)


def list_names(folder: Location) -> list[str]:
    """Names of the files directly in `folder` (sorted); [] when it does not exist."""
    folder = location(folder)
    if isinstance(folder, Path):
        return sorted(f.name for f in folder.iterdir()) if folder.is_dir() else []
    fs, path = filesystem(folder)
    try:
        entries = fs.ls(path, detail=False)
    except FileNotFoundError:
        return []
    return sorted(str(e).rstrip("/").rsplit("/", 1)[-1] for e in entries)


def make_dirs(folder: Location) -> None:
    """Create a local folder (object stores need none)."""
    folder = location(folder)
    if isinstance(folder, Path):
        folder.mkdir(parents=True, exist_ok=True)


def write_bytes(loc: Location, data: bytes) -> Location:
    """Atomically write `data` at `loc` (temporary file + rename, or one object PUT)."""
    loc = location(loc)
    if isinstance(loc, Path):
        loc.parent.mkdir(parents=True, exist_ok=True)
        tmp = loc.with_name(f".{loc.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, loc)
        return loc
    fs, path = filesystem(loc)
    fs.pipe_file(path, data)
    return loc


def create_exclusive(loc: Location, data: bytes) -> bool:
    """Create `loc` only if nothing is there; False when it exists.

    Atomic locally (O_EXCL) and on S3 (a conditional PUT, If-None-Match); on other fsspec stores
    it is fsspec's check-then-write, which two writers racing within milliseconds can both pass.
    """
    loc = location(loc)
    if isinstance(loc, Path):
        loc.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(loc, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return True
    fs, path = filesystem(loc)
    try:
        fs.pipe_file(path, data, mode="create")
    except FileExistsError:
        return False
    except OSError as exc:  # s3fs maps HTTP 412 (the conditional PUT lost) to a generic OSError
        if "PreconditionFailed" in str(exc) or "412" in str(exc):
            return False
        raise
    return True


def read_bytes(loc: Location) -> bytes:
    loc = location(loc)
    if isinstance(loc, Path):
        return loc.read_bytes()
    fs, path = filesystem(loc)
    return fs.cat_file(path)


def write_text(loc: Location, text: str) -> Location:
    return write_bytes(loc, text.encode("utf-8"))


def read_text(loc: Location) -> str:
    return read_bytes(loc).decode("utf-8")


def modified_time(loc: Location) -> float:
    """Last-modified time (seconds since the epoch)."""
    loc = location(loc)
    if isinstance(loc, Path):
        return loc.stat().st_mtime
    fs, path = filesystem(loc)
    return fs.modified(path).timestamp()


def remove(loc: Location) -> None:
    """Delete one file or object; nothing happens when it is not there."""
    loc = location(loc)
    if isinstance(loc, Path):
        loc.unlink(missing_ok=True)
        return
    fs, path = filesystem(loc)
    try:
        fs.rm_file(path)
    except FileNotFoundError:
        pass


def remove_tree(folder: Location) -> None:
    """Delete a folder (or every object under a prefix); nothing happens when it is not there."""
    import shutil

    folder = location(folder)
    if isinstance(folder, Path):
        shutil.rmtree(folder, ignore_errors=True)
        return
    fs, path = filesystem(folder)
    try:
        fs.rm(path, recursive=True)
    except FileNotFoundError:
        pass


def rename(src: Location, dst: Location) -> None:
    """Move a file (atomic locally; a copy then a delete on an object store)."""
    src, dst = location(src), location(dst)
    if isinstance(src, Path):
        src.replace(dst)
        return
    fs, path = filesystem(src)
    fs.mv(path, filesystem(dst)[1])


def write_parquet(table, loc: Location, **options) -> Location:
    """Atomically write a pyarrow Table as Parquet (see `write_bytes`)."""
    import pyarrow.parquet as pq

    loc = location(loc)
    if isinstance(loc, Path):  # streamed to a temporary file, no copy in memory
        loc.parent.mkdir(parents=True, exist_ok=True)
        tmp = loc.with_name(f".{loc.name}.{os.getpid()}.tmp")
        pq.write_table(table, tmp, **options)
        os.replace(tmp, loc)
        return loc
    buf = io.BytesIO()
    pq.write_table(table, buf, **options)
    return write_bytes(loc, buf.getvalue())


def read_parquet(loc: Location, columns: list[str] | None = None):
    """A Parquet file as a pyarrow Table (only `columns` when given)."""
    import pyarrow.parquet as pq

    fs, path = arrow_source(loc)
    return pq.read_table(path, columns=columns, filesystem=fs)


def parquet_file(loc: Location):
    """A `pyarrow.parquet.ParquetFile` (metadata, row groups) of a local or remote file."""
    import pyarrow.parquet as pq

    fs, path = arrow_source(loc)
    if fs is None:
        return pq.ParquetFile(path)
    return pq.ParquetFile(fs.open(path, "rb"))


def map_files(fn, locs: list[Location], threads: int = 16):
    """`fn` over files, in order. On an object store `threads` requests are in flight at once
    (each costs a round trip, and a job has thousands of shards); local files are read one by
    one."""
    if not locs or not is_remote(locs[0]):
        return [fn(f) for f in locs]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(fn, locs))


def write_csv(df, loc: Location) -> Location:
    """A DataFrame as CSV, atomically."""
    return write_text(loc, df.to_csv(index=False))


def read_csv(loc: Location):
    import pandas as pd

    loc = location(loc)
    return pd.read_csv(loc if isinstance(loc, Path) else io.BytesIO(read_bytes(loc)))
