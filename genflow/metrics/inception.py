"""The Inception-v3 network behind FID, as in pytorch-fid (``FIDInceptionV3``), in flax NNX.

This is the TensorFlow FID Inception (the 2015-12-05 graph of Heusel et al. 2017's TTUR code)
in the form pytorch-fid ports it: torchvision's Inception-v3 layout with each conv followed by
BatchNorm (eps 1e-3, running statistics) and ReLU, the 3x3 average pools of the A, C and first
E blocks ignoring the zero padding (``count_include_pad=False``, TensorFlow's rule), and a 3x3
*max* pool in the last E block (``Mixed_7c``; a quirk of that graph). The 2048-d features are
the global average pool after ``Mixed_7c`` ("pool3"). Layout NHWC, float32, and convolutions at
``Precision.HIGHEST`` (no TF32/bf16 passes on GPU), so features match the float32 torch network.

Preprocessing is pytorch-fid's: images in [0, 1] are resized to 299x299 by bilinear
interpolation with ``align_corners=False`` and *no antialiasing* (``torch.nn.functional.
interpolate``; ``jax.image.resize`` antialiases when it downsamples, so it is not used), then
mapped to [-1, 1] by 2x - 1.

The weights are pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``, read with genflow's
torch-free reader: ``load_fid_inception()`` finds it in the cache directory or downloads it once.
"""
from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import Array, lax

from genflow.config import ConfigError
from genflow.cache import cache_dir

FID_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                   + FID_WEIGHTS_NAME)
FID_WEIGHTS_SHA256_PREFIX = "6726825d"   # torch hub's convention: the file name carries it
INPUT_SIZE = 299
FEATURE_DIM = 2048
_BN_EPS = 1e-3
_HIGHEST = lax.Precision.HIGHEST


# --------------------------------------------------------------------------- network


