"""Web Gallery of Art `catalog.csv`: semicolon-separated, ISO-8859-1, one row per artwork.

The image of a row is found from its URL: `https://www.wga.hu/html/a/aachen/j_couple.html` ->
`art/a/aachen/j_couple.jpg` under the local mirror (`--root`, default the catalog's folder).
`FORM` filters the kind of artwork (default `painting`, as in Cetinic 2018). Columns are the
header fields lower-cased (`author`, `born_died`, `title`, `date`, `technique`, `location`, `url`,
`form`, `type`, `school`, `timeframe`).
"""

from __future__ import annotations

import csv
import io
import logging
import re
from pathlib import Path

import pandas as pd

from artmem.data.readers.common import PathResolver, ReadResult, decode_text, finish, keep_existing
from artmem.errors import CollectionError

logger = logging.getLogger(__name__)

EXPECTED = ["AUTHOR", "BORN-DIED", "TITLE", "DATE", "TECHNIQUE", "LOCATION", "URL", "FORM", "TYPE", "SCHOOL", "TIMEFRAME"]
_URL_RE = re.compile(r"^(?:https?://[^/]+)?/?html/(.+)\.html?$", re.IGNORECASE)


def url_to_path(url: str) -> str | None:
    """WGA page URL -> local image path (`art/...jpg`), None when the URL is not a WGA page."""
    m = _URL_RE.match(str(url).strip())
    return f"art/{m.group(1)}.jpg" if m else None


def read_wga(source: str | Path, root: str | Path | None = None, form: str | None = "painting",
             encoding: str | None = None, **_ignored) -> ReadResult:
    """Read `catalog.csv`.

    Args:
        source: catalog.csv, or the folder holding it.
        root: the local mirror, holding `art/` (default: the catalog's folder).
        form: comma-separated FORM values to keep (`painting`), or `all`.
        encoding: default ISO-8859-1 (UTF-8 is detected when the file is valid UTF-8).
    """
    source = Path(source)
    catalog = source / "catalog.csv" if source.is_dir() else source
    if not catalog.is_file():
        raise CollectionError(catalog, "no such file (expected the WGA catalog.csv)")
    data = catalog.read_bytes()
    text = decode_text(data, encoding)  # UTF-8 only if the whole file is valid UTF-8, else ISO-8859-1
    reader = csv.reader(io.StringIO(text), delimiter=";")
    try:
        header = [h.strip().upper() for h in next(reader)]
    except StopIteration:
        raise CollectionError(catalog, "empty file") from None
    if "URL" not in header:
        raise CollectionError(catalog, f"no URL column in header {';'.join(header)} (is this the WGA catalog.csv?)")
    rows, bad = [], 0
    for rec in reader:
        if not any(f.strip() for f in rec):
            continue
        if len(rec) > len(header):  # a stray ';' inside a field: glue the extra parts to the title
            extra = len(rec) - len(header)
            t = header.index("TITLE") if "TITLE" in header else 2
            rec = rec[:t] + [";".join(rec[t:t + extra + 1])] + rec[t + extra + 1:]
        if len(rec) < len(header):
            rec = rec + [""] * (len(header) - len(rec))
            bad += 1
        rows.append([f.strip() for f in rec])
    if bad:
        logger.warning("%s: %d rows had fewer fields than the header", catalog, bad)
    names = [h.lower().replace("-", "_").replace(" ", "_") for h in header]
    df = pd.DataFrame(rows, columns=names).replace("", pd.NA)
    n_all = len(df)
    if form and form.lower() != "all" and "form" in df.columns:
        wanted = {f.strip().lower() for f in form.split(",")}
        df = df[df["form"].fillna("").str.lower().isin(wanted)]
        logger.info("wga: %d of %d rows with FORM in %s", len(df), n_all, sorted(wanted))
    paths = df["url"].map(lambda u: url_to_path(u) if isinstance(u, str) else None)
    errors = pd.DataFrame({"path": df.loc[paths.isna(), "url"].fillna("").astype(str),
                           "reason": "URL is not a WGA page (…/html/….html)"})
    df = df[paths.notna()].copy()
    df.insert(0, "path", paths[paths.notna()])
    df = df.drop_duplicates("path")
    root = Path(root) if root else catalog.parent
    good, missing = keep_existing(df, root, PathResolver(root))
    if len(missing) and not (root / "art").is_dir():
        logger.warning("wga: %s has no art/ folder; point --root at the mirror holding art/", root)
    for c in ("type", "school", "timeframe", "form", "author"):
        if c in good.columns:
            good[c] = good[c].astype("str")
    meta = {"format": "wga", "source": str(catalog), "form": form}
    return finish(good, root, "wga", meta, pd.concat([errors, missing], ignore_index=True))
