"""The one way to build a ``Model`` from a network's state: ``ModelSpec``.

A training run keeps its network as NNX state: the static ``graphdef``, the trainable
``params`` (which change every step, and come in several copies: params, EMA, a restored
checkpoint) and the ``rest`` (RNG streams, ...). A ``ModelSpec`` holds what does not change
(graphdef, rest, process, parameterization) and turns any params into a ``Model``:

    spec = ModelSpec.from_net(net, process, "edm")       # or ModelSpec.from_net(net.eval(), ...)
    model = spec.model(state.ema)                        # a Model, inside or outside jit

The train step, samplers in the CLI, ReFlow couplings, the GAN, the objective comparison and
the benchmarks all build their models here, so a change to how a network becomes a model
(preconditioning, self-conditioning, ...) is one change.
"""
from __future__ import annotations

from dataclasses import dataclass

from flax import nnx

from genflow.models.model import Model
from genflow.models.parameterization import Parameterization, as_parameterization
from genflow.processes.base import AbstractProcess


@dataclass(frozen=True)
class ModelSpec:
    """(graphdef, rest, process, parameterization) of a network; ``model(params)`` is its Model.

    ``null_label`` is the network's "no label" class (None for an unconditional network).
    """

    graphdef: nnx.GraphDef
    rest: nnx.State
    process: AbstractProcess
    parameterization: Parameterization
    null_label: int | None = None

    @classmethod
    def from_net(cls, net: nnx.Module, process: AbstractProcess,
                 predicts: "str | Parameterization" = "eps") -> "ModelSpec":
        """The spec of an NNX network as it is now (call ``net.eval()`` first for sampling)."""
        graphdef, _, rest = nnx.split(net, nnx.Param, ...)
        return cls(graphdef, rest, process, as_parameterization(predicts), getattr(net, "null_label", None))

    @property
    def predicts(self) -> str:
        return self.parameterization.predicts

    def net(self, params: nnx.State, *, copy: bool = False) -> nnx.Module:
        """The network with ``params`` (``copy=True`` inside a differentiated function whose
        network mutates RNG state, e.g. dropout)."""
        return nnx.merge(self.graphdef, params, self.rest, copy=copy)

    def model(self, params: nnx.State, *, copy: bool = False) -> Model:
        """The ``Model`` of this network with ``params``."""
        return Model(self.net(params, copy=copy), self.process, self.parameterization)


def train_and_eval_specs(net: nnx.Module, process: AbstractProcess,
                         predicts: "str | Parameterization" = "eps") -> tuple[ModelSpec, ModelSpec, nnx.State]:
    """(training spec, sampling spec, params) of one network: dropout as configured in the first,
    off in the second (``net.eval()``, which this calls); both take the same params."""
    param = as_parameterization(predicts)
    train = ModelSpec.from_net(net, process, param)
    _, params, _ = nnx.split(net, nnx.Param, ...)
    net.eval()
    return train, ModelSpec.from_net(net, process, param), params
