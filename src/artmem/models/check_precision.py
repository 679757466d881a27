"""`artmem models check-precision MODEL --collection C`: how closely int8 follows fp32 on your images.

The int8 model checked is the one a job over the same collection uses (same calibration sample);
the comparison runs on other images of the collection (never the calibration ones), so the
figures are what a user of `--precision int8` gets on unseen images of that collection.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass

from artmem.errors import ArtmemError

logger = logging.getLogger(__name__)


@dataclass
class PrecisionCheck:
    model: str
    layer: str | None
    calibration: str
    n_images: int
    fidelity: dict
    fp32_img_s: float
    int8_img_s: float

    @property
    def passed(self) -> bool:
        from artmem.models.quantize import fidelity_passes

        return fidelity_passes(self.fidelity)

    def describe(self) -> str:
        from artmem.models.quantize import MIN_COSINE, MIN_RANK_FIDELITY, describe_fidelity

        text = describe_fidelity(self.fidelity)
        verdict = (f"PASS: int8 keeps rank fidelity >= {MIN_RANK_FIDELITY} and cosine >= {MIN_COSINE}"
                   if self.passed else
                   f"FAIL: int8 is below the bar (Spearman >= {MIN_RANK_FIDELITY}, cosine >= {MIN_COSINE}); "
                   "keep --precision fp32 for this model and collection")
        return (f"{self.model}: int8 vs fp32 on {self.n_images} image(s) not used for calibration "
                f"(calibrated on {self.calibration})\n{text}\n"
                f"forward speed: fp32 {self.fp32_img_s:.2f} img/s, int8 {self.int8_img_s:.2f} img/s "
                f"({self.int8_img_s / self.fp32_img_s:.2f}x)\n{verdict}")


def check_precision(model: str, collection, layer: str | None = None, images: int = 64,
                    threads: int | None = None, batch_size: int = 16) -> PrecisionCheck:
    """Compare the int8 and fp32 ONNX Runtime outputs of `model` on up to `images` images of
    `collection` that are not in its calibration sample (score models: score and default layer)."""
    from artmem.batch.processors import ModelProcessor
    from artmem.data.collection import open_collection
    from artmem.models.onnx_export import make_session
    from artmem.models.quantize import calibration_sets, image_batches, measure_fidelity

    coll = open_collection(collection)
    paths = coll.abs_paths()
    probe = ModelProcessor(model, "features", layer=layer)
    score_model = probe.cfg.output == "score"
    kwargs = dict(layer=layer, with_score=score_model, backend="onnx", threads=threads,
                  calibration=paths, calibration_name=f"collection {coll.name}")
    fp32 = ModelProcessor(model, "features", precision="fp32", **kwargs)
    int8 = ModelProcessor(model, "features", precision="int8", **kwargs)
    int8.resolved_precision("cpu")  # calibrates once (cached), as a job would
    fp32.resolved_precision("cpu")
    calib, _, source = calibration_sets(paths, f"collection {coll.name}")
    rest = sorted(set(paths) - set(calib))
    if len(rest) < 3:
        raise ArtmemError(f"{coll.name}: too few images beyond the {len(calib)} used for calibration "
                          "to measure fidelity (need 3 or more)")
    check = sorted(random.Random(1).sample(rest, min(images, len(rest))))
    batches = image_batches(check, lambda p: fp32.load(p).numpy(), batch_size)
    s32, s8 = make_session(fp32._resolved[0], threads), make_session(int8._resolved[0], threads)
    kinds = ["score" if c == "score" else "features" for c, _ in fp32.outputs()]
    fid = measure_fidelity(s32, s8, batches, kinds, [layer or "score" for _, layer in fp32.outputs()])
    speeds = []
    for sess in (s32, s8):
        sess.run(None, {"image": batches[0][:2]})  # warm-up
        t0 = time.perf_counter()
        n = sum(len(sess.run(None, {"image": b})[0]) for b in batches[:2])
        speeds.append(n / (time.perf_counter() - t0))
    n_images = int(sum(len(b) for b in batches))
    return PrecisionCheck(model, fp32.resolved_layer(), source, n_images, fid, speeds[0], speeds[1])
