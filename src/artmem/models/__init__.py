"""The model zoo: one registry, each entry carrying its preprocessing, feature layers and licence."""

from artmem.models.factory import create_model  # noqa: F401
from artmem.models.registry import (  # noqa: F401
    PretrainedCfg,
    get_pretrained_cfg,
    list_models,
    register_model,
)
