"""Image-size profiling as in Yu, Jin & Hsu: sizes read from file headers (no full decode).

Writes under OUT: `sizes.parquet` (path, width, height, aspect, megapixels, format, mode,
file_bytes, ok, reason), `summary.parquet/.csv` (count, mean, sd, min, percentiles, max of width,
height, aspect ratio and megapixels), `label_counts.parquet/.csv` (column, value, count),
`size_scatter.png`, `width_hist.png`, `height_hist.png`, `aspect_hist.png`, `counts_<label>.png`.
"""

from __future__ import annotations

import io
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from artmem.data.collection import Collection, open_collection
from artmem.errors import CollectionError
from artmem.io import ensure_out_dir, write_table

logger = logging.getLogger(__name__)

_ROTATED = {5, 6, 7, 8}  # EXIF orientations that swap width and height


def header_info(source: str) -> tuple:
    """(width, height, format, mode, file_bytes, ok, reason) from the header only."""
    from PIL import Image, UnidentifiedImageError

    import artmem.data.images  # noqa: F401  (switches Pillow's global size check off, once)

    try:
        if "://" in source and not source.startswith("file://"):
            from artmem.data.images import read_bytes

            data = read_bytes(source)
            fh, nbytes = io.BytesIO(data), len(data)
        else:
            nbytes = os.path.getsize(source)
            if nbytes == 0:
                return -1, -1, "", "", 0, False, "file is empty (0 bytes)"
            fh = open(source, "rb")  # noqa: SIM115 - closed below
        # profiling reads sizes only; bombs are the check's job (artmem.data.images, imported
        # above, leaves Pillow's global size check off for the whole process)
        with fh, Image.open(fh) as img:
            w, h = img.size
            try:  # EXIF lives in the header of these formats (PNG's may follow the pixels)
                if img.format in ("JPEG", "MPO", "TIFF", "WEBP") and img.getexif().get(0x0112) in _ROTATED:
                    w, h = h, w
            except Exception:  # broken EXIF: keep the stored size
                pass
            return w, h, img.format or "", img.mode, nbytes, True, ""
    except FileNotFoundError:
        return -1, -1, "", "", -1, False, "file not found"
    except UnidentifiedImageError:
        return -1, -1, "", "", -1, False, "not an image (unrecognised format)"
    except Exception as exc:
        return -1, -1, "", "", -1, False, f"cannot read header ({type(exc).__name__}: {exc})"


def _chunk(sources: list[str]) -> list[tuple]:
    return [header_info(s) for s in sources]


def image_sizes(collection, workers: int | None = None, progress: bool = True) -> pd.DataFrame:
    """Header sizes of every image: path, width, height, aspect (w/h), megapixels, format, mode, ..."""
    from tqdm.auto import tqdm

    coll: Collection = open_collection(collection)
    sources = coll.abs_paths()
    workers = min(8, os.cpu_count() or 1) if workers is None else workers
    chunks = [sources[i:i + 64] for i in range(0, len(sources), 64)]
    rows: list[tuple] = []
    with tqdm(total=len(sources), unit="img", desc="profiling", disable=not progress) as bar:
        if workers <= 1 or len(sources) < 2000:  # header reads are fast; processes pay off only at scale
            for c in chunks:
                rows.extend(_chunk(c))
                bar.update(len(c))
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for c, res in zip(chunks, pool.map(_chunk, chunks), strict=False):
                    rows.extend(res)
                    bar.update(len(c))
    df = pd.DataFrame(rows, columns=["width", "height", "format", "mode", "file_bytes", "ok", "reason"])
    df.insert(0, "path", coll.paths)
    good = df["ok"]
    df["aspect"] = np.where(good, df["width"] / df["height"].where(df["height"] > 0, np.nan), np.nan)
    df["megapixels"] = np.where(good, df["width"] * df["height"] / 1e6, np.nan)
    for c in ("format", "mode", "reason"):
        df[c] = df[c].astype("str")
    return df[["path", "width", "height", "aspect", "megapixels", "format", "mode", "file_bytes", "ok", "reason"]]


def size_summary(sizes: pd.DataFrame) -> pd.DataFrame:
    """One row per measure (width, height, aspect, megapixels): count, mean, sd, min, p5..p95, max."""
    ok = sizes[sizes["ok"]]
    rows = []
    for col in ("width", "height", "aspect", "megapixels"):
        v = ok[col].astype(float).to_numpy()
        if len(v) == 0:
            rows.append({"measure": col, "count": 0})
            continue
        q = np.percentile(v, [5, 25, 50, 75, 95])
        rows.append({"measure": col, "count": len(v), "mean": v.mean(), "sd": v.std(ddof=1) if len(v) > 1 else 0.0,
                     "min": v.min(), "p5": q[0], "p25": q[1], "median": q[2], "p75": q[3], "p95": q[4], "max": v.max()})
    out = pd.DataFrame(rows)
    n_land = int((ok["aspect"] > 1.05).sum())
    n_port = int((ok["aspect"] < 1 / 1.05).sum())
    extra = pd.DataFrame([
        {"measure": "landscape (w/h > 1.05)", "count": n_land},
        {"measure": "portrait (w/h < 0.95)", "count": n_port},
        {"measure": "square-ish", "count": len(ok) - n_land - n_port},
        {"measure": "unreadable header", "count": int((~sizes["ok"]).sum())},
    ])
    return pd.concat([out, extra], ignore_index=True)


