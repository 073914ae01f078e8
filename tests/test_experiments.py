"""Every experiment file loads and validates; the CIFAR-10 config is EDM's DDPM++ size."""
import glob
import os

import jax
import pytest
from flax import nnx

from genflow import config as C
from genflow.cli import build
from genflow.cli.main import load_experiment

ROOT = os.path.join(os.path.dirname(__file__), "..")
FILES = sorted(glob.glob(os.path.join(ROOT, "experiments", "*.py")))


@pytest.mark.parametrize("path", FILES, ids=[os.path.basename(p) for p in FILES])
def test_experiment_loads_and_round_trips(path):
    exp = load_experiment(path)
    assert C.from_dict(type(exp), C.to_dict(exp)) == exp or not isinstance(exp, C.Experiment)


def test_cifar10_ddpmpp_has_edm_parameter_count():
    exp = load_experiment(os.path.join(ROOT, "experiments", "cifar10_ddpmpp.py"))
    from genflow.models.unet import UNet

    n = exp.net
    abstract = nnx.eval_shape(lambda: UNet((32, 32, 3), channels=n.channels, channel_mult=n.channel_mult,
                                           num_res_blocks=n.num_res_blocks, attn_resolutions=n.attn_resolutions,
                                           dropout=n.dropout, rngs=nnx.Rngs(params=0, dropout=1)))
    count = sum(x.size for x in jax.tree.leaves(nnx.state(abstract, nnx.Param)))
    assert abs(count - 55_733_763) / 55_733_763 < 0.05, count


def test_default_experiment_is_the_digits_file():
    assert load_experiment(None) == load_experiment(os.path.join(ROOT, "experiments", "digits.py"))


def test_cifar10_edm_is_the_edm_recipe_on_the_ddpmpp_network():
    """EDM preconditioning + EDM weighting + log-normal noise levels on the same DDPM++ network; the
    objective's weight on the network's own error is 1 at every noise level (see test_parameterization)."""
    import jax.numpy as jnp
    import numpy as np

    from genflow.models import output_scale
    from genflow.objectives import weighting

    edm_exp = load_experiment(os.path.join(ROOT, "experiments", "cifar10_edm.py"))
    vp_exp = load_experiment(os.path.join(ROOT, "experiments", "cifar10_ddpmpp.py"))
    build.validate(edm_exp)
    assert edm_exp.net == vp_exp.net
    assert (edm_exp.predicts, edm_exp.weighting, edm_exp.time_sampling) == ("edm", "edm", "lognormal")
    param = build.build_parameterization(edm_exp)
    assert param.predicts == "edm" and param.sigma_data == 0.5 and param.noise_label == "log_sigma"
    process = build.build_process(edm_exp.process)
    t = jnp.linspace(0.05, 0.95, 7)
    w = weighting.edm(edm_exp.sigma_data)(process, t) * output_scale(process, param, "x0", t) ** 2
    np.testing.assert_allclose(w, 1.0, rtol=1e-5)
    # 17 Heun steps on EDM's Karras levels and the last step to sigma = 0: EDM's 35 NFE
    assert edm_exp.sample.steps * 2 + int(edm_exp.sample.denoise) == 35
