"""The Model wrapper, its parameterizations, and networks (MLP, U-Net)."""
from genflow.models.mlp import MLP
from genflow.models.model import PREDICTIONS, Model, coefficients, output_scale

__all__ = ["Model", "PREDICTIONS", "coefficients", "output_scale", "MLP"]
