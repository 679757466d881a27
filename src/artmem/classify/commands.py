"""CLI: `artmem train`, `artmem predict`, `artmem experiment`."""

from __future__ import annotations

import argparse

from artmem.cliutils import (
    RATIOS_HELP,
    add_collection_arg,
    add_csv_arg,
    add_device_arg,
    add_out_arg,
    add_ratios_arg,
    print_written,
)


def _bool(text: str) -> bool:
    t = str(text).lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected yes/no, got {text!r}")


def add_train_args(p: argparse.ArgumentParser) -> None:
    """Every TrainConfig setting as a flag (default None: the config file or built-in default applies)."""
    g = p.add_argument_group("what to train")
    g.add_argument("--config", help="YAML file of settings (flags override it)")
    g.add_argument("--preset", choices=["cetinic2018", "cetinic2018_fast", "yu2017"],
                   help="a paper's settings (flags and --config override them): cetinic2018 = lr 1e-4 "
                   "constant, 100 epochs, batch 256, SGD; yu2017 = frozen features, MLP head, Adam, "
                   "search, last-module fine-tuning (see docs/classify.md)")
    g.add_argument("--label", help="class column (style, genre, artist, ...); required unless --config gives it")
    g.add_argument("--model", help="zoo entry (`artmem models`) or trained run/checkpoint; default efficientnet_lite0")
    g.add_argument("--init", choices=["pretrained", "random"], help="weights to start from (default pretrained)")
    g.add_argument("--scenario", choices=["all", "skip_first", "skip_first2", "only_last3", "only_last"],
                   help="frozen-layer scenario of Cetinic 2018 (default all; see `artmem models --scenarios`)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--optimizer", choices=["sgd", "adam"], help="default sgd (momentum 0.9)")
    g.add_argument("--lr", type=float, help="learning rate (default 1e-3)")
    g.add_argument("--momentum", type=float, help="SGD momentum (default 0.9)")
    g.add_argument("--weight-decay", type=float, help="L2 weight decay (default 5e-4)")
    g.add_argument("--schedule", choices=["step", "constant"], help="default step (x gamma every step-size epochs)")
    g.add_argument("--step-size", type=int, help="epochs between decays (default 5)")
    g.add_argument("--gamma", type=float, help="decay factor (default 0.1)")
    g.add_argument("--epochs", type=int, help="default 10")
    g.add_argument("--batch-size", type=int, help="default 32")
    g.add_argument("--dropout", type=float, help="dropout probability of the model's dropout layers / MLP head")
    g.add_argument("--seed", type=int, help="default 0")
    g.add_argument("--monitor", choices=["val_acc", "val_loss"], help="metric choosing the best checkpoint (default val_acc)")
    g = p.add_argument_group("data")
    add_ratios_arg(g, default=None, deprecated="--split",
                   help=RATIOS_HELP + " (default 70/10/20; an existing split column is reused)")
    g.add_argument("--min-count", type=int, help="leave out classes with fewer images")
    g.add_argument("--max-per-class", type=int, help="cap images per class (seeded sample)")
    g.add_argument("--cache-size", type=int, help="side of the resized image cache (default 256 for 224 px models)")
    g.add_argument("--cache-dir", help="share the image/feature cache between runs (default RUN/cache)")
    g.add_argument("--augment", type=_bool, metavar="yes|no", help="random crop + mirror (default yes)")
    g.add_argument("--num-workers", type=int, help="DataLoader workers")
    g.add_argument("--amp", type=_bool, metavar="yes|no", help="mixed precision on CUDA (default yes)")
    g = p.add_argument_group("frozen-feature transfer (Yu, Jin & Hsu)")
    g.add_argument("--frozen-features", choices=["auto", "on", "off"],
                   help="train the head on cached backbone features (auto: when scenario is only_last)")
    g.add_argument("--head", choices=["linear", "mlp"], help="replaced head: linear or dropout-FC-ReLU-dropout-FC")
    g.add_argument("--head-width", type=int, help="hidden units of the MLP head (default 512)")
    g.add_argument("--search", type=int, help="random search trials over head width, dropout and lr")
    g.add_argument("--finetune-last", action="store_const", const=True,
                   help="then unfreeze the last backbone group and continue at --finetune-lr")
    g.add_argument("--finetune-lr", type=float, help="default 1e-5")
    g.add_argument("--finetune-epochs", type=int, help="default 5")
    g.add_argument("--finetune-optimizer", choices=["sgd", "adam"], help="default adam")


