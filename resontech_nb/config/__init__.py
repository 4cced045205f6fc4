"""Configuration: the three settings classes of the platform's guide, and where their values come from."""

from .settings import FederationConfig, ResonTechConfig, TrainingConfig, as_config

__all__ = ["FederationConfig", "ResonTechConfig", "TrainingConfig", "as_config"]
