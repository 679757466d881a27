"""Image loading that never takes a batch down: every failure becomes an `ImageReadError`.

EXIF orientation is applied; CMYK, palette, LA/RGBA, 16-bit and greyscale images become RGB
(transparent pixels composited on white, so a transparent background does not turn black);
truncated, empty, non-image and missing files, and images above the decompression-bomb limit,
raise `ImageReadError(path, reason)`.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from artmem.errors import ImageReadError

logger = logging.getLogger(__name__)

# Pillow's own default (~89.5 Mpx) warns and only errors at twice that; we refuse at the limit.
DEFAULT_MAX_PIXELS = 89_478_485
_max_pixels = DEFAULT_MAX_PIXELS

# artmem checks the decompression-bomb limit itself, per call (`decode_image(max_pixels=...)`), with
# a message naming the file. Pillow's own check reads one process-wide global; it is switched off
# once here, at import, and never swapped per call: swapping it raced between the web server's
# threads (one thread restoring the limit while another was decoding a trusted large image).
Image.MAX_IMAGE_PIXELS = None

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".jfif", ".ppm"}
)


def set_max_image_pixels(n: int | None) -> None:
    """Set the process default decompression-bomb limit in pixels (None restores the default).

    Set it once at start-up (a command's --max-pixels, a worker initialiser); code that needs
    another limit for one image passes `max_pixels` to `decode_image` / `load_image` instead.
    """
    global _max_pixels
    _max_pixels = DEFAULT_MAX_PIXELS if n is None else int(n)


def get_max_image_pixels() -> int:
    return _max_pixels


def is_image_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I", "I;16N"):
        # 16/32-bit greyscale: scale the real range to 8 bits instead of clipping at 255.
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if arr.max(initial=0) > 255 else 255.0
        arr = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min(initial=0)), float(arr.max(initial=1))
        arr = ((arr - lo) / (hi - lo or 1.0) * 255.0).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    # CMYK (Pillow inverts Adobe CMYK JPEGs correctly), YCbCr, L, 1, P without transparency, ...
    return img.convert("RGB")


def _check_size(path: str | Path, img: Image.Image, limit: int) -> None:
    w, h = img.size
    if w * h > limit:
        raise ImageReadError(
            path,
            f"image is {w}x{h} = {w * h:,} pixels, above the decompression-bomb limit of "
            f"{limit:,} (raise it with --max-pixels if the file is trusted)",
        )
    if w < 1 or h < 1:
        raise ImageReadError(path, f"image has no pixels ({w}x{h})")


def decode_image(data: bytes, path: str | Path = "<bytes>", draft_size: int | None = None,
                 max_pixels: int | None = None) -> Image.Image:
    """Decode image bytes to an RGB PIL image; raise ImageReadError with a reason otherwise.

    Args:
        data: the encoded file.
        path: named in error messages.
        draft_size: when set, JPEGs are decoded at the smallest DCT scale (1/2, 1/4, 1/8) that
            still keeps both sides >= this many pixels: 3-10x faster when the caller downsizes.
        max_pixels: decompression-bomb limit for this call (default: `get_max_image_pixels()`).
    """
    if not data:
        raise ImageReadError(path, "file is empty (0 bytes)")
    limit = _max_pixels if max_pixels is None else int(max_pixels)
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageReadError(path, "not an image (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        # e.g. a JPEG cut off inside its header: Pillow fails before identifying it
        raise ImageReadError(path, f"truncated or corrupt image header ({exc})") from None
    _check_size(path, img, limit)
    original = img.size
    if draft_size and img.format == "JPEG":
        try:
            img.draft("RGB", (int(draft_size), int(draft_size)))
        except Exception as exc:  # draft is an optimisation only
            logger.debug("%s: draft mode unavailable (%s)", path, exc)
    try:
        img.load()
    except OSError as exc:
        msg = str(exc)
        if "truncated" in msg.lower() or "image file is" in msg.lower():
            raise ImageReadError(path, f"truncated or corrupt image data ({msg})") from None
        raise ImageReadError(path, f"cannot decode image ({msg})") from None
    except (SyntaxError, ValueError) as exc:
        raise ImageReadError(path, f"corrupt image ({exc})") from None
    loaded = img.size
    try:
        img = ImageOps.exif_transpose(img)
    except Exception as exc:  # broken EXIF must not lose an otherwise good image
        logger.debug("%s: ignoring unreadable EXIF (%s)", path, exc)
    if img.size != loaded:  # rotated by 90/270 degrees
        original = (original[1], original[0])
    rgb = _to_rgb(img)
    rgb.info["original_size"] = original  # (w, h) before any draft reduction, as displayed
    return rgb


def read_bytes(path: str | Path) -> bytes:
    """Read a local path or an fsspec URL (s3://, gs://, http://...) into bytes."""
    spath = str(path)
    if "://" in spath and not spath.startswith("file://"):
        try:
            import fsspec

            with fsspec.open(spath, "rb") as fh:
                return fh.read()
        except FileNotFoundError:
            raise ImageReadError(path, "file not found") from None
        except Exception as exc:
            raise ImageReadError(path, f"cannot read ({type(exc).__name__}: {exc})") from None
    p = Path(spath[len("file://"):] if spath.startswith("file://") else spath)
    try:
        return p.read_bytes()
    except FileNotFoundError:
        raise ImageReadError(path, "file not found") from None
    except IsADirectoryError:
        raise ImageReadError(path, "is a folder, not an image file") from None
    except PermissionError:
        raise ImageReadError(path, "permission denied") from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot read ({exc})") from None


def load_image(path: str | Path, draft_size: int | None = None, max_pixels: int | None = None) -> Image.Image:
    """Load an image as RGB with EXIF orientation applied.

    Args:
        path: local path or fsspec URL.
        draft_size: see `decode_image` (fast reduced-size JPEG decoding before a downsize).
        max_pixels: decompression-bomb limit for this call (default: `get_max_image_pixels()`).

    Raises:
        ImageReadError: missing, empty, truncated, non-image or over-limit file, with the reason.
    """
    return decode_image(read_bytes(path), path, draft_size=draft_size, max_pixels=max_pixels)


def try_load_image(path: str | Path) -> tuple[Image.Image | None, str | None]:
    """Like `load_image` but returns (image, None) or (None, reason) for batch loops."""
    try:
        return load_image(path), None
    except ImageReadError as exc:
        return None, exc.reason
