"""CLI: `artmem memgame ...` (scores from memory-game responses) and `artmem memorability ...`
(maps, training and evaluation of memorability predictors). Heavy imports stay inside the functions.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from artmem.cliutils import (
    add_collection_arg,
    add_csv_arg,
    add_device_arg,
    add_out_arg,
    print_written,
)

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- memgame


def _cmd_memgame_scores(args) -> int:
    from artmem.io import write_table
    from artmem.memorability.memgame import read_responses, score_images

    responses = read_responses(args.responses)
    table, fit = score_images(responses, T=args.T, tol=args.tol, max_iter=args.max_iter)
    logger.info(
        "%d responses, %d images: alpha = %.6f at T = %g (%d iterations, converged=%s)",
        len(responses), len(table), fit.alpha, fit.T, fit.iterations, fit.converged,
    )
    written = write_table(table, args.out, "scores", csv=args.csv)
    fit_info = {
        "alpha": fit.alpha, "T": fit.T, "iterations": fit.iterations, "converged": fit.converged,
        "objective": fit.objective, "tol": args.tol, "responses": len(responses),
        "images": len(table), "participants": int(responses["participant"].nunique()),
        "source": str(args.responses),
    }
    (Path(args.out) / "fit.json").write_text(json.dumps(fit_info, indent=2) + "\n")
    written.append(Path(args.out) / "fit.json")
    print_written(written)
    return 0


def _cmd_memgame_consistency(args) -> int:
    from artmem.io import write_table
    from artmem.memorability.memgame import human_consistency, read_responses

    responses = read_responses(args.responses)
    kinds = [False, True] if args.adversarial == "both" else [args.adversarial == "yes"]
    per, summ = [], []
    import pandas as pd

    for adv in kinds:
        p, s = human_consistency(responses, splits=args.splits, adversarial=adv, T=args.T, seed=args.seed)
        per.append(p)
        summ.append(s)
    per_split, summary = pd.concat(per, ignore_index=True), pd.concat(summ, ignore_index=True)
    for row in summary.itertuples():
        logger.info("%-11s %-16s Spearman %.3f +- %.3f over %d splits", row.kind, row.method,
                    row.mean, row.sd, row.splits)
    written = write_table(summary, args.out, "consistency", csv=args.csv)
    written += write_table(per_split, args.out, "consistency_splits", csv=args.csv)
    print_written(written)
    return 0


def _cmd_memgame_simulate(args) -> int:
    from artmem.io import write_table
    from artmem.memorability.memgame import simulate_memory_game

    responses, truth = simulate_memory_game(
        n_images=args.images, responses_per_image=args.responses_per_image, alpha=args.alpha,
        T=args.T, delay_range=(args.min_delay, args.max_delay), fa_rate=args.fa_rate,
        participant_sd=args.participant_sd, image_delay_spread=args.image_delay_spread, seed=args.seed,
    )
    written = write_table(responses, args.out, "responses", csv=args.csv)
    written += write_table(truth, args.out, "truth", csv=args.csv)
    meta = {k: getattr(args, k) for k in ("images", "responses_per_image", "alpha", "T", "min_delay",
                                          "max_delay", "fa_rate", "participant_sd",
                                          "image_delay_spread", "seed")}
    (Path(args.out) / "simulation.json").write_text(json.dumps(meta, indent=2) + "\n")
    print_written([*written, Path(args.out) / "simulation.json"])
    return 0


def _register_memgame(sub) -> None:
    p = sub.add_parser("memgame", help="run memory-game studies; scores and human consistency from responses",
                       description="Memory-game responses (participant, image, delay, hit "
                       "[, false_alarm]) -> per-image scores (Khosla et al. 2015, eq. 2-6).")
    msub = p.add_subparsers(dest="memgame_command", metavar="SUBCOMMAND", required=True)

    s = msub.add_parser("scores", help="hit rate, FA-corrected and delay-corrected score per image")
    s.add_argument("responses", help="response table (.csv/.tsv/.parquet)")
    add_out_arg(s)
    s.add_argument("--T", type=float, default=None,
                   help="reference delay of the corrected score m_T (default: median delay)")
    s.add_argument("--tol", type=float, default=1e-8, help="stopping tolerance of eq. 5/6 updates")
    s.add_argument("--max-iter", type=int, default=1000, help="at most this many updates (default 1000)")
    add_csv_arg(s)
    s.set_defaults(func=_cmd_memgame_scores)

    c = msub.add_parser("consistency", help="split-half human consistency (Spearman), R splits")
    c.add_argument("responses", help="response table (.csv/.tsv/.parquet)")
    add_out_arg(c)
    c.add_argument("--splits", type=int, default=25, help="number of random splits (default 25)")
    c.add_argument("--adversarial", nargs="?", const="yes", default="no", choices=["no", "yes", "both"],
                   help="split each image's low- and high-delay responses into different halves "
                   "(`--adversarial both` runs random and adversarial splits)")
    c.add_argument("--T", type=float, default=None, help="reference delay (default: median delay)")
    c.add_argument("--seed", type=int, default=0, help="seed of the random splits (default 0)")
    add_csv_arg(c)
    c.set_defaults(func=_cmd_memgame_consistency)

    m = msub.add_parser("simulate", help="simulate a memory game under the log-linear delay model")
    add_out_arg(m)
    m.add_argument("--images", type=int, default=1000, help="number of images (default 1000)")
    m.add_argument("--responses-per-image", type=int, default=80,
                   help="target repeats per image (default 80)")
    m.add_argument("--alpha", type=float, default=-0.08, help="decay per log-delay unit")
    m.add_argument("--T", type=float, default=80.0, help="delay at which true_m_T is defined")
    m.add_argument("--min-delay", type=float, default=35,
                   help="shortest delay between an image and its repeat, in images (default 35)")
    m.add_argument("--max-delay", type=float, default=150, help="longest delay, in images (default 150)")
    m.add_argument("--fa-rate", type=float, default=0.05,
                   help="false-alarm rate on first showings (default 0.05)")
    m.add_argument("--participant-sd", type=float, default=0.05,
                   help="spread of participants' hit rates (default 0.05)")
    m.add_argument("--image-delay-spread", type=float, default=0.0,
                   help="> 0: each image gets its own typical delay (0..1 of the log-delay range)")
    m.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    add_csv_arg(m)
    m.set_defaults(func=_cmd_memgame_simulate)

    from artmem.memgame.commands import add_subcommands  # design | serve | export: running a study

    add_subcommands(msub)


# ----------------------------------------------------------------------------- maps


def _cmd_map(args) -> int:
    from artmem.memorability.maps import MapConfig, collect_inputs, map_images

    items = collect_inputs(args.inputs)
    if not items:
        from artmem.errors import ArtmemError

        raise ArtmemError("no images to map")
    grids = tuple(int(g) for g in args.grids.split(","))
    config = MapConfig(grids=grids, method=args.method, stride=args.stride, map_size=args.map_size,
                       batch_size=args.batch_size)
    written, _ = map_images(items, args.out, model=args.model, device=args.device, config=config,
                            renderings=not args.no_renderings, seed=args.seed)
    print_written(written)
    return 0


def _register_memorability(sub) -> None:
    p = sub.add_parser("memorability", help="memorability maps; train and evaluate predictors",
                       description="Memorability maps (Khosla et al. 2015 sec. 5) and training of "
                       "memorability predictors (regression, K-class, fusion, SVR/ridge).")
    msub = p.add_subparsers(dest="memorability_command", metavar="SUBCOMMAND", required=True)

    m = msub.add_parser("map", help="memorability maps, overlays and emphasis renderings")
    m.add_argument("inputs", nargs="+", metavar="IMAGES_OR_COLLECTION",
                   help="image files, image folders or collection files")
    add_out_arg(m)
    m.add_argument("--model", default="resmem", help="registry name or trained checkpoint (default resmem)")
    m.add_argument("--method", default="auto", choices=["auto", "fcn", "crops"],
                   help="auto: fully convolutional when the model allows it (resmem), else crops")
    m.add_argument("--grids", default="3,5,8",
                   help="windows along the shorter side at each scale (default 3,5,8)")
    m.add_argument("--stride", type=int, default=None, help="window step in px for crops")
    m.add_argument("--map-size", type=int, default=256, help="longer side of the saved map array")
    m.add_argument("--batch-size", type=int, default=32, help="crops per forward pass (default 32)")
    m.add_argument("--no-renderings", action="store_true",
                   help="skip the high/medium/low emphasis renderings and their scores")
    m.add_argument("--seed", type=int, default=0, help="seed of the emphasis renderings (default 0)")
    add_device_arg(m)
    m.set_defaults(func=_cmd_map)
    _register_training(msub)


def _cmd_train(args) -> int:
    from artmem.memorability.train import train_predictor
    from artmem.memorability.train_plan import TrainConfig

    hidden = tuple(int(h) for h in args.hidden.split(",") if h.strip()) if args.hidden else ()
    cfg = TrainConfig(
        score_column=args.score_column, method=args.method, model=args.model, layer=args.layer,
        model2=args.model2, layer2=args.layer2, head=args.head, k=args.k, finetune=args.finetune,
        folds=args.folds, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, hidden=hidden,
        dropout=args.dropout, weight_decay=args.weight_decay, C=args.C, epsilon=args.epsilon,
        gamma=args.gamma, svr_kernel=args.svr_kernel, inner_folds=args.inner_folds,
        seed=args.seed, device=args.device, refit=not args.no_refit, features=args.features,
        num_workers=args.num_workers,
    )
    metrics = train_predictor(args.collection, args.out, cfg, splits_dir=args.splits_dir)
    out = Path(args.out)
    print(f"# Spearman {metrics['spearman_mean']:.3f} +- {metrics['spearman_sd']:.3f} over "
          f"{metrics['folds']} folds ({metrics['folds_from']})", file=sys.stderr)
    print_written([out / n for n in ("config.yaml", "summary.csv", "folds.csv", "metrics.json",
                                     "predictions.parquet", "errors.parquet", "model.safetensors", "model.json")])
    return 0


def _cmd_evaluate(args) -> int:
    from artmem.memorability.evaluate import evaluate_predictor

    m = evaluate_predictor(args.model, args.collection, args.out, score_column=args.score_column,
                           split=args.split, device=args.device, batch_size=args.batch_size)
    print(f"# Spearman {m['spearman']:.3f} (Pearson {m['pearson']:.3f}) on {m['n']} images", file=sys.stderr)
    out = Path(args.out)
    print_written([out / "predictions.parquet", out / "errors.parquet", out / "metrics.json"])
    return 0


def _register_training(msub) -> None:
    t = msub.add_parser("train", help="train a memorability predictor (regression, K-class, fusion, SVR, ridge)",
                        description="Train on a collection with a score column; evaluates by Spearman "
                        "on the collection's splits (split_1..split_5 or split) or k-fold; writes "
                        "config.yaml, summary.csv, folds.csv, metrics.json and model.safetensors + model.json "
                        "(usable as --model PATH).")
    add_collection_arg(t)
    add_out_arg(t)
    t.add_argument("--score-column", default="score",
                   help="numeric collection column with the memorability to learn (default score)")
    t.add_argument("--method", default="regression", choices=["regression", "kclass", "fusion", "svr", "ridge"],
                   help="regression (MLP on features), kclass (K-class with probability aggregation), "
                   "fusion (two backbones), svr or ridge (default regression)")
    t.add_argument("--model", default="resmem", help="backbone (registry name)")
    t.add_argument("--layer", default=None, help="feature layer (default: the model's default layer)")
    t.add_argument("--model2", default=None, help="second backbone for --method fusion (e.g. magenta_style)")
    t.add_argument("--layer2", default=None, help="feature layer of --model2 (default: its default layer)")
    t.add_argument("--head", default="regression", choices=["regression", "kclass"], help="fusion head")
    t.add_argument("--k", type=int, default=4, help="classes of the K-class method (2..8, default 4)")
    t.add_argument("--finetune", action="store_true",
                   help="fine-tune the backbone on images (regression/kclass) instead of frozen features")
    t.add_argument("--features", default=None,
                   help="precomputed features (`artmem extract` folder) of --model/--layer")
    t.add_argument("--splits-dir", default=None, help="LaMem split files {train,val,test}_<k>.txt")
    t.add_argument("--folds", type=int, default=5, help="k of k-fold when the collection has no splits")
    t.add_argument("--epochs", type=int, default=None,
                   help="default 100 for a head on frozen features, 30 with --finetune")
    t.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3)")
    t.add_argument("--batch-size", type=int, default=32, help="images per step (default 32)")
    t.add_argument("--hidden", default="256", help="MLP hidden sizes, comma-separated ('' = linear)")
    t.add_argument("--dropout", type=float, default=0.2, help="dropout of the MLP head (default 0.2)")
    t.add_argument("--weight-decay", type=float, default=1e-4, help="L2 weight decay (default 1e-4)")
    t.add_argument("--svr-kernel", default="rbf", choices=["rbf", "linear"],
                   help="SVR kernel: rbf (Squalli-Houssaini 2018) or linear (Khosla 2015 Table 1)")
    t.add_argument("--C", type=float, default=None, help="fix the SVR C (default: tuned by inner CV)")
    t.add_argument("--epsilon", type=float, default=None, help="fix the SVR epsilon (default: tuned)")
    t.add_argument("--gamma", type=float, default=None, help="fix the RBF SVR gamma (default: tuned)")
    t.add_argument("--inner-folds", type=int, default=3,
                   help="inner cross-validation folds (on each training part) that tune the SVR")
    t.add_argument("--no-refit", action="store_true",
                   help="model.safetensors = the first fold's model instead of a refit on all images")
    t.add_argument("--num-workers", type=int, default=0, help="image-decoding worker processes (default 0)")
    t.add_argument("--seed", type=int, default=0, help="seed of folds, initialisation and shuffling (default 0)")
    add_device_arg(t)
    t.set_defaults(func=_cmd_train)

    e = msub.add_parser("evaluate", help="Spearman of a model's scores against a score column")
    e.add_argument("model", help="registry name or trained checkpoint/run folder")
    add_collection_arg(e)
    add_out_arg(e)
    e.add_argument("--score-column", default="score",
                   help="numeric collection column with the true memorability (default score)")
    e.add_argument("--split", default=None, help="only rows of this split (e.g. test)")
    e.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    add_device_arg(e)
    e.set_defaults(func=_cmd_evaluate)


# ----------------------------------------------------------------------------- registration


def register(sub) -> None:
    _register_memgame(sub)
    _register_memorability(sub)
