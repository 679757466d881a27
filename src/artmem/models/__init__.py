"""The model zoo: one registry, each entry carrying its preprocessing, feature layers and licence."""

from artmem.models.registry import (  # noqa: F401
    PretrainedCfg,
    create_model,
    get_pretrained_cfg,
    list_models,
    register_model,
)
