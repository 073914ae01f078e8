"""DiT (Peebles & Xie 2023): the paper's parameter counts, patches, position embedding, attention,
adaLN-Zero initialisation, the null label under guidance, scan/remat equal to the plain network,
config validation, and the digits experiment through the CLI."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from genflow import config as C
from genflow.cli import build
from genflow.cli.main import load_experiment, main
from genflow.models import DIT_SIZES, DiT, Model, guided
from genflow.models.dit import DiTBlock, patchify, sincos_2d, unpatchify
from genflow.processes import VP
from tests.helpers import SLOW_RUN

ROOT = os.path.join(os.path.dirname(__file__), "..")
SMALL = dict(hidden=32, depth=3, heads=4, patch=2)


def _count(abstract) -> int:
    return sum(x.size for x in jax.tree.leaves(nnx.state(abstract, nnx.Param)))


def _official_count(hidden: int, depth: int, patch: int, channels: int, tokens: int, classes: int,
                    learn_sigma: bool, pos_embed: bool) -> int:
    """Parameters of facebookresearch/DiT's models.py, layer by layer (independent of genflow's DiT)."""
    h, out = hidden, channels * (2 if learn_sigma else 1)
    n = patch * patch * channels * h + h                         # x_embedder: Conv2d(C, h, p, stride p)
    n += (256 * h + h) + (h * h + h)                             # t_embedder: Linear(256, h), Linear(h, h)
    n += (classes + 1) * h                                       # y_embedder: table with the null class
    block = (h * 3 * h + 3 * h) + (h * h + h)                    # attention: qkv, proj (with biases)
    block += (h * 4 * h + 4 * h) + (4 * h * h + h)               # MLP h -> 4h -> h
    block += h * 6 * h + 6 * h                                   # adaLN modulation
    n += depth * block
    n += (h * 2 * h + 2 * h) + (h * patch * patch * out + patch * patch * out)  # final layer
    return n + (tokens * h if pos_embed else 0)                  # frozen pos_embed, an nn.Parameter


@pytest.mark.parametrize("name, paper", [("S/2", 33e6), ("B/2", 130e6), ("L/2", 458e6), ("XL/2", 675e6)])
def test_parameter_counts_match_the_paper(name, paper):
    """Table 1 of the paper counts DiT's official model at 256x256 images (32x32x4 latents, 256 tokens at
    patch 2), 1000 classes: what train.py logs as sum(p.numel() for p in model.parameters()), which
    includes the 1001-row label table (the null class), the learned-sigma output (8 channels) and the
    frozen 256 x hidden sin-cos pos_embed (an nn.Parameter with requires_grad=False); e.g. DiT-XL/2 is
    675,129,632. genflow's DiT has learned sigma off (4 output channels: p^2 * 4 * (hidden + 1) fewer
    parameters) and computes the position embedding as a constant (no parameter). Both counts are
    within 1% of the paper's; genflow's count equals the official architecture's layer-by-layer count
    with those two differences. Counted with eval_shape: nothing is materialised."""
    s = DIT_SIZES[name]
    net = nnx.eval_shape(lambda: DiT((32, 32, 4), hidden=s.hidden, depth=s.depth, heads=s.heads, patch=s.patch,
                                     num_classes=1000, scan=True, rngs=nnx.Rngs(0)))
    ours = _count(net)
    official = _official_count(s.hidden, s.depth, s.patch, 4, 256, 1000, learn_sigma=True, pos_embed=True)
    assert ours == _official_count(s.hidden, s.depth, s.patch, 4, 256, 1000, learn_sigma=False, pos_embed=False)
    assert abs(official - paper) / paper < 0.01, official
    assert abs(ours - paper) / paper < 0.01, ours
    if name == "XL/2":
        assert official == 675_129_632


def test_patches_are_the_stride_p_convolution_and_unpatchify_inverts_them():
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 12, 3))
    p, hidden = 2, 5
    w = jax.random.normal(jax.random.PRNGKey(1), (p * p * 3, hidden))
    tokens = patchify(x, p) @ w                                         # (B, 4 * 6, hidden), row-major
    conv = jax.lax.conv_general_dilated(x, w.reshape(p, p, 3, hidden), (p, p), "VALID",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(tokens, conv.reshape(2, 24, hidden), atol=1e-5)
    np.testing.assert_array_equal(unpatchify(patchify(x, p), p, 8, 12), x)


def test_position_embedding_is_maes_2d_sincos():
    """Token (row r, col c) of a 2 x 3 grid, width 8: [sin(c w), cos(c w), sin(r w), cos(r w)] with
    w = (1, 1/100) (10000^(-i/2), i = 0, 1): the first half encodes the column, as in MAE/DiT."""
    pe = sincos_2d(8, 2, 3)
    assert pe.shape == (6, 8)
    r, c = 1, 2
    w = np.array([1.0, 0.01])
    expect = np.concatenate([np.sin(c * w), np.cos(c * w), np.sin(r * w), np.cos(r * w)])
    np.testing.assert_allclose(pe[r * 3 + c], expect, rtol=1e-6)


def _dit(seed: int = 0, **kw) -> DiT:
    """A small DiT on 8x8x1, built under one jit (eager construction compiles every initialiser)."""
    return nnx.jit(lambda: DiT((8, 8, 1), **{**SMALL, **kw}, rngs=nnx.Rngs(seed)))()


@nnx.jit(static_argnums=(1, 2))
def _randomise(net: nnx.Module, seed: int = 0, scale: float = 0.2) -> nnx.Module:
    """Non-zero values for every parameter (adaLN-Zero makes a fresh DiT output exactly zero)."""
    params = nnx.state(net, nnx.Param)
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    nnx.update(net, jax.tree.unflatten(treedef, [scale * jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)]))
    return net


def test_attention_is_softmax_attention_over_heads():
    block = _randomise(DiTBlock(16, 4, rngs=nnx.Rngs(0)))
    x = jax.random.normal(jax.random.PRNGKey(2), (2, 6, 16))
    q, k, v = np.split(np.asarray(block.qkv(x)), 3, axis=-1)
    heads = lambda a: a.reshape(2, 6, 4, 4).transpose(0, 2, 1, 3)  # noqa: E731  (B, heads, T, d)
    logits = np.einsum("bhqd,bhkd->bhqk", heads(q), heads(k)) / np.sqrt(4.0)
    wts = np.exp(logits - logits.max(-1, keepdims=True))
    wts /= wts.sum(-1, keepdims=True)
    a = np.einsum("bhqk,bhkd->bhqd", wts, heads(v)).transpose(0, 2, 1, 3).reshape(2, 6, 16)
    np.testing.assert_allclose(block.attention(x), block.proj(jnp.asarray(a)), atol=1e-5)


def test_adaln_zero_starts_at_zero_and_trains():
    """At initialisation every block is the identity and the output is exactly 0 (zeroed modulation and
    final layer); the loss still has a gradient on the final linear layer, so training moves it."""
    net = _dit(num_classes=10)
    x, t = jax.random.normal(jax.random.PRNGKey(0), (4, 8, 8, 1)), jnp.linspace(0.1, 0.9, 4)
    assert float(jnp.abs(net(x, t, jnp.arange(4))).max()) == 0.0
    graphdef, params = nnx.split(net, nnx.Param)
    grads = jax.jit(jax.grad(lambda p: jnp.sum((nnx.merge(graphdef, p)(x, t, jnp.arange(4)) - x) ** 2)))(params)
    assert float(jnp.abs(grads["final"]["linear"]["kernel"][...]).max()) > 0


def test_null_label_and_classifier_free_guidance():
    """``null_label`` is num_classes, cond=None is the null label, and genflow's Guided model works on a
    DiT unchanged: (1 + w) out(x | c) - w out(x | null)."""
    net = _randomise(_dit(num_classes=10))
    assert net.null_label == 10 and _dit().null_label is None
    x, t, y = jax.random.normal(jax.random.PRNGKey(1), (3, 8, 8, 1)), jnp.full((3,), 0.4), jnp.array([1, 2, 3])
    w = 2.0
    # jitted, as genflow runs a network (eagerly every op compiles on its own: 15 s against 12 s here)
    call = nnx.jit(lambda net, cond: net(x, t, cond))
    out_null, out_y = nnx.jit(lambda net: net(x, t, None))(net), call(net, y)
    np.testing.assert_array_equal(out_null, call(net, jnp.full((3,), 10)))
    expect = (1 + w) * out_y - w * out_null
    # one batched 2B call against two B calls: float32 rounding, relative to the output's scale
    cfg = nnx.jit(lambda net: guided(Model(net, VP(), "eps"), w)(x, t, y))(net)
    np.testing.assert_allclose(cfg, expect, atol=2e-5 * float(jnp.abs(expect).max()))
    assert float(jnp.abs(out_y - out_null).max()) > 1e-3


def test_scan_equals_unrolled_and_remat_keeps_value_and_gradient():
    """The scanned network (blocks stacked by nnx.vmap, run by nnx.scan) with the unrolled network's
    weights gives the same output; remat gives the same output and gradient."""
    unrolled = _randomise(_dit(num_classes=10))
    scanned = _dit(1, num_classes=10, scan=True)
    params = nnx.state(unrolled, nnx.Param)
    blocks = [params["blocks"][i] for i in range(SMALL["depth"])]
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *blocks)
    rest = {k: v for k, v in params.items() if k != "blocks"}
    nnx.update(scanned, nnx.State({**rest, "blocks": stacked}))
    x, t, y = jax.random.normal(jax.random.PRNGKey(2), (2, 8, 8, 1)), jnp.array([0.2, 0.7]), jnp.array([3, 10])
    out = nnx.jit(lambda net: net(x, t, y))(unrolled)
    diff = float(jnp.abs(nnx.jit(lambda net: net(x, t, y))(scanned) - out).max())
    scale = float(jnp.abs(out).max())
    print(f"scan vs unrolled: max |difference| {diff:.2e} (output scale {scale:.2f})")
    assert diff < 2e-6 * scale  # float32 rounding of the same arithmetic compiled two ways

    def loss_and_grad(net):
        graphdef, p = nnx.split(net, nnx.Param)
        return jax.jit(jax.value_and_grad(lambda p: jnp.mean((nnx.merge(graphdef, p)(x, t, y) - x) ** 2)))(p)

    # remat on the scanned stack, the configuration large DiTs train with (and on the unrolled one
    # too with GENFLOW_SLOW=1)
    for plain in ((unrolled, scanned) if SLOW_RUN else (scanned,)):
        remat = _dit(2, num_classes=10, scan=plain.scan, remat=True)
        nnx.update(remat, nnx.state(plain, nnx.Param))
        (l0, g0), (l1, g1) = loss_and_grad(plain), loss_and_grad(remat)
        np.testing.assert_allclose(l1, l0, rtol=1e-6)
        for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)):
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5 * float(jnp.abs(a).max()))


@pytest.mark.parametrize("overrides, message", [
    (["net.patch=3"], "the 8x8 images do not split into 3x3 patches; use a net.patch that divides 8."),
    (["net.width=30", "net.heads=4"], "net.width 30 does not split over net.heads 4; use a width that is a multiple of 4."),
    (["net.width=18", "net.heads=3"], "net.width 18 must be a multiple of 4 for DiT's 2-D sin-cos position embedding."),
    (["net.dit=M/2"], "net.dit 'M/2' is not one of"),
    (["net.heads=0"], "net.heads must be positive, got 0."),
    (["data.name=moons"], "net.name 'dit' needs image data (H, W, C), but this data set has shape (2,)"),
])
def test_bad_dit_values_are_one_sentence(capsys, tmp_path, overrides, message):
    workdir = str(tmp_path / "never")
    sets = [a for o in ["net.name=dit", "net.width=32", "net.depth=2", *overrides] for a in ("--set", o)]
    code = main(["train", *sets, "--workdir", workdir])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not os.path.exists(workdir)


def test_imagenet64_config_builds_a_dit_b4():
    """The GPU-sized config validates and its network (DiT-B/4 on 64x64x3, 1000 classes, scanned) has
    the B/4 parameter count; built with eval_shape only."""
    exp = load_experiment(os.path.join(ROOT, "experiments", "imagenet64_dit.py"))
    build.validate(exp)
    shape = build.data_shape(exp.data)
    net = nnx.eval_shape(lambda: build.build_net(exp.net, shape, exp.train.dtype, 0))
    s = build.dit_size(exp.net)
    assert (shape, s, net.num_classes, net.scan) == ((64, 64, 3), DIT_SIZES["B/4"], 1000, True)
    assert _count(net) == _official_count(768, 12, 4, 3, 256, 1000, learn_sigma=False, pos_embed=False)


@pytest.mark.slow  # the DiT trains in test_adaln_zero_starts_at_zero_and_trains; the CLI path is the U-Net's
def test_digits_dit_experiment_trains_through_the_cli(capsys, tmp_path):
    workdir = str(tmp_path / "dit")
    tiny = ["net.width=32", "net.depth=2", "net.heads=2", "train.steps=3", "train.batch_size=16",
            "train.log_every=1", "sample.steps=2", "sample.num=8"]
    code = main(["train", os.path.join(ROOT, "experiments", "digits_dit.py"), *[a for o in tiny for a in ("--set", o)],
                 "--workdir", workdir, "--no-progress"])
    assert code == 0, capsys.readouterr().err
    saved = C.from_dict(C.Experiment, __import__("json").load(open(os.path.join(workdir, "config.json"))))
    assert saved.net.name == "dit" and saved.net.num_classes == 10
    rows = [__import__("json").loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert losses and np.isfinite(losses).all()
    assert os.path.exists(os.path.join(workdir, "samples.png"))
