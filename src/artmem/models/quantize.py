"""int8 versions of the cached ONNX exports: ONNX Runtime static quantization (QDQ format,
per-channel int8 weights, uint8 activations with MinMax ranges), calibrated on real images.

Residual networks (the ResNet-152 trunk of ResMem: scores, features, maps) get a mixed recipe,
chosen by measuring which quantization steps move the scores most (bench/README.md, "int8
recipes"): the residual stream is carried in fp32 - each block's skip input is the previous
block's fp32 sum, not its int8 copy (which the block's convolutions still read) - and the
convolutions reading the image run in fp32; every other convolution runs in int8. Plain int8
re-quantizes the stream after each of the 50 blocks, and that accumulated noise is the largest
part of what swapped the ranks of similar images. Keeping also the convolutions that feed the sums
in fp32 reaches Spearman 0.99 but leaves int8 no faster than fp32 (bench/README.md).

Static quantization needs the range of every activation; it is measured by running the fp32 model
on a calibration sample. By default that sample is drawn from the user's own collection
(`calibration_paths`: a seeded sample of up to 32 images), else from the real photos and paintings
that ship inside installed packages (`artmem.data.samples.real_photos`). The int8 file is cached
beside its fp32 export, keyed by the export (model, outputs, weights) and by the calibration
images' content, so a different sample gives a different file and an identical one is reused.

Fidelity is measured, not assumed: `measure_fidelity` compares fp32 and int8 outputs on images
that were *not* used for calibration (Spearman/Pearson of scores, max/mean absolute difference;
mean cosine and top-10 neighbour overlap of feature vectors). It is measured once per int8 file
and recorded in the `.json` beside it; `--precision auto` uses int8 only when it passes
(`passes`), `--precision int8` warns loudly when it does not.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from artmem.errors import ArtmemError

logger = logging.getLogger(__name__)

CALIBRATION_IMAGES = 32
FIDELITY_IMAGES = 32
MIN_RANK_FIDELITY = 0.99  # Spearman(int8, fp32) of scores
MIN_COSINE = 0.99  # mean cosine(int8, fp32) of feature vectors
QUANT_RECIPE = "qdq-s8w-perchannel-u8a-minmax-v3-fp32stream"  # in the cache key: a new recipe re-quantizes


def calibration_paths(abs_paths: Sequence[str], n: int = CALIBRATION_IMAGES, seed: int = 0) -> list[str]:
    """A seeded sample of up to `n` images (sorted first, so the sample depends only on the set)."""
    paths = sorted(set(map(str, abs_paths)))
    if len(paths) <= n:
        return paths
    return sorted(random.Random(seed).sample(paths, n))


def split_calibration(abs_paths: Sequence[str], n_calib: int = CALIBRATION_IMAGES,
                      n_check: int = FIDELITY_IMAGES, seed: int = 0) -> tuple[list[str], list[str]]:
    """Disjoint (calibration, fidelity-check) samples of a collection's images.

    A collection with fewer than n_calib + n_check images gives up to half to the check.
    """
    paths = sorted(set(map(str, abs_paths)))
    rng = random.Random(seed)
    shuffled = paths[:]
    rng.shuffle(shuffled)
    if len(shuffled) < n_calib + n_check:
        n_check = min(n_check, len(shuffled) // 2)
        n_calib = len(shuffled) - n_check
    return sorted(shuffled[:n_calib]), sorted(shuffled[n_calib:n_calib + n_check])


def bundled_calibration_paths() -> list[str]:
    """The real photos and paintings shipped inside installed packages (unraphael, skimage, sklearn)."""
    from artmem.data.samples import real_photos

    paths = sorted(str(p) for p in real_photos())
    if not paths:
        raise ArtmemError("no bundled calibration images (install unraphael or scikit-image), "
                          "or calibrate on a collection with --collection")
    return paths


def calibration_key(paths: Sequence[str]) -> str:
    """12 hex digits identifying a calibration sample by its images' bytes (not their names)."""
    h = hashlib.sha1(QUANT_RECIPE.encode())
    for p in sorted(map(str, paths)):
        try:
            h.update(hashlib.sha1(Path(p).read_bytes()).digest())
        except OSError as exc:
            raise ArtmemError(f"{p}: cannot read calibration image ({exc.strerror or exc})") from exc
    return h.hexdigest()[:12]