def label_counts(coll: Collection, max_values: int = 200) -> pd.DataFrame:
    """Images per value of each label column (columns with at most `max_values` distinct values)."""
    frames = []
    for col in coll.label_columns:
        vc = coll.table[col].value_counts(dropna=False)
        if len(vc) > max_values or len(vc) == len(coll) and len(coll) > 20:
            continue  # an id-like column, not a category
        if coll.table[col].dropna().astype(str).str.len().mean() > 40:
            continue  # free text (titles, licences, techniques), not a category
        frames.append(pd.DataFrame({"column": col, "value": vc.index.astype(str), "count": vc.to_numpy()}))
    if not frames:
        return pd.DataFrame({"column": pd.Series([], dtype="str"), "value": pd.Series([], dtype="str"),
                             "count": pd.Series([], dtype="int64")})
    return pd.concat(frames, ignore_index=True)


def _hist(ax, values, xlabel, bins=50, log_hint=False):
    ax.hist(values, bins=bins, color="#4477aa", edgecolor="white", linewidth=0.3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("number of images")


def plot_profile(sizes: pd.DataFrame, out: Path, title: str = "") -> list[Path]:
    """The four figures of Yu/Jin/Hsu (scatter, width, height, aspect histograms)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = sizes[sizes["ok"]]
    written = []
    n = len(ok)
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.scatter(ok["width"], ok["height"], s=6 if n > 2000 else 14, alpha=0.35 if n > 2000 else 0.7, color="#4477aa",
               edgecolors="none")
    lim = max(ok["width"].max(), ok["height"].max()) * 1.05 if n else 1
    ax.plot([0, lim], [0, lim], color="grey", lw=0.8, ls="--", label="square")
    ax.set_xlim(0, lim)
    ax.set_ylim(0, lim)
    ax.set_xlabel("width (pixels)")
    ax.set_ylabel("height (pixels)")
    ax.set_title(f"Image sizes{' - ' + title if title else ''} (n = {n})")
    ax.legend(loc="upper left", frameon=False)
    fig.tight_layout()
    written.append(out / "size_scatter.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)
    for col, label in (("width", "width (pixels)"), ("height", "height (pixels)")):
        values = ok[col].to_numpy()
        zoom = n >= 50 and values.size and values.max() > 3 * np.percentile(values, 90)
        fig, axes = plt.subplots(1, 2 if zoom else 1, figsize=(10 if zoom else 6, 4), squeeze=False)
        _hist(axes[0, 0], values, label, bins=min(60, max(10, n // 3)))
        axes[0, 0].set_title(f"Image {col} (n = {n}, median {np.median(values) if n else 0:.0f})")
        if zoom:  # as Yu/Jin/Hsu: the bulk of the images without the few very large ones
            cut = np.percentile(values, 95)
            _hist(axes[0, 1], values[values <= cut], label, bins=50)
            axes[0, 1].set_title(f"{col} <= 95th percentile ({cut:.0f} px)")
        fig.tight_layout()
        written.append(out / f"{col}_hist.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    aspect = ok["aspect"].to_numpy()
    _hist(ax, np.clip(aspect, 0, 4), "aspect ratio (width / height, clipped at 4)", bins=min(60, max(10, n // 3)))
    ax.axvline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_title(f"Aspect ratio (n = {n}, median {np.median(aspect) if n else 0:.2f})")
    fig.tight_layout()
    written.append(out / "aspect_hist.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)
    return written


def plot_label_counts(counts: pd.DataFrame, out: Path, max_bars: int = 40) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    written = []
    for col, part in counts.groupby("column", sort=False):
        part = part.sort_values("count", ascending=False).head(max_bars)
        fig, ax = plt.subplots(figsize=(7, max(2.0, 0.9 + 0.28 * len(part))))  # title and axis fit with 1 bar
        ax.barh(part["value"][::-1], part["count"][::-1], color="#66aa55")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # counts: no 0.5 ticks
        ax.set_xlabel("number of images")
        ax.set_ylabel(col)
        ax.set_title(f"Images per {col}")
        fig.tight_layout()
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(col))
        written.append(out / f"counts_{safe}.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    return written


def profile_collection(collection, out: str | Path, csv: bool = False, workers: int | None = None,
                       progress: bool = True) -> list[Path]:
    """Profile image sizes and label counts; returns the written paths."""
    coll = open_collection(collection)
    if len(coll) == 0:
        raise CollectionError(coll.meta.get("source") or collection, "the collection has no images to profile")
    out = ensure_out_dir(out)
    sizes = image_sizes(coll, workers=workers, progress=progress)
    written = write_table(sizes, out, "sizes", csv=csv)
    summary = size_summary(sizes)
    written += write_table(summary, out, "summary", csv=True)
    counts = label_counts(coll)
    written += write_table(counts, out, "label_counts", csv=True)
    bad = sizes.loc[~sizes["ok"], ["path", "reason"]]
    if len(bad):
        written += write_table(bad.reset_index(drop=True), out, "errors", csv=csv)
        logger.warning("%d of %d images have an unreadable header (see %s)", len(bad), len(sizes), out / "errors.parquet")
    if sizes["ok"].any():
        written += plot_profile(sizes, out, coll.name)
    written += plot_label_counts(counts, out)
    ok = sizes[sizes["ok"]]
    if len(ok):
        logger.info("profile: %d images, median %dx%d px, median aspect %.2f", len(ok), ok["width"].median(),
                    ok["height"].median(), ok["aspect"].median())
    return written
