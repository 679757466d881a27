"""`run_experiment`: initialisations x scenarios (x tasks) grids and the tables/figures of Cetinic 2018.

Grid file (YAML):

    collection: data/collection.parquet      # optional when given on the command line
    tasks: [style, genre]                     # label columns (else settings.label; one is required)
    inits:                                    # name -> settings (or a list of model names)
      imagenet: {model: efficientnet_lite0}
      memnet:   {model: resmem_alexnet}
      random:   {model: efficientnet_lite0, init: random}
    scenarios: [all, skip_first, skip_first2, only_last3, only_last]
    settings: {epochs: 10, lr: 1.0e-4, schedule: constant}   # any `artmem train` setting
    table2_scenario: all                      # scenario compared across inits (default: all/first)
    table3_init: imagenet                     # init compared across scenarios (default: first)

Writes into OUT: runs/<task>/<init>/<scenario>/ (one resumable training run per cell; a finished
cell is skipped on rerun), results.parquet/.csv (one row per cell), table2.csv/.md (test accuracy
per task, architecture and initialisation with the variance of those accuracies, their Table 2:
initialisations are compared within one architecture, e.g. ImageNet vs random vs memorability-trained
weights of the same network, never one network against another), table3.csv/.md
(test accuracy per scenario and task, their Table 3), validation-curve plots per task
(curves_<task>_inits.png for Table 2's scenario and curves_<task>_inits_<scenario>.png for the
others: Figures 5/6; curves_<task>_scenarios.png for Table 3's init and
curves_<task>_scenarios_<init>.png: Figure 7), accuracy per
scenario (accuracy_scenarios.png: Figure 8) and the training-time bar chart (training_time.png:
Figure 9).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from artmem.errors import ArtmemError

logger = logging.getLogger(__name__)


def load_grid(path: str | Path) -> dict:
    """Read and check a grid file; returns a normalised dict."""
    from artmem.classify.config import FIELD_NAMES, read_yaml_mapping
    from artmem.models.scenarios import SCENARIOS

    path = Path(path)
    grid = read_yaml_mapping(path, "grid file", "a grid file is a mapping (tasks, inits, scenarios, settings)")
    known = {"collection", "tasks", "inits", "scenarios", "settings", "table2_scenario", "table3_init"}
    unknown = set(grid) - known
    if unknown:
        raise ArtmemError(f"{path}: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(known))})")
    settings = {str(k).replace("-", "_"): v for k, v in (grid.get("settings") or {}).items()}
    bad = set(settings) - FIELD_NAMES
    if bad:
        raise ArtmemError(f"{path}: unknown setting(s) {', '.join(sorted(bad))}")
    inits = grid.get("inits") or {"default": {"model": settings.get("model", "efficientnet_lite0")}}
    if isinstance(inits, list):
        base_model = settings.get("model", "efficientnet_lite0")
        inits = {str(m): ({"model": base_model, "init": "random"} if m == "random" else {"model": m})
                 for m in inits}
    inits = {str(k): dict(v or {}) for k, v in inits.items()}
    for name, spec in inits.items():
        bad = set(spec) - FIELD_NAMES
        if bad:
            raise ArtmemError(f"{path}: init {name!r} has unknown setting(s) {', '.join(sorted(bad))}")
    scenarios = [str(s) for s in (grid.get("scenarios") or [settings.get("scenario", "all")])]
    for s in scenarios:
        if s not in SCENARIOS:
            raise ArtmemError(f"{path}: unknown scenario {s!r} (choose from {', '.join(SCENARIOS)})")
    tasks = [str(t) for t in (grid.get("tasks") or ([settings["label"]] if settings.get("label") else []))]
    if not tasks:
        raise ArtmemError(f"{path}: give `tasks:` (the label columns to classify) or `settings: label:`")
    t2 = str(grid.get("table2_scenario") or ("all" if "all" in scenarios else scenarios[0]))
    t3 = str(grid.get("table3_init") or next(iter(inits)))
    if t2 not in scenarios:
        raise ArtmemError(f"{path}: table2_scenario {t2!r} is not in scenarios")
    if t3 not in inits:
        raise ArtmemError(f"{path}: table3_init {t3!r} is not in inits")
    coll = grid.get("collection")
    if coll is not None and not Path(str(coll)).is_absolute():
        coll = str((path.parent / str(coll)).resolve())
    return {"collection": coll, "tasks": tasks, "inits": inits, "scenarios": scenarios,
            "settings": settings, "table2_scenario": t2, "table3_init": t3}


def _markdown(df: pd.DataFrame, floatfmt: str = "{:.3f}") -> str:
    def fmt(v):
        if isinstance(v, (float, np.floating)):
            return "" if np.isnan(v) else floatfmt.format(v)
        return str(v)

    cols = [df.index.name or ""] + [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for idx, row in df.iterrows():
        lines.append("| " + " | ".join([str(idx)] + [fmt(v) for v in row.to_numpy()]) + " |")
    return "\n".join(lines) + "\n"


def cell_dir(out: Path, task: str, init: str, scenario: str) -> Path:
    return out / "runs" / task / init / scenario


def run_experiment(grid_file: str | Path, out: str | Path, collection=None, device: str | None = None,
                   overrides: dict | None = None) -> tuple[pd.DataFrame, list[Path]]:
    """Run every cell of the grid (skipping finished ones) and write tables and figures.

    Args:
        grid_file: the grid YAML.
        out: output folder.
        collection: overrides the grid's `collection`.
        device: overrides the device of every cell.
        overrides: settings applied to every cell after the grid's (e.g. {"epochs": 2}).

    Returns:
        (results table, written paths).
    """
    from artmem.classify.config import resolve_config
    from artmem.classify.train import train_classifier
    from artmem.data.collection import open_collection
    from artmem.io import ensure_out_dir, write_table

    grid = load_grid(grid_file)
    out = ensure_out_dir(out)
    source = collection if collection is not None else grid["collection"]
    if source is None:
        raise ArtmemError("no collection: give COLLECTION on the command line or `collection:` in the grid")
    coll = open_collection(source)
    (out / "grid.yaml").write_text(yaml.safe_dump({k: v for k, v in grid.items()}, sort_keys=False))
    rows = []
    cells = [(t, i, s) for t in grid["tasks"] for i in grid["inits"] for s in grid["scenarios"]]
    for n, (task, init, scenario) in enumerate(cells, 1):
        rdir = cell_dir(out, task, init, scenario)
        row = {"task": task, "init": init, "scenario": scenario, "run_dir": str(rdir.relative_to(out))}
        values = {**grid["settings"], **grid["inits"][init], "label": task, "scenario": scenario}
        values.setdefault("cache_dir", str(out / "cache"))
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
        if device:
            values["device"] = device
        cfg = resolve_config(overrides=values)
        row["model"] = cfg.model
        metrics_file = rdir / "metrics.json"
        if metrics_file.exists():
            logger.info("[%d/%d] %s / %s / %s: done already", n, len(cells), task, init, scenario)
            status = "done"
        else:
            logger.info("[%d/%d] %s / %s / %s: training %s", n, len(cells), task, init, scenario, cfg.model)
            started = (rdir / "config.yaml").exists()
            try:
                train_classifier(coll, rdir, cfg, resume=started)
                status = "done"
            except (ArtmemError, RuntimeError, ValueError) as exc:
                logger.error("cell %s / %s / %s failed: %s", task, init, scenario, exc)
                status = f"failed: {exc}"
        row["status"] = status
        if metrics_file.exists():
            m = json.loads(metrics_file.read_text())
            row.update(test_accuracy=m["test_accuracy"], test_macro_f1=m["test_macro_f1"],
                       best_val_accuracy=m.get("best_val_accuracy"), train_time_s=m.get("train_time_s"),
                       epochs_run=m.get("epochs_run"), num_classes=m.get("num_classes"),
                       majority_baseline=m.get("majority_baseline"))
        rows.append(row)
    results = pd.DataFrame(rows)
    written = write_table(results, out, "results", csv=True)
    written += write_tables(results, grid, out)
    written += write_figures(results, grid, out)
    failed = results[results["status"] != "done"]
    if len(failed):
        logger.warning("%d of %d cells failed (see results.csv 'status'); rerun to retry them",
                       len(failed), len(results))
    return results, written


# The network each zoo entry is (Table 2 compares initialisations of one network only).
ARCHITECTURES = {"resmem_alexnet": "CaffeNet/AlexNet", "resnet152_resmem": "ResNet-152",
                 "resmem": "ResMem (AlexNet + ResNet-152)", "efficientnet_lite0": "EfficientNet-Lite0",
                 "efficientnet_lite2": "EfficientNet-Lite2", "hybrid_cnn": "hybrid CNN",
                 "tiny_test": "tiny test CNN"}


def base_model_name(model: str) -> str:
    """The zoo entry behind `model` (a registry name, or a trained run/checkpoint)."""
    from artmem.models.checkpoint import is_run_path, read_description
    from artmem.models.registry import list_models

    if model not in list_models() and is_run_path(model):
        return str(read_description(model)["config"]["base_model"])
    return model


def init_kind(model: str, init: str) -> str:
    """What the weights were trained on: random, memorability (ResMem), ImageNet, or seeded."""
    from artmem.models.registry import get_pretrained_cfg

    if init == "random":
        return "random"
    cfg = get_pretrained_cfg(base_model_name(model))
    if "resmem" in cfg.source.lower():
        return "memorability (LaMem + MemCat)"
    if "imagenet" in cfg.description.lower():
        return "ImageNet"
    return "built-in seeded weights"


def table2(results: pd.DataFrame, scenario: str, inits: list[str]) -> pd.DataFrame:
    """Test accuracy per (task, architecture) row and initialisation column + the population
    variance of the accuracies in the row: only initialisations of the same architecture share a
    row, so the variance measures the effect of the initialisation alone."""
    sub = results[(results["scenario"] == scenario)].copy()
    sub["architecture"] = [ARCHITECTURES.get(base_model_name(m), base_model_name(m)) for m in sub["model"]]
    t = sub.pivot_table(index=["task", "architecture"], columns="init", values="test_accuracy", aggfunc="first")
    t = t.reindex(columns=[i for i in inits if i in t.columns])
    t["variance_of_accuracies"] = t.var(axis=1, ddof=0)  # as the paper (ddof=0 reproduces its values)
    return t


def table3(results: pd.DataFrame, init: str, scenarios: list[str], tasks: list[str]) -> pd.DataFrame:
    """Test accuracy per scenario (rows) and task (columns) for one initialisation."""
    sub = results[(results["init"] == init)]
    t = sub.pivot_table(index="scenario", columns="task", values="test_accuracy", aggfunc="first")
    t = t.reindex(index=[s for s in scenarios if s in t.index], columns=[c for c in tasks if c in t.columns])
    t.index.name = "scenario"
    return t


def _init_of(grid: dict, name: str) -> str:
    return str({**grid["settings"], **grid["inits"][name]}.get("init", "pretrained"))


def write_tables(results: pd.DataFrame, grid: dict, out: Path) -> list[Path]:
    written = []
    if "test_accuracy" not in results:
        return written
    t2 = table2(results, grid["table2_scenario"], list(grid["inits"]))
    t3 = table3(results, grid["table3_init"], grid["scenarios"], grid["tasks"])
    t2.to_csv(out / "table2.csv")
    t3.to_csv(out / "table3.csv")
    kinds = results.drop_duplicates("init").set_index("init")
    parts = [f"Table 2: test accuracy per initialisation, within each architecture "
             f"(scenario `{grid['table2_scenario']}`)\n"]
    for arch, block in t2.groupby(level="architecture", sort=False):
        block = block.droplevel("architecture").dropna(axis=1, how="all")
        var = block.pop("variance_of_accuracies") if "variance_of_accuracies" in block else None
        block.columns = [f"{c} ({init_kind(kinds.loc[c, 'model'], _init_of(grid, c))})" for c in block.columns]
        note = ""
        if block.shape[1] < 2:
            note = "Only one initialisation of this architecture in the grid: nothing to compare.\n\n"
        elif var is not None:
            block["variance of accuracies"] = [f"{v * 1e4:.2f}×10⁻⁴" if not np.isnan(v) else "" for v in var]
        block.index.name = "task"
        parts.append(f"### {arch}\n\n{note}" + _markdown(block))
    (out / "table2.md").write_text("\n".join(parts))
    (out / "table3.md").write_text(
        f"Table 3: test accuracy per fine-tuning scenario (initialisation `{grid['table3_init']}`)\n\n"
        + _markdown(t3))
    written += [out / "table2.csv", out / "table2.md", out / "table3.csv", out / "table3.md"]
    return written


def _history(out: Path, run_dir: str) -> pd.DataFrame | None:
    f = out / run_dir / "summary.csv"
    if not f.exists():
        return None
    h = pd.read_csv(f)
    if "epoch_index" not in h:
        h["epoch_index"] = np.arange(1, len(h) + 1)
    return h


def write_figures(results: pd.DataFrame, grid: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: list[Path] = []
    done = results[results["status"] == "done"]
    if done.empty:
        return written
    combos = [("inits", "scenario", s, "init", list(grid["inits"])) for s in grid["scenarios"]]
    combos += [("scenarios", "init", i, "scenario", grid["scenarios"]) for i in grid["inits"]]
    defaults = {("inits", grid["table2_scenario"]), ("scenarios", grid["table3_init"])}
    for task in grid["tasks"]:
        for kind, fixed_col, fixed, var_col, order in combos:
            sub = done[(done["task"] == task) & (done[fixed_col] == fixed)]
            if len(sub) < 1 or len(order) < 2:
                continue
            fig, ax = plt.subplots(figsize=(6.5, 4))
            for name in order:
                r = sub[sub[var_col] == name]
                h = _history(out, r["run_dir"].iloc[0]) if len(r) else None
                if h is not None and "val_acc" in h:
                    ax.plot(h["epoch_index"], h["val_acc"], marker="o", ms=3, label=name)
            ax.set_xlabel("epoch")
            ax.set_ylabel("validation accuracy")
            ax.set_title(f"{task}: by {var_col} ({fixed_col} {fixed})")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
            fig.tight_layout()
            # curves_<task>_inits.png (Table 2's scenario) / curves_<task>_scenarios.png (Table 3's
            # init), and one file per other scenario / init
            suffix = "" if (kind, fixed) in defaults else f"_{fixed}"
            path = out / f"curves_{task}_{kind}{suffix}.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            written.append(path)
    sub = done[done["init"] == grid["table3_init"]]
    if len(sub) and "train_time_s" in sub:
        for fname, col, ylabel in (("training_time.png", "train_time_s", "training time (s)"),
                                   ("accuracy_scenarios.png", "test_accuracy", "test accuracy")):
            piv = sub.pivot_table(index="scenario", columns="task", values=col, aggfunc="first")
            piv = piv.reindex(index=[s for s in grid["scenarios"] if s in piv.index])
            fig, ax = plt.subplots(figsize=(7, 4))
            piv.plot.bar(ax=ax, rot=0)
            ax.set_ylabel(ylabel)
            ax.set_title(f"{ylabel} per scenario (init {grid['table3_init']})")
            ax.grid(axis="y", alpha=0.3)
            fig.tight_layout()
            fig.savefig(out / fname, dpi=110)
            plt.close(fig)
            written.append(out / fname)
    return written