def int8_path_for(fp32_path: Path, calib_key: str) -> Path:
    fp32_path = Path(fp32_path)
    return fp32_path.with_name(f"{fp32_path.stem}.int8-{calib_key}.onnx")


def record_path(int8_path: Path) -> Path:
    return Path(int8_path).with_suffix(".json")


def read_record(int8_path: Path) -> dict:
    f = record_path(int8_path)
    return json.loads(f.read_text()) if f.exists() else {}


def write_record(int8_path: Path, record: dict) -> None:
    f = record_path(int8_path)
    tmp = f.with_name(f".{f.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=float) + "\n")
    os.replace(tmp, f)


class _BatchReader:
    """ONNX Runtime `CalibrationDataReader` over a list of input batches."""

    def __init__(self, batches: list[np.ndarray], input_name: str = "image"):
        self._it = iter(batches)
        self.input_name = input_name

    def get_next(self):
        b = next(self._it, None)
        return None if b is None else {self.input_name: np.ascontiguousarray(b, dtype=np.float32)}

    def rewind(self):  # some ONNX Runtime versions call it
        pass


def residual_adds(model) -> list:
    """The Add nodes of residual blocks, in an fp32 or a QDQ graph: both inputs computed, one by a
    Conv (seen through any QuantizeLinear/DequantizeLinear in between)."""
    prod = {o: n for n in model.graph.node for o in n.output}

    def origin(t):
        n = prod.get(t)
        while n is not None and n.op_type in ("DequantizeLinear", "QuantizeLinear"):
            n = prod.get(n.input[0])
        return n

    return [n for n in model.graph.node if n.op_type == "Add" and len(n.input) == 2
            and all(origin(i) is not None for i in n.input)
            and any(origin(i).op_type == "Conv" for i in n.input)]


def fp32_nodes(model) -> list[str]:
    """Names of the nodes a residual network keeps in fp32: the convolutions reading the image."""
    inputs = {i.name for i in model.graph.input}
    return [n.name for n in model.graph.node if n.op_type == "Conv" and n.input and n.input[0] in inputs]


def fp32_residual_stream(model) -> int:
    """Rewire a QDQ model so each residual sum reads the stream in fp32; returns the inputs changed.

    A residual Add's skip operand is DequantizeLinear(QuantizeLinear(T)), T the previous block's
    sum (QDQ dropped the Relu after it, the uint8 quantizer clamping at zero instead). The Add reads
    Relu(T) in fp32 instead, while the next block's convolutions still read the int8 copy; the
    branch operand (an int8 convolution's output) is left as it is. Q/DQ pairs left without a
    reader are removed.
    """
    from onnx import helper

    g = model.graph
    prod = {o: n for n in g.node for o in n.output}

    def quantized_source(t):
        dq = prod.get(t)
        q = prod.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        return q.input[0] if q is not None and q.op_type == "QuantizeLinear" else None

    relus, changed = {}, 0
    for add in residual_adds(model):
        for i, t in enumerate(add.input):
            src = quantized_source(t)
            if src is None or src not in prod:
                continue
            if prod[src].op_type == "Add":
                if src not in relus:
                    relus[src] = helper.make_node("Relu", [src], [f"{src}_fp32_relu"], name=f"{prod[src].name}_fp32_relu")
                add.input[i] = relus[src].output[0]
            elif prod[src].op_type == "Relu":  # a stream whose Relu QDQ kept
                add.input[i] = src
            else:
                continue
            changed += 1
    for src, relu in relus.items():
        g.node.insert(list(g.node).index(prod[src]) + 1, relu)
    while True:
        read = {i for n in g.node for i in n.input} | {o.name for o in g.output}
        dead = [n for n in g.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                and not any(o in read for o in n.output)]
        if not dead:
            break
        for n in dead:
            g.node.remove(n)
    read = {i for n in g.node for i in n.input}
    for init in [i for i in g.initializer if i.name not in read]:  # their scales and zero points
        g.initializer.remove(init)
    return changed


def quantize_onnx(fp32_path: Path, int8_path: Path, batches: list[np.ndarray]) -> Path:
    """Static QDQ quantization of `fp32_path` calibrated on `batches` -> `int8_path` (atomic).

    Residual networks get the mixed recipe of the module docstring (image convolutions and the
    residual stream in fp32); other graphs are quantized throughout.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    int8_path = Path(int8_path)
    tmp_dir = int8_path.parent
    pre = tmp_dir / f".{int8_path.stem}.{os.getpid()}.pre.onnx"
    tmp = tmp_dir / f".{int8_path.stem}.{os.getpid()}.tmp.onnx"

    class Reader(_BatchReader, CalibrationDataReader):
        pass

    try:
        # folds constants and BatchNorm and infers shapes, so every Conv/Gemm gets its ranges
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        graph = onnx.load(str(pre), load_external_data=False)
        residual = bool(residual_adds(graph))
        exclude = fp32_nodes(graph) if residual else []
        del graph
        quantize_static(
            str(pre), str(tmp), Reader(batches), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=exclude,
            # symmetric int8 weights; activations keep their zero point (ReLU outputs are >= 0)
            extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
        )
        if residual:
            model = onnx.load(str(tmp))
            n = fp32_residual_stream(model)
            logger.info("int8: %d image convolution(s) and %d residual skip input(s) kept in fp32", len(exclude), n)
            onnx.save(model, str(tmp))
            del model
        os.replace(tmp, int8_path)
    except ArtmemError:
        raise
    except Exception as exc:
        raise ArtmemError(f"int8 quantization of {fp32_path.name} failed ({type(exc).__name__}: {exc}); "
                          "use --precision fp32") from exc
    finally:
        pre.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
        for extra in tmp_dir.glob(f".{int8_path.stem}.{os.getpid()}*"):
            extra.unlink(missing_ok=True)
    return int8_path


def ensure_int8(fp32_path: Path, calib: Sequence[str], batches_fn: Callable[[list[str]], list[np.ndarray]],
                source: str) -> Path:
    """The cached int8 model of `fp32_path` calibrated on images `calib`; quantized on first use.

    Args:
        calib: absolute paths of the calibration images.
        batches_fn: preprocessed input batches of these images (called only when quantizing).
        source: where the calibration sample came from, for the record ("collection NAME", "bundled").
    """
    key = calibration_key(calib)
    path = int8_path_for(fp32_path, key)
    if path.exists():
        return path
    logger.info("calibrating int8 on %d image(s) (%s) and quantizing (once) -> %s", len(calib), source, path)
    quantize_onnx(fp32_path, path, batches_fn(list(calib)))
    write_record(path, {"fp32": Path(fp32_path).name, "recipe": QUANT_RECIPE, "calibration_source": source,
                        "calibration_images": [Path(p).name for p in sorted(calib)]})
    return path


# ------------------------------------------------------------------------------ fidelity


def score_fidelity(fp32: np.ndarray, int8: np.ndarray) -> dict:
    """Agreement of int8 with fp32 scores: Spearman, Pearson, max and mean absolute difference."""
    from scipy.stats import pearsonr, spearmanr

    a = np.asarray(fp32, dtype=np.float64).ravel()
    b = np.asarray(int8, dtype=np.float64).ravel()
    out = {"n": len(a), "max_abs_diff": float(np.max(np.abs(a - b))) if len(a) else float("nan"),
           "mean_abs_diff": float(np.mean(np.abs(a - b))) if len(a) else float("nan")}
    if len(a) >= 3 and np.ptp(a) > 0 and np.ptp(b) > 0:
        out["spearman"] = float(spearmanr(a, b).statistic)
        out["pearson"] = float(pearsonr(a, b).statistic)
    else:
        out["spearman"] = out["pearson"] = float("nan")
    return out


def neighbour_overlap(a: np.ndarray, b: np.ndarray, k: int = 10) -> float:
    """Mean fraction of each item's k nearest neighbours (cosine, itself excluded) shared by a and b."""
    def knn(x):
        x = np.asarray(x, dtype=np.float64)
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        sim = x @ x.T
        np.fill_diagonal(sim, -np.inf)
        return np.argsort(-sim, axis=1, kind="stable")[:, :k]

    n = len(a)
    k = min(k, n - 1)
    if k < 1:
        return float("nan")
    na, nb = knn(a)[:, :k], knn(b)[:, :k]
    return float(np.mean([len(set(r) & set(s)) / k for r, s in zip(na, nb, strict=True)]))


def feature_fidelity(fp32: np.ndarray, int8: np.ndarray, k: int = 10) -> dict:
    """Agreement of int8 with fp32 feature vectors: mean/min cosine and top-k neighbour overlap."""
    a = np.asarray(fp32, dtype=np.float64).reshape(len(fp32), -1)
    b = np.asarray(int8, dtype=np.float64).reshape(len(int8), -1)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    cos = (a * b).sum(1) / np.maximum(na * nb, 1e-12)
    cos = np.where((na == 0) & (nb == 0), 1.0, cos)
    return {"n": len(a), "mean_cosine": float(cos.mean()), "min_cosine": float(cos.min()),
            f"top{k}_overlap": neighbour_overlap(a, b, k), "k": min(k, len(a) - 1)}


def passes(fidelity: dict) -> bool:
    """Whether a fidelity measurement is good enough for `--precision auto` to use int8."""
    ok = True
    if "spearman" in fidelity:
        ok &= bool(fidelity["spearman"] >= MIN_RANK_FIDELITY)
    if "mean_cosine" in fidelity:
        ok &= bool(fidelity["mean_cosine"] >= MIN_COSINE)
    return ok and fidelity.get("n", 0) >= 3


def measure_fidelity(fp32_session, int8_session, batches: list[np.ndarray], kinds: Sequence[str],
                     names: Sequence[str] | None = None) -> dict:
    """{output name: fidelity} of int8 against fp32 on `batches`; `kinds[i]` is "score" (values
    compared by rank and difference) or "features" (vectors compared by cosine and neighbours)."""
    if not batches:
        raise ArtmemError("no readable image to measure int8 fidelity on")
    outs32 = [fp32_session.run(None, {"image": b}) for b in batches]
    outs8 = [int8_session.run(None, {"image": b}) for b in batches]
    result = {}
    for i, kind in enumerate(kinds):
        # scores (and map grids, whose size varies with the input) are compared value by value
        shape = (lambda y: y.ravel()) if kind == "score" else (lambda y: y.reshape(len(y), -1))
        a = np.concatenate([shape(o[i]) for o in outs32])
        b = np.concatenate([shape(o[i]) for o in outs8])
        result[names[i] if names else f"out{i}"] = {"kind": kind, **(score_fidelity(a, b) if kind == "score" else feature_fidelity(a, b))}
    return result


def fidelity_passes(fidelity: dict) -> bool:
    return bool(fidelity) and all(passes(v) for v in fidelity.values())


def describe_fidelity(fidelity: dict) -> str:
    """One line per output: the figures `check-precision` prints."""
    lines = []
    for name, f in fidelity.items():
        if f.get("kind") == "score":
            lines.append(f"{name} (score, {f['n']} values): Spearman {f['spearman']:.4f}, Pearson {f['pearson']:.4f}, "
                         f"max |diff| {f['max_abs_diff']:.4f}, mean |diff| {f['mean_abs_diff']:.4f}")
        else:
            k = f.get("k", 10)
            lines.append(f"{name} (features, {f['n']} images): mean cosine {f['mean_cosine']:.4f} "
                         f"(min {f['min_cosine']:.4f}), top-{k} neighbour overlap {f.get(f'top{k}_overlap', float('nan')):.3f}")
    return "\n".join(lines)


def precision_file(fp32_path: Path, precision: str, *, calib: Sequence[str], check: Sequence[str],
                   batches_fn: Callable[[list[str]], list[np.ndarray]], source: str, kinds: Sequence[str],
                   names: Sequence[str] | None = None, threads: int | None = None) -> tuple[Path, str, dict]:
    """(ONNX file to run, precision used, int8 record) for `precision` fp32 | int8 | auto.

    int8 quantizes on first use (cached). auto: int8 when its fidelity, measured once on the
    `check` images (disjoint from `calib`) and stored in the int8 record, passes
    (`fidelity_passes`); else fp32, with a warning that prints the figures.
    """
    from artmem.models.onnx_export import check_precision_name, make_session

    check_precision_name(precision)
    if precision == "fp32":
        return Path(fp32_path), "fp32", {}
    int8 = ensure_int8(fp32_path, calib, batches_fn, source)
    record = read_record(int8)
    fid = record.get("fidelity")
    if fid is None:
        logger.info("measuring int8 fidelity on %d image(s) not used for calibration (once)", len(check))
        fid = measure_fidelity(make_session(fp32_path, threads), make_session(int8, threads),
                               batches_fn(list(check)), kinds, names)
        record.update(fidelity=fid, fidelity_images=[Path(p).name for p in sorted(check)])
        write_record(int8, record)
    good = fidelity_passes(fid)
    if precision == "int8":
        if not good:
            logger.warning("WARNING: int8 fidelity is below the bar (Spearman >= %.2f, cosine >= %.2f) on %d "
                           "image(s) not used for calibration; scores may rank differently from fp32:\n%s",
                           MIN_RANK_FIDELITY, MIN_COSINE, len(check), describe_fidelity(fid))
        return int8, "int8", record
    if good:
        return int8, "int8", record
    logger.warning("--precision auto: int8 fidelity below the bar (Spearman >= %.2f, cosine >= %.2f); using fp32\n%s",
                   MIN_RANK_FIDELITY, MIN_COSINE, describe_fidelity(fid))
    return Path(fp32_path), "fp32", record


MIN_COLLECTION_FOR_CALIBRATION = 8


def calibration_sets(abs_paths: Sequence[str] | None, name: str = "collection") -> tuple[list[str], list[str], str]:
    """(calibration images, fidelity-check images, source label): a seeded disjoint split of the
    collection's local images (not URLs), or of the bundled real images when it has fewer than 8."""
    paths = [p for p in (abs_paths or []) if "://" not in str(p)]
    if len(paths) >= MIN_COLLECTION_FOR_CALIBRATION:
        calib, check = split_calibration(paths)
        return calib, check, f"{name} ({len(calib)} of {len(set(paths))} images)"
    calib, check = split_calibration(bundled_calibration_paths(), n_calib=12, n_check=12)
    return calib, check, f"bundled real images ({len(calib)})"


def image_batches(paths: Sequence[str], load: Callable[[str], np.ndarray], batch_size: int = 8) -> list[np.ndarray]:
    """Preprocessed float32 batches of `paths` via `load(path) -> (C, H, W)`; unreadable images
    are skipped (logged), as in a batch job."""
    items = []
    for p in paths:
        try:
            x = load(p)
        except Exception as exc:  # one bad image must not stop calibration
            logger.warning("%s: skipped for calibration (%s)", p, exc)
            continue
        items.append(np.asarray(x, dtype=np.float32))
    return [np.stack(items[i:i + batch_size]) for i in range(0, len(items), batch_size)]
