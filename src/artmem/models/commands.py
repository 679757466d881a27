"""`artmem models`: list the offline model zoo (or the named freezing scenarios)."""

from __future__ import annotations

import argparse
import importlib
import sys

from artmem.errors import ArtmemError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "models",
        help="list the offline model zoo (name, task, input, feature layers, licence, source)",
        description="List registered models. Every model loads offline from an installed package.",
    )
    p.add_argument("--pattern", default=None, help="glob over model names, e.g. 'resmem*'")
    p.add_argument("--scenarios", action="store_true",
                   help="print the named frozen-layer fine-tuning scenarios instead")
    p.add_argument("--verbose", "-v", action="store_true",
                   help="also print preprocessing, default layer and full licence text per model")
    p.set_defaults(func=run_models)
    sub = p.add_subparsers(dest="models_command", metavar="{check-precision}")
    c = sub.add_parser(
        "check-precision",
        help="int8 vs fp32 on your own images: Spearman/Pearson of scores, cosine and neighbours of features",
        description="Quantize MODEL to int8 as `--precision int8` would (calibrated on a sample of "
        "COLLECTION) and compare it with fp32 on other images of COLLECTION. Exit code 1 when the "
        "rank fidelity (Spearman) is below 0.99 or the mean feature cosine below 0.99.",
    )
    c.add_argument("model", help="registry name or trained checkpoint")
    c.add_argument("--collection", "-c", required=True, help="collection file or image folder")
    c.add_argument("--layer", default=None, help="feature layer (default: the model's default layer)")
    c.add_argument("--images", type=int, default=64, help="images compared (default 64, never calibration ones)")
    c.add_argument("--threads", type=int, default=None, help="compute threads (default: all cores)")
    c.set_defaults(func=run_check_precision)


def run_check_precision(args: argparse.Namespace) -> int:
    from artmem.models.check_precision import check_precision

    result = check_precision(args.model, args.collection, layer=args.layer, images=args.images, threads=args.threads)
    print(result.describe())
    return 0 if result.passed else 1


def models_table(pattern: str | None = None):
    """DataFrame with one row per registered model (name, task, output, input, layers, licence, source)."""
    import pandas as pd

    from artmem.models.registry import get_pretrained_cfg, list_models

    rows = []
    for name in list_models(pattern):
        cfg = get_pretrained_cfg(name)
        rows.append({
            "name": name,
            "task": cfg.task,
            "output": cfg.output,
            "input": f"{cfg.input_size[1]}x{cfg.input_size[2]}",
            "default_layer": cfg.default_layer,
            "feature_layers": ",".join(cfg.feature_layers),
            "licence": cfg.licence,
            "source": cfg.source,
            "description": cfg.description,
            "preprocess": (f"{cfg.resize_mode} resize {cfg.resize} {cfg.interpolation}, crop {cfg.crop}, "
                           f"mean {tuple(round(m, 3) for m in cfg.mean)}, std {tuple(round(s, 3) for s in cfg.std)}"),
        })
    return pd.DataFrame(rows)


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def run_models(args: argparse.Namespace) -> int:
    if args.scenarios:
        try:
            scenarios = importlib.import_module("artmem.models.scenarios")
        except ModuleNotFoundError as exc:
            if exc.name == "artmem.models.scenarios":
                raise ArtmemError("freezing scenarios are not available in this build "
                                  "(artmem.models.scenarios is missing)") from None
            raise
        described = scenarios.describe_scenarios()
        if hasattr(described, "to_string"):  # a DataFrame: print every row and column
            import pandas as pd

            with pd.option_context("display.max_colwidth", 80, "display.width", 250):
                described = described.to_string(index=False)
        print(described)
        return 0
    table = models_table(args.pattern)
    if table.empty:
        raise ArtmemError(f"no model matches {args.pattern!r}")
    if args.verbose:
        for row in table.itertuples(index=False):
            print(f"{row.name}  [{row.task}, {row.output}, input {row.input}]")
            print(f"  {row.description}")
            print(f"  preprocess: {row.preprocess}")
            print(f"  layers: {row.feature_layers} (default {row.default_layer})")
            print(f"  licence: {row.licence}")
            print(f"  source: {row.source}")
        return 0
    cols = [("name", 18), ("task", 14), ("input", 7), ("feature_layers", 44), ("licence", 34), ("source", 40)]
    out = sys.stdout
    out.write("  ".join(h.upper().ljust(w) for h, w in cols).rstrip() + "\n")
    for row in table.to_dict("records"):
        layers = row["feature_layers"]
        cells = dict(row, feature_layers=f"{layers} (default {row['default_layer']})")
        out.write("  ".join(_short(str(cells[h]), w).ljust(w) for h, w in cols).rstrip() + "\n")
    return 0