class _ConvBN(nnx.Module):
    """torchvision's BasicConv2d: conv (no bias) -> BatchNorm(eps 1e-3, running stats) -> ReLU."""

    def __init__(self, cin: int, cout: int, kernel, stride: int = 1, padding=0, *, rngs: nnx.Rngs):
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        ph, pw = (padding, padding) if isinstance(padding, int) else padding
        self.conv = nnx.Conv(cin, cout, (kh, kw), strides=stride, padding=[(ph, ph), (pw, pw)],
                             use_bias=False, precision=_HIGHEST, rngs=rngs)
        self.bn = nnx.BatchNorm(cout, use_running_average=True, epsilon=_BN_EPS, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        return jax.nn.relu(self.bn(self.conv(x)))


def _max_pool(x: Array, size: int, stride: int, pad: int = 0) -> Array:
    """torch ``max_pool2d``: padding counts as -inf."""
    return lax.reduce_window(x, jnp.array(-jnp.inf, x.dtype), lax.max, (1, size, size, 1), (1, stride, stride, 1),
                             ((0, 0), (pad, pad), (pad, pad), (0, 0)))


def _avg_pool_3x3_same(x: Array) -> Array:
    """3x3 stride-1 average pool, padding 1, dividing by the number of real (unpadded) pixels:
    torch ``avg_pool2d(count_include_pad=False)``, TensorFlow's 'SAME' average pool."""
    window, strides, pads = (1, 3, 3, 1), (1, 1, 1, 1), ((0, 0), (1, 1), (1, 1), (0, 0))
    total = lax.reduce_window(x, jnp.array(0, x.dtype), lax.add, window, strides, pads)
    ones = jnp.ones((1,) + x.shape[1:3] + (1,), x.dtype)
    count = lax.reduce_window(ones, jnp.array(0, x.dtype), lax.add, window, strides, pads)
    return total / count


class _BlockA(nnx.Module):
    """FIDInceptionA (Mixed_5b/c/d): 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool(no pad count)-1x1."""

    def __init__(self, cin: int, pool_features: int, *, rngs: nnx.Rngs):
        self.branch1x1 = _ConvBN(cin, 64, 1, rngs=rngs)
        self.branch5x5_1 = _ConvBN(cin, 48, 1, rngs=rngs)
        self.branch5x5_2 = _ConvBN(48, 64, 5, padding=2, rngs=rngs)
        self.branch3x3dbl_1 = _ConvBN(cin, 64, 1, rngs=rngs)
        self.branch3x3dbl_2 = _ConvBN(64, 96, 3, padding=1, rngs=rngs)
        self.branch3x3dbl_3 = _ConvBN(96, 96, 3, padding=1, rngs=rngs)
        self.branch_pool = _ConvBN(cin, pool_features, 1, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        a = self.branch1x1(x)
        b = self.branch5x5_2(self.branch5x5_1(x))
        c = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        d = self.branch_pool(_avg_pool_3x3_same(x))
        return jnp.concatenate([a, b, c, d], axis=-1)


class _BlockB(nnx.Module):
    """InceptionB (Mixed_6a), the 35 -> 17 reduction: 3x3/2 | 1x1-3x3-3x3/2 | maxpool 3x3/2."""

    def __init__(self, cin: int, *, rngs: nnx.Rngs):
        self.branch3x3 = _ConvBN(cin, 384, 3, stride=2, rngs=rngs)
        self.branch3x3dbl_1 = _ConvBN(cin, 64, 1, rngs=rngs)
        self.branch3x3dbl_2 = _ConvBN(64, 96, 3, padding=1, rngs=rngs)
        self.branch3x3dbl_3 = _ConvBN(96, 96, 3, stride=2, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        a = self.branch3x3(x)
        b = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return jnp.concatenate([a, b, _max_pool(x, 3, 2)], axis=-1)


class _BlockC(nnx.Module):
    """FIDInceptionC (Mixed_6b..e): factorised 7x7 convs (1x7 and 7x1) of width ``c7``."""

    def __init__(self, cin: int, c7: int, *, rngs: nnx.Rngs):
        row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
        self.branch1x1 = _ConvBN(cin, 192, 1, rngs=rngs)
        self.branch7x7_1 = _ConvBN(cin, c7, 1, rngs=rngs)
        self.branch7x7_2 = _ConvBN(c7, c7, **row, rngs=rngs)
        self.branch7x7_3 = _ConvBN(c7, 192, **col, rngs=rngs)
        self.branch7x7dbl_1 = _ConvBN(cin, c7, 1, rngs=rngs)
        self.branch7x7dbl_2 = _ConvBN(c7, c7, **col, rngs=rngs)
        self.branch7x7dbl_3 = _ConvBN(c7, c7, **row, rngs=rngs)
        self.branch7x7dbl_4 = _ConvBN(c7, c7, **col, rngs=rngs)
        self.branch7x7dbl_5 = _ConvBN(c7, 192, **row, rngs=rngs)
        self.branch_pool = _ConvBN(cin, 192, 1, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        a = self.branch1x1(x)
        b = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        c = self.branch7x7dbl_1(x)
        for conv in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            c = conv(c)
        d = self.branch_pool(_avg_pool_3x3_same(x))
        return jnp.concatenate([a, b, c, d], axis=-1)


class _BlockD(nnx.Module):
    """InceptionD (Mixed_7a), the 17 -> 8 reduction: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool 3x3/2."""

    def __init__(self, cin: int, *, rngs: nnx.Rngs):
        self.branch3x3_1 = _ConvBN(cin, 192, 1, rngs=rngs)
        self.branch3x3_2 = _ConvBN(192, 320, 3, stride=2, rngs=rngs)
        self.branch7x7x3_1 = _ConvBN(cin, 192, 1, rngs=rngs)
        self.branch7x7x3_2 = _ConvBN(192, 192, (1, 7), padding=(0, 3), rngs=rngs)
        self.branch7x7x3_3 = _ConvBN(192, 192, (7, 1), padding=(3, 0), rngs=rngs)
        self.branch7x7x3_4 = _ConvBN(192, 192, 3, stride=2, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        a = self.branch3x3_2(self.branch3x3_1(x))
        b = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return jnp.concatenate([a, b, _max_pool(x, 3, 2)], axis=-1)


class _BlockE(nnx.Module):
    """FIDInceptionE_1 (Mixed_7b, average pool without the padding) or FIDInceptionE_2
    (Mixed_7c, ``max_pool=True``: 3x3 stride-1 max pool, TF-FID's quirk)."""

    def __init__(self, cin: int, *, max_pool: bool, rngs: nnx.Rngs):
        self.max_pool = max_pool
        self.branch1x1 = _ConvBN(cin, 320, 1, rngs=rngs)
        self.branch3x3_1 = _ConvBN(cin, 384, 1, rngs=rngs)
        self.branch3x3_2a = _ConvBN(384, 384, (1, 3), padding=(0, 1), rngs=rngs)
        self.branch3x3_2b = _ConvBN(384, 384, (3, 1), padding=(1, 0), rngs=rngs)
        self.branch3x3dbl_1 = _ConvBN(cin, 448, 1, rngs=rngs)
        self.branch3x3dbl_2 = _ConvBN(448, 384, 3, padding=1, rngs=rngs)
        self.branch3x3dbl_3a = _ConvBN(384, 384, (1, 3), padding=(0, 1), rngs=rngs)
        self.branch3x3dbl_3b = _ConvBN(384, 384, (3, 1), padding=(1, 0), rngs=rngs)
        self.branch_pool = _ConvBN(cin, 192, 1, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        a = self.branch1x1(x)
        b = self.branch3x3_1(x)
        b = jnp.concatenate([self.branch3x3_2a(b), self.branch3x3_2b(b)], axis=-1)
        c = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        c = jnp.concatenate([self.branch3x3dbl_3a(c), self.branch3x3dbl_3b(c)], axis=-1)
        pooled = _max_pool(x, 3, 1, 1) if self.max_pool else _avg_pool_3x3_same(x)
        d = self.branch_pool(pooled)
        return jnp.concatenate([a, b, c, d], axis=-1)


class FIDInceptionV3(nnx.Module):
    """pytorch-fid's FIDInceptionV3 up to pool3: ``net(x) -> (N, 2048)`` for x (N, 299, 299, 3)
    already scaled to [-1, 1] (see ``preprocess``). Attribute names are the torch module names,
    so ``Mixed_5b.branch1x1.conv.weight`` in the state dict is ``net.Mixed_5b.branch1x1.conv.kernel``.

    Build it without compiling every initialiser on a CPU: ``nnx.eval_shape(lambda:
    FIDInceptionV3(rngs=nnx.Rngs(0)))`` then ``load_state_dict`` (what ``load_fid_inception``
    does), or ``nnx.jit(lambda: FIDInceptionV3(rngs=nnx.Rngs(0)))()`` for random weights."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.Conv2d_1a_3x3 = _ConvBN(3, 32, 3, stride=2, rngs=rngs)
        self.Conv2d_2a_3x3 = _ConvBN(32, 32, 3, rngs=rngs)
        self.Conv2d_2b_3x3 = _ConvBN(32, 64, 3, padding=1, rngs=rngs)
        self.Conv2d_3b_1x1 = _ConvBN(64, 80, 1, rngs=rngs)
        self.Conv2d_4a_3x3 = _ConvBN(80, 192, 3, rngs=rngs)
        self.Mixed_5b = _BlockA(192, 32, rngs=rngs)
        self.Mixed_5c = _BlockA(256, 64, rngs=rngs)
        self.Mixed_5d = _BlockA(288, 64, rngs=rngs)
        self.Mixed_6a = _BlockB(288, rngs=rngs)
        self.Mixed_6b = _BlockC(768, 128, rngs=rngs)
        self.Mixed_6c = _BlockC(768, 160, rngs=rngs)
        self.Mixed_6d = _BlockC(768, 160, rngs=rngs)
        self.Mixed_6e = _BlockC(768, 192, rngs=rngs)
        self.Mixed_7a = _BlockD(768, rngs=rngs)
        self.Mixed_7b = _BlockE(1280, max_pool=False, rngs=rngs)
        self.Mixed_7c = _BlockE(2048, max_pool=True, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = _max_pool(x, 3, 2)                                   # 147 -> 73
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = _max_pool(x, 3, 2)                                   # 71 -> 35
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b,
                      self.Mixed_6c, self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        return jnp.mean(x, axis=(1, 2))                          # pool3: (N, 2048)


# --------------------------------------------------------------------------- preprocessing


def _linear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of torch's bilinear resize along one axis (align_corners=False).

    src = max(scale (i + 1/2) - 1/2, 0) with scale = n_in / n_out in float32, the multiply-add
    rounded once to float32 as torch's compiled kernel does (an FMA; rounding the product first
    moves weights by up to ~4e-6 at 299 pixels); i0 = min(floor(src), n_in - 1),
    i1 = min(i0 + 1, n_in - 1), w1 = src - i0, w0 = 1 - w1 (float32)."""
    f32 = np.float32
    scale = f32(n_in) / f32(n_out)
    half_steps = np.arange(n_out, dtype=f32) + f32(0.5)
    # float32 x float32 is exact in float64, so this is fma(scale, i + 1/2, -1/2) rounded once.
    src = (np.float64(scale) * half_steps.astype(np.float64) - 0.5).astype(f32)
    src = np.maximum(src, f32(0))
    i0 = np.minimum(np.floor(src).astype(np.int32), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w1 = np.clip(src - i0.astype(f32), f32(0), f32(1)).astype(f32)
    return i0, i1, (f32(1) - w1).astype(f32), w1


def resize_bilinear(x: Array, height: int, width: int) -> Array:
    """Bilinear resize of NHWC images exactly as ``torch.nn.functional.interpolate(mode='bilinear',
    align_corners=False)`` (no antialiasing): a gather of two rows and a linear blend, then the
    same along columns."""
    if x.shape[1] != height:
        i0, i1, w0, w1 = _linear_taps(x.shape[1], height)
        x = x[:, i0] * w0[None, :, None, None] + x[:, i1] * w1[None, :, None, None]
    if x.shape[2] != width:
        j0, j1, v0, v1 = _linear_taps(x.shape[2], width)
        x = x[:, :, j0] * v0[None, None, :, None] + x[:, :, j1] * v1[None, None, :, None]
    return x


def preprocess(images: Array) -> Array:
    """pytorch-fid's input pipeline: images (N, H, W, 3) uint8 in [0, 255] (divided by 255, as
    ``ToTensor`` does) or float in [0, 1] -> bilinear resize to 299x299 -> 2x - 1, float32."""
    x = images.astype(jnp.float32)
    if jnp.issubdtype(images.dtype, jnp.integer):
        x = x / 255.0
    x = resize_bilinear(x, INPUT_SIZE, INPUT_SIZE)
    return 2.0 * x - 1.0


# --------------------------------------------------------------------------- weights


_LEAF_TO_TORCH = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}
_IGNORED_SUFFIXES = (".num_batches_tracked",)
_IGNORED_PREFIXES = ("fc.",)           # the 1008-way classifier: not part of pool3 features


def torch_names(model: nnx.Module) -> dict[str, tuple[int, ...]]:
    """The state-dict name -> torch shape (OIHW for conv kernels) of every variable of ``model``."""
    out = {}
    for path, var in nnx.to_flat_state(nnx.state(model)):
        name, shape = _torch_name(path), tuple(var.get_value().shape)
        out[name] = (shape[3], shape[2], shape[0], shape[1]) if path[-1] == "kernel" else shape
    return out


def _torch_name(path: tuple) -> str:
    return ".".join(str(p) for p in path[:-1]) + "." + _LEAF_TO_TORCH[path[-1]]


def load_state_dict(model: nnx.Module, state_dict: Mapping[str, np.ndarray]) -> nnx.Module:
    """Copy a pytorch-fid state dict (torch names and layouts) into ``model`` in place.

    Conv weights (O, I, H, W) become HWIO kernels; BatchNorm weight/bias/running_mean/running_var
    become scale/bias/mean/var. ``fc.*`` and ``*.num_batches_tracked`` are ignored; any other name
    the model lacks, any name it has that is missing, or a shape that differs is an error naming it.
    Works on an abstract model from ``nnx.eval_shape`` too. Returns ``model``."""
    flat = nnx.to_flat_state(nnx.state(model))
    wanted = {_torch_name(path): (path, var) for path, var in flat}
    given = {k: v for k, v in state_dict.items()
             if not (k.endswith(_IGNORED_SUFFIXES) or k.startswith(_IGNORED_PREFIXES))}
    missing = sorted(set(wanted) - set(given))
    extra = sorted(set(given) - set(wanted))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} name(s), e.g. {', '.join(missing[:3])}")
        if extra:
            parts.append(f"unexpected {len(extra)} name(s), e.g. {', '.join(extra[:3])}")
        raise ValueError(f"the state dict does not match FIDInceptionV3: {'; '.join(parts)}; "
                         "use pytorch-fid's pt_inception-2015-12-05 weights.")
    updates = []
    for name, (path, var) in wanted.items():
        a = np.asarray(given[name], np.float32)
        if path[-1] == "kernel":
            a = a.transpose(2, 3, 1, 0) if a.ndim == 4 else a
        want = tuple(var.get_value().shape)
        if a.shape != want:
            raise ValueError(f"state-dict entry {name} has shape {np.shape(given[name])}, which does not fit "
                             f"FIDInceptionV3's {want} (HWIO for conv kernels).")
        updates.append((path, jnp.asarray(a)))
    nnx.update(model, nnx.from_flat_state(updates))
    return model




def _download(url: str, dest: str, timeout: float = 10.0) -> None:
    """Download ``url`` to ``dest`` atomically (a temporary file renamed into place), with a
    progress bar, checking the sha256 prefix in the file name."""
    from tqdm import tqdm

    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with urllib.request.urlopen(url, timeout=timeout) as r:
        total = int(r.headers.get("Content-Length") or 0) or None
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dest), suffix=".part")
        digest = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as f, tqdm(total=total, unit="B", unit_scale=True, desc="FID Inception weights",
                                                 file=sys.stderr) as bar:
                while chunk := r.read(1 << 20):
                    f.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
            if not digest.hexdigest().startswith(FID_WEIGHTS_SHA256_PREFIX):
                raise OSError(f"downloaded file has sha256 {digest.hexdigest()[:8]}..., expected "
                              f"{FID_WEIGHTS_SHA256_PREFIX}...")
            os.replace(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)


def find_fid_weights(path: str | None = None) -> str:
    """The path of pytorch-fid's Inception weights: ``path`` (a file, or a directory holding
    ``pt_inception-2015-12-05-6726825d.pth``), else the cache directory, downloading the file there
    once when the internet is reachable; otherwise one sentence saying where to put it."""
    if path is not None:
        cand = os.path.join(path, FID_WEIGHTS_NAME) if os.path.isdir(path) else path
        if not os.path.isfile(cand):
            raise ConfigError(f"FID Inception weights {cand} do not exist; download {FID_WEIGHTS_URL} and pass "
                              "its path.")
        return cand
    where = cache_dir()
    dest = os.path.join(where, FID_WEIGHTS_NAME)
    if os.path.isfile(dest):
        return dest
    try:
        _download(FID_WEIGHTS_URL, dest)
    except (OSError, urllib.error.URLError, ValueError) as e:
        reason = str(getattr(e, "reason", e)) or type(e).__name__
        raise ConfigError(f"the FID Inception weights {FID_WEIGHTS_NAME} are not in {where} and could not be "
                          f"downloaded ({reason}); download {FID_WEIGHTS_URL} where there is internet and put it "
                          f"in {where} (or set GENFLOW_CACHE to its directory, or pass its path).") from None
    return dest


def load_fid_inception(path: str | None = None) -> FIDInceptionV3:
    """FIDInceptionV3 with pytorch-fid's weights (see ``find_fid_weights`` for where they come from)."""
    from genflow.metrics.torch_checkpoint import TorchCheckpointError, load_torch_checkpoint

    file = find_fid_weights(path)
    try:
        state_dict = load_torch_checkpoint(file)
    except (TorchCheckpointError, OSError, EOFError) as e:
        raise ConfigError(f"{file} is not a readable torch checkpoint ({e}); download {FID_WEIGHTS_URL} "
                          "again.") from None
    if not isinstance(state_dict, Mapping):
        raise ConfigError(f"{file} holds a {type(state_dict).__name__}, not a state dict; download "
                          f"{FID_WEIGHTS_URL} again.")
    model = nnx.eval_shape(lambda: FIDInceptionV3(rngs=nnx.Rngs(0)))
    try:
        return load_state_dict(model, state_dict)
    except ValueError as e:
        raise ConfigError(f"{file}: {e}") from None


# --------------------------------------------------------------------------- features


class InceptionFeatures:
    """Compiled pool3 features: ``InceptionFeatures(model)(images, batch_size) -> (N, 2048) float64``.

    images: (N, H, W, 3) uint8 in [0, 255] or float in [0, 1] (grey (N, H, W, 1) is repeated to
    RGB), any size; each batch is resized to 299x299 on the device. The last batch is padded to
    ``batch_size`` so one program serves every batch of a given image size."""

    def __init__(self, model: FIDInceptionV3):
        self.graphdef, self.state = nnx.split(model)
        graphdef = self.graphdef
        self._forward = jax.jit(lambda state, images: nnx.merge(graphdef, state)(preprocess(images)))

    def batch(self, images: np.ndarray) -> np.ndarray:
        """Features of one batch, float64 (no padding, no progress bar)."""
        return np.asarray(self._forward(self.state, _check_images(images)), np.float64)

    def __call__(self, images: np.ndarray, batch_size: int = 200, progress: bool = True) -> np.ndarray:
        from genflow.progress import progress_bar

        images = _check_images(images)
        n = len(images)
        out = np.empty((n, FEATURE_DIM), np.float64)
        with progress_bar(n, desc="Inception features", unit="img", disable=not progress,
                          every=max(batch_size, n // 20)) as bar:
            for start in range(0, n, batch_size):
                chunk = images[start:start + batch_size]
                m = len(chunk)
                if m < batch_size and n > batch_size:  # reuse the compiled full-batch program
                    chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - m, 0)])
                out[start:start + m] = np.asarray(self._forward(self.state, chunk), np.float64)[:m]
                bar.update(m)
        return out


def _check_images(images) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"Inception features need images (N, H, W, 3) or (N, H, W, 1), got shape {images.shape}.")
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    if images.dtype == np.uint8:
        return images
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError("Inception features need uint8 images in [0, 255] or float images in [0, 1], "
                         f"got {images.dtype}.")
    lo, hi = float(images.min(initial=0.0)), float(images.max(initial=1.0))
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise ValueError(f"float images must lie in [0, 1] for Inception features, got values in [{lo:.3g}, {hi:.3g}]; "
                         "map [-1, 1] samples with (x + 1) / 2.")
    return images.astype(np.float32)


def inception_features(params_or_model, images: np.ndarray, batch_size: int = 200,
                       progress: bool = True) -> np.ndarray:
    """pool3 features (N, 2048), float64, of images (N, H, W, 3) uint8 in [0, 255] or float in [0, 1].

    Args:
        params_or_model: an ``InceptionFeatures`` (reuses its compiled program), an
            ``FIDInceptionV3``, a torch-named state dict, or the path of a ``.pth`` file.
        images: any size; resized to 299x299 bilinearly as pytorch-fid does.
        batch_size: images per forward pass."""
    if isinstance(params_or_model, InceptionFeatures):
        extractor = params_or_model
    elif isinstance(params_or_model, FIDInceptionV3):
        extractor = InceptionFeatures(params_or_model)
    elif isinstance(params_or_model, Mapping):
        model = nnx.eval_shape(lambda: FIDInceptionV3(rngs=nnx.Rngs(0)))
        extractor = InceptionFeatures(load_state_dict(model, params_or_model))
    elif isinstance(params_or_model, (str, os.PathLike)) or params_or_model is None:
        extractor = InceptionFeatures(load_fid_inception(params_or_model))
    else:
        raise TypeError(f"inception_features takes an InceptionFeatures, FIDInceptionV3, state dict or path, "
                        f"not {type(params_or_model).__name__}")
    return extractor(images, batch_size=batch_size, progress=progress)

