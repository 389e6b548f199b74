"""Fixtures for the vision runtime tests: the shipped model, images drawn on demand."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from edge_agent.inference.vision import VisionClassifier, VisionModel
from models.vision import synth

# The held-out seed family of the model card, so these images were never trained on.
TEST_SEED = 1_000_001


@pytest.fixture(scope="session")
def model() -> VisionModel:
    return VisionModel()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def classifier(model: VisionModel, registry: CollectorRegistry) -> VisionClassifier:
    return VisionClassifier(model, registry=registry)


@pytest.fixture
def product_jpeg() -> Callable[[int, int], bytes]:
    """JPEG of category ``k`` drawn with the hard (held-out) nuisances, seed ``i``."""

    def make(k: int, i: int = 0) -> bytes:
        rng = np.random.default_rng([TEST_SEED, 77, k, i])
        return synth.render_jpeg(k, rng, synth.Nuisance.hard())

    return make


def metric(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0