def config_from_args(args, base: dict | None = None):
    from artmem.classify.config import FIELD_NAMES, resolve_config

    overrides = {k: getattr(args, k) for k in FIELD_NAMES if k != "device" and hasattr(args, k)}
    if getattr(args, "ratios", None) is not None:
        overrides["split"] = args.ratios
    if getattr(args, "device", None) not in (None, "auto"):
        overrides["device"] = args.device
    return resolve_config(getattr(args, "config", None), overrides, base=base)


def cmd_train(args) -> int:
    from pathlib import Path

    from artmem.classify.config import read_run_config
    from artmem.classify.train import train_classifier

    base = None
    if args.resume and (Path(args.out) / "config.yaml").exists():
        base = read_run_config(args.out).to_dict()
    cfg = config_from_args(args, base)
    result = train_classifier(args.collection, args.out, cfg, resume=args.resume)
    print_written(result.written)
    return 0


def cmd_predict(args) -> int:
    from artmem.classify.predict import predict

    _, _, written = predict(args.collection, args.run, args.out, topk=args.topk, device=args.device,
                            batch_size=args.batch_size, csv=args.csv)
    print_written(written)
    return 0


def cmd_experiment(args) -> int:
    from artmem.classify.experiment import run_experiment

    results, written = run_experiment(args.grid, args.out, collection=args.collection,
                                      device=None if args.device == "auto" else args.device,
                                      overrides={"epochs": args.epochs})
    print_written(written)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train a classifier (style, genre, artist...) with the papers' scenarios",
        description="Fine-tune a zoo model (or train one from scratch) on a label column, with the "
        "frozen-layer scenarios of Cetinic et al. 2018 or frozen-feature transfer with a head search "
        "(Yu, Jin & Hsu). Writes config.yaml, summary.csv, best/last checkpoints (.safetensors + .json), metrics.json, "
        "confusion matrix and curves into the run folder.",
    )
    add_collection_arg(p)
    add_out_arg(p)
    add_train_args(p)
    add_device_arg(p)
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in -o")
    p.set_defaults(func=cmd_train)

    p = subparsers.add_parser(
        "predict", help="top-k labels and class probabilities of a trained classifier",
        description="Writes predictions.parquet (top-k labels/probabilities) and probabilities.parquet "
        "(p_<class> per image, usable as image attributes).",
    )
    add_collection_arg(p)
    p.add_argument("--run", required=True, help="training run folder (or one of its checkpoints, e.g. RUN/last.safetensors)")
    add_out_arg(p)
    p.add_argument("--topk", type=int, default=3, help="labels per image (default 3)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    add_csv_arg(p)
    add_device_arg(p)
    p.set_defaults(func=cmd_predict)

    p = subparsers.add_parser(
        "experiment", help="run an initialisations x scenarios grid; write Tables 2/3 and figures",
        description="Runs every (task, initialisation, scenario) cell of GRID (a YAML file; see "
        "docs/classify.md), skipping finished cells and resuming interrupted ones, and writes "
        "results, Table 2 / Table 3 (CSV and Markdown), validation curves and the training-time chart.",
    )
    p.add_argument("grid", help="grid YAML file")
    add_out_arg(p)
    p.add_argument("--collection", help="collection (overrides the grid's `collection:`)")
    p.add_argument("--epochs", type=int, help="override the epochs of every cell")
    add_device_arg(p)
    p.set_defaults(func=cmd_experiment)
