"""Configuration: frozen pydantic models and the paper's presets (never imports JAX)."""

from metarl_cli.config.models import TrainConfig, build_config, parse_set, read_config_file
from metarl_cli.config.presets import (
    NORMALISER_NOTES,
    normaliser_note,
    preset,
    preset_env_ids,
)

__all__ = [
    "NORMALISER_NOTES",
    "TrainConfig",
    "build_config",
    "normaliser_note",
    "parse_set",
    "preset",
    "preset_env_ids",
    "read_config_file",
]
