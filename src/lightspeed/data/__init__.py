"""Physics workloads: boosted jets from Pythia8 + FastJet, the shipped sample and loaders.

>>> from lightspeed.data import load_default_jets
>>> jets = load_default_jets()          # ~25k jets, 16 hls4ml features, labels g/q/w/z/t
>>> jets.features.shape, jets.class_names
"""

from __future__ import annotations

from lightspeed.data.io import (
    JetSample,
    default_sample_path,
    load_default_jets,
    load_hls4ml,
    load_jets,
    save_jets,
)
from lightspeed.data.jets import JetGenConfig, PhysicsConfig, generate_jets
from lightspeed.data.schema import CLASSES, FEATURE_DOCS, FEATURES

__all__ = [
    "CLASSES",
    "FEATURES",
    "FEATURE_DOCS",
    "JetGenConfig",
    "JetSample",
    "PhysicsConfig",
    "default_sample_path",
    "generate_jets",
    "load_default_jets",
    "load_hls4ml",
    "load_jets",
    "save_jets",
]
