"""The Model wrapper, its parameterizations, guidance, and networks (MLP, U-Net, DiT, the GAN's critic)."""
from genflow.models.critic import Critic
from genflow.models.dit import DIT_SIZES, DiT
from genflow.models.guidance import Guided, guided
from genflow.models.mlp import MLP
from genflow.models.model import Model, output_scale
from genflow.models.parameterization import PREDICTIONS, QUANTITIES, Parameterization, coefficients, edm
from genflow.models.spec import ModelSpec, train_and_eval_specs

__all__ = ["Guided", "guided", "ModelSpec", "train_and_eval_specs", "Model", "PREDICTIONS", "QUANTITIES", "Parameterization", "coefficients", "edm", "output_scale", "MLP", "DiT", "DIT_SIZES", "Critic"]
