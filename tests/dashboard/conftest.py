"""The weights tests' app (fast blocks, no coalescing) for the weights page's route."""

from tests.weights.conftest import weights_app_factory, weights_settings

__all__ = ["weights_app_factory", "weights_settings"]
