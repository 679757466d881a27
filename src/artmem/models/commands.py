"""`artmem models`: list the offline model zoo (or the named freezing scenarios);
`artmem models convert RUN --trust` rewrites an old pickle run folder as safe model files."""

from __future__ import annotations

import argparse
import shutil
import sys

from artmem.errors import ArtmemError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "models",
        help="list the offline model zoo (name, task, input size, default layer, licence; -v for details)",
        description="List registered models. Every model loads offline from an installed package.",
    )
    p.add_argument("--pattern", default=None, help="glob over model names, e.g. 'resmem*'")
    p.add_argument("--scenarios", action="store_true",
                   help="print the named frozen-layer fine-tuning scenarios instead")
    p.add_argument("--verbose", "-v", action="store_true",
                   help="details per model: description, every feature layer, preprocessing, full "
                   "licence and the file the weights come from")
    p.set_defaults(func=run_models)
    sub = p.add_subparsers(dest="action", metavar="{convert}")
    c = sub.add_parser(
        "convert", help="rewrite an old run folder's pickle checkpoints (*.pt) as .safetensors + .json",
        description="Convert the checkpoints artmem wrote before its safetensors format. Reading them "
                    "unpickles them, which can run code: pass --trust only for runs you made yourself "
                    "or got from a source you trust. The .pt files are left in place.")
    c.add_argument("run", help="run folder (every sub-folder too) or one .pt checkpoint")
    c.add_argument("--trust", action="store_true",
                   help="allow unpickling the old files (required; they can run code)")
    c.set_defaults(func=run_convert)

    c = subparsers.add_parser(
        "cache", help="show or free artmem's cache folder (ONNX exports of models, ~0.5 GB each)",
        description="artmem keeps files it can always remake in its cache folder ($ARTMEM_CACHE, else "
        "~/.cache/artmem): mainly one ONNX export per (model, outputs) for fast CPU runs. `info` lists "
        "them with their sizes; `clear` deletes them (the next run that needs one remakes it, once).",
    )
    csub = c.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    i = csub.add_parser("info", help="list the cached files, grouped by model and outputs, with sizes")
    i.set_defaults(func=run_cache_info)
    k = csub.add_parser("clear", help="delete the cached files (all, or one model's)")
    k.add_argument("--model", help="only this model's exports (a name from `artmem cache info`)")
    k.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    k.set_defaults(func=run_cache_clear)


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


def run_convert(args: argparse.Namespace) -> int:
    from artmem.cliutils import print_written
    from artmem.models.convert import convert_run

    written = convert_run(args.run, trust=args.trust)
    print_written([f for w in written for f in (w, w.with_suffix(".json"))])
    return 0


def run_models(args: argparse.Namespace) -> int:
    if args.scenarios:
        from artmem.models.scenarios import describe_scenarios

        described = describe_scenarios()
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
    print(format_models_table(table, shutil.get_terminal_size((100, 24)).columns))
    if sys.stdout.isatty():
        print("(artmem models -v: every feature layer, preprocessing, full licence and source)")
    return 0


def format_models_table(table, width: int) -> str:
    """The models table within `width` columns: name, task, input, default layer, licence (its
    short name) and as much of the description as fits."""
    rows = [{
        "NAME": r["name"], "TASK": r["task"], "INPUT": r["input"], "LAYER": r["default_layer"] or "-",
        "LICENCE": r["licence"].split(" (")[0], "DESCRIPTION": r["description"],
    } for r in table.to_dict("records")]
    heads = list(rows[0])
    widths = {h: max(len(h), *(len(str(r[h])) for r in rows)) for h in heads}
    # the last columns give way first: the description (dropped below 12 characters), then the
    # licence, down to 8 characters
    def excess() -> int:
        return sum(widths[h] for h in heads) + 2 * (len(heads) - 1) - width

    if widths["DESCRIPTION"] - excess() < 12:
        heads.remove("DESCRIPTION")
    for h in ("DESCRIPTION", "LICENCE"):
        if h in heads and excess() > 0:
            widths[h] = max(8, widths[h] - excess())
    lines = ["  ".join(h.ljust(widths[h]) for h in heads).rstrip()]
    for r in rows:
        lines.append("  ".join(_short(str(r[h]), widths[h]).ljust(widths[h]) for h in heads).rstrip())
    return "\n".join(lines)


def run_cache_info(args: argparse.Namespace) -> int:
    from artmem.usercache import cache_dir, cache_entries, format_cache_info

    root = cache_dir()
    print(format_cache_info(cache_entries(root), root))
    return 0


def run_cache_clear(args: argparse.Namespace) -> int:
    from artmem.usercache import cache_dir, clear_cache, human_size

    removed, freed = clear_cache(args.model, dry_run=args.dry_run)
    for path in removed:
        print(path)
    verb = "would free" if args.dry_run else "freed"
    print(f"{verb} {human_size(freed)} ({len(removed)} item(s)) in {cache_dir()}", file=sys.stderr)
    return 0
