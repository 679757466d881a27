"""Training configuration: defaults < paper preset < YAML config file < command-line flags.

The built-in defaults are fast settings for small collections and CPUs (lr 1e-3 stepped, 10
epochs, batch 32), not a paper's. A paper's settings are one flag away (`--preset`, `PRESETS`):

- `cetinic2018`: Cetinic et al. 2018, the Table 2/3 protocol: SGD, momentum 0.9, weight decay
  5e-4, constant lr 1e-4, 100 epochs, batch 256, dropout 0.5, random 227 crops of 256x256 images
  and mirroring, 70/10/20 split.
- `cetinic2018_fast`: their short schedule (sec. 5.4): lr 1e-3 divided by 10 after 5 epochs, 20
  epochs, otherwise as `cetinic2018`.
- `yu2017`: Yu, Jin & Hsu: frozen backbone, features computed once, dropout-FC-ReLU-dropout-FC
  head trained with Adam (their best: 650 units, dropout 0.7, lr 1.95e-5) with a randomized
  search, then the last conv module fine-tuned with Adam at a very low lr; no augmentation.

The resolved configuration is written to every run folder as `config.yaml`; `--resume` reads it
back, so a resumed run continues with exactly the settings it started with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

from artmem.errors import ArtmemError


@dataclass
class TrainConfig:
    """Every setting of a classification run (Cetinic 2018 defaults where the paper gives them).

    Attributes:
        label: the collection column with the classes (style, genre, artist, ...); no default.
        model: a registry name (`artmem models`) or a trained checkpoint / run folder.
        init: "pretrained" (the entry's weights, head replaced) or "random" (same architecture,
            freshly initialised weights).
        scenario: all | skip_first | skip_first2 | only_last3 | only_last (`artmem models --scenarios`).
        optimizer: "sgd" (momentum, L2 weight decay; the paper's setting) or "adam".
        lr, momentum, weight_decay: optimiser settings.
        schedule: "step" (lr x gamma every step_size epochs) or "constant".
        epochs, batch_size: training length and mini-batch size.
        dropout: probability set on the model's dropout layers and used in an MLP head (None: keep).
        seed: seeds the split, the initial head, shuffling, augmentation and dropout.
        split: train/val/test fractions; an existing `split` column in the collection is reused.
        min_count: leave out classes with fewer images than this.
        max_per_class: cap images per class (seeded sample); None keeps all.
        cache_size: side of the square resized image cache (None: 256/224 x model input).
        cache_dir: where the resized-image and feature caches live (None: <run>/../.artmem-cache).
        augment: random crop + horizontal mirror for training images.
        num_workers: DataLoader workers (None: automatic).
        device: auto | cpu | cuda | cuda:N (mixed precision on CUDA when amp).
        amp: mixed precision on CUDA.
        frozen_features: "auto" (on when only the head is trained), "on" or "off": train the head
            on backbone features computed once and cached on disk (Yu, Jin & Hsu).
        head: "linear" (replace the classifier) or "mlp" (dropout-FC-ReLU-dropout-FC, Yu/Jin/Hsu).
        head_width: hidden units of the MLP head.
        search: number of random trials over head width, dropout and lr on cached features (0: off).
        finetune_last: after the head, unfreeze the last backbone group and continue training.
        finetune_lr, finetune_epochs, finetune_optimizer: settings of that second stage.
        monitor: validation metric that picks the best checkpoint ("val_acc" or "val_loss").
        preset: the paper preset these settings started from (None: the built-in defaults).
    """

    label: str | None = None  # required: no silent default column
    model: str = "efficientnet_lite0"
    init: str = "pretrained"
    scenario: str = "all"
    optimizer: str = "sgd"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "step"
    step_size: int = 5
    gamma: float = 0.1
    epochs: int = 10
    batch_size: int = 32
    dropout: float | None = None
    seed: int = 0
    split: list[float] = field(default_factory=lambda: [0.7, 0.1, 0.2])
    min_count: int = 1
    max_per_class: int | None = None
    cache_size: int | None = None
    cache_dir: str | None = None
    augment: bool = True
    num_workers: int | None = None
    device: str = "auto"
    amp: bool = True
    frozen_features: str = "auto"
    head: str = "linear"
    head_width: int = 512
    search: int = 0
    finetune_last: bool = False
    finetune_lr: float = 1e-5
    finetune_epochs: int = 5
    finetune_optimizer: str = "adam"
    monitor: str = "val_acc"
    preset: str | None = None

    def validate(self) -> TrainConfig:
        from artmem.models.scenarios import SCENARIOS

        checks = [
            (self.init in ("pretrained", "random"), f"init must be pretrained or random (got {self.init!r})"),
            (self.scenario in SCENARIOS, f"scenario must be one of {', '.join(SCENARIOS)} (got {self.scenario!r})"),
            (self.optimizer in ("sgd", "adam"), f"optimizer must be sgd or adam (got {self.optimizer!r})"),
            (self.finetune_optimizer in ("sgd", "adam"), "finetune_optimizer must be sgd or adam"),
            (self.schedule in ("step", "constant"), f"schedule must be step or constant (got {self.schedule!r})"),
            (self.frozen_features in ("auto", "on", "off"), "frozen_features must be auto, on or off"),
            (self.head in ("linear", "mlp"), f"head must be linear or mlp (got {self.head!r})"),
            (self.monitor in ("val_acc", "val_loss"), "monitor must be val_acc or val_loss"),
            (self.epochs >= 1 and self.batch_size >= 1, "epochs and batch_size must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (len(self.split) == 3, "split needs three fractions train/val/test"),
            (self.dropout is None or 0 <= self.dropout < 1, "dropout must be in [0, 1)"),
            (self.step_size >= 1, "step_size must be >= 1"),
            (self.preset is None or self.preset in PRESETS, f"unknown preset {self.preset!r}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ArtmemError(msg)
        if self.finetune_last and self.frozen_features == "off" and self.scenario != "only_last":
            raise ArtmemError("--finetune-last continues a frozen-backbone run (scenario only_last)")
        return self

    def uses_frozen_features(self) -> bool:
        if self.frozen_features == "on":
            return True
        return self.frozen_features == "auto" and self.scenario == "only_last"

    def to_dict(self) -> dict:
        return asdict(self)


FIELD_NAMES = {f.name for f in fields(TrainConfig)}

_CETINIC2018 = {"optimizer": "sgd", "momentum": 0.9, "weight_decay": 5e-4, "lr": 1e-4, "schedule": "constant",
                "epochs": 100, "batch_size": 256, "dropout": 0.5, "augment": True, "split": [0.7, 0.1, 0.2],
                "cache_size": 256}
PRESETS: dict[str, dict] = {
    "cetinic2018": _CETINIC2018,
    "cetinic2018_fast": {**_CETINIC2018, "lr": 1e-3, "schedule": "step", "step_size": 5, "gamma": 0.1,
                         "epochs": 20},
    "yu2017": {"scenario": "only_last", "frozen_features": "on", "head": "mlp", "head_width": 650,
               "dropout": 0.7, "optimizer": "adam", "lr": 1.95e-5, "weight_decay": 0.0, "schedule": "constant",
               "epochs": 50, "search": 10, "augment": False, "finetune_last": True,
               "finetune_optimizer": "adam", "finetune_lr": 1e-5, "finetune_epochs": 10},
}


def parse_split(text: str | list) -> list[float]:
    """'70/10/20', '0.7,0.1,0.2' or a list -> three fractions (the `--ratios` parser)."""
    from artmem.cliutils import parse_ratios

    return list(parse_ratios(text, "--ratios"))


def read_yaml_mapping(path: Path, what: str, not_mapping: str) -> dict:
    """Parse a YAML file that must hold a mapping; user errors name the file and the reason."""
    if not path.exists():
        raise ArtmemError(f"{path}: no such {what}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ArtmemError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ArtmemError(f"{path}: {not_mapping}")
    return data


def load_config_file(path: str | Path) -> dict:
    """Read a YAML (or JSON) config file into a dict of known keys (`-` and `_` both accepted)."""
    path = Path(path)
    data = read_yaml_mapping(path, "config file", "a config file must be a mapping of settings")
    data = {str(k).replace("-", "_"): v for k, v in data.items()}
    unknown = set(data) - FIELD_NAMES
    if unknown:
        raise ArtmemError(f"{path}: unknown setting(s) {', '.join(sorted(unknown))}")
    return data


def resolve_config(file: str | Path | None = None, overrides: dict | None = None,
                   base: dict | None = None) -> TrainConfig:
    """Defaults, then the paper preset (`preset` from the flags, file or base), then `base`, then
    the config file, then non-None `overrides` (command-line flags)."""
    from_file = load_config_file(file) if file else {}
    flags = {k: v for k, v in (overrides or {}).items() if v is not None}
    preset = flags.get("preset", from_file.get("preset", (base or {}).get("preset")))
    if preset is not None and preset not in PRESETS:
        raise ArtmemError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    values: dict = dict(PRESETS.get(preset, {}))
    values.update(base or {})
    values.update(from_file)
    values.update(flags)
    unknown = set(values) - FIELD_NAMES
    if unknown:
        raise ArtmemError(f"unknown setting(s) {', '.join(sorted(unknown))}")
    if "split" in values:
        values["split"] = parse_split(values["split"])
    for key in ("lr", "momentum", "weight_decay", "gamma", "finetune_lr"):
        if key in values and values[key] is not None:
            values[key] = float(values[key])
    return TrainConfig(**values).validate()


def write_config(cfg: TrainConfig, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return path


def read_run_config(run_dir: str | Path) -> TrainConfig:
    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        raise ArtmemError(f"{run_dir}: not a training run folder (no config.yaml)")
    return resolve_config(path)
