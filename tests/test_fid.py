"""FID machinery without torch: the checkpoint reader, the Inception port's weight mapping and
preprocessing, KID, pytorch-fid statistics files, and the missing-weights message.

tests/data/tiny_torch_state_dict{,_legacy}.pth were written once by torch 2.14 (zip and legacy
formats) with:

    a = torch.arange(12, dtype=torch.float32).reshape(3, 4) / 8 - 0.5
    sd = OrderedDict(**{"layer.weight": a, "layer.weight_t": a.t(), "layer.rows": a[1:, ::2],
        "half": torch.arange(6, dtype=torch.float16).reshape(2, 3) / 4,
        "bf16": torch.arange(4, dtype=torch.bfloat16) / 2, "long": torch.arange(5) - 2,
        "int": torch.arange(3, dtype=torch.int32) * 1000, "double": torch.arange(3, dtype=torch.float64) / 3,
        "bn.num_batches_tracked": torch.tensor(7), "empty": torch.zeros(0, 3)})
    torch.save(sd, "tiny_torch_state_dict.pth")
    torch.save(sd, "tiny_torch_state_dict_legacy.pth", _use_new_zipfile_serialization=False)

(``layer.weight_t`` and ``layer.rows`` are views sharing ``a``'s storage: a transpose, and an
offset strided slice.) The parity of the port with pytorch-fid's network is
benchmarks/fid_parity.py, which needs torch.
"""
import os
import pickle
import urllib.error
import zipfile

import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from flax import nnx

from genflow.config import ConfigError
from genflow.cli import fid as FC
from genflow.metrics import fid as F
from genflow.metrics import inception as I
from genflow.metrics.frechet import feature_stats, frechet_distance
from genflow.metrics.torch_checkpoint import TorchCheckpointError, load_torch_checkpoint

DATA = os.path.join(os.path.dirname(__file__), "data")


# --------------------------------------------------------------------------- torch-free reader


def _expected_tiny():
    a = np.arange(12, dtype=np.float32).reshape(3, 4) / np.float32(8) - np.float32(0.5)
    return {
        "layer.weight": a,
        "layer.weight_t": a.T,
        "layer.rows": a[1:, ::2],
        "half": np.arange(6, dtype=np.float16).reshape(2, 3) / np.float16(4),
        "bf16": (np.arange(4) / 2).astype(ml_dtypes.bfloat16),
        "long": np.arange(5, dtype=np.int64) - 2,
        "int": np.arange(3, dtype=np.int32) * 1000,
        "double": np.arange(3, dtype=np.float64) / 3,
        "bn.num_batches_tracked": np.array(7, np.int64),
        "empty": np.zeros((0, 3), np.float32),
    }


@pytest.mark.parametrize("name", ["tiny_torch_state_dict.pth", "tiny_torch_state_dict_legacy.pth"])
def test_reader_returns_exact_arrays_in_both_torch_formats(name):
    sd = load_torch_checkpoint(os.path.join(DATA, name))
    want = _expected_tiny()
    assert list(sd) == list(want)  # an OrderedDict, in saved order
    for key, w in want.items():
        got = sd[key]
        assert got.dtype == w.dtype and got.shape == w.shape, key
        assert got.flags["C_CONTIGUOUS"], key
        np.testing.assert_array_equal(got, w, err_msg=key)
    # Hard-coded values, independent of the formula above.
    assert sd["layer.weight_t"][1].tolist() == [-0.375, 0.125, 0.625]
    assert sd["layer.rows"].tolist() == [[0.0, 0.25], [0.5, 0.75]]


def _zip_with_pickle(path, obj_bytes):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", obj_bytes)
        z.writestr("archive/version", "3\n")


def test_reader_refuses_code_and_non_checkpoints(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.getcwd, ())

    evil = tmp_path / "evil.pth"
    _zip_with_pickle(evil, pickle.dumps({"x": Evil()}, protocol=2))
    with pytest.raises(TorchCheckpointError, match="getcwd"):
        load_torch_checkpoint(str(evil))
    legacy = tmp_path / "evil_legacy.pth"  # the header pickles of a legacy file are read restricted too
    legacy.write_bytes(pickle.dumps(Evil(), protocol=2))
    with pytest.raises(TorchCheckpointError, match="getcwd"):
        load_torch_checkpoint(str(legacy))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(TorchCheckpointError, match="neither a zip nor a legacy torch checkpoint"):
        load_torch_checkpoint(str(junk))
    nozip = tmp_path / "other.zip"
    with zipfile.ZipFile(nozip, "w") as z:
        z.writestr("readme.txt", "hi")
    with pytest.raises(TorchCheckpointError, match="data.pkl"):
        load_torch_checkpoint(str(nozip))


# --------------------------------------------------------------------------- weight mapping


def _abstract_model():
    return nnx.eval_shape(lambda: I.FIDInceptionV3(rngs=nnx.Rngs(0)))


@pytest.fixture(scope="module")
def abstract_model():
    """Shapes only; a failed load_state_dict leaves it untouched, so tests of errors share it."""
    return _abstract_model()


@pytest.fixture(scope="module")
def abstract_names(abstract_model):
    return I.torch_names(abstract_model)


def test_state_dict_names_and_shapes_are_pytorch_fids(abstract_names):
    names = abstract_names
    # 94 conv+BN units (torchvision's Inception-v3 without the aux head), 5 tensors each.
    assert len(names) == 94 * 5
    # Shapes read off torchvision's inception.py / pytorch-fid's FIDInception blocks (torch layout).
    assert names["Conv2d_1a_3x3.conv.weight"] == (32, 3, 3, 3)
    assert names["Conv2d_4a_3x3.conv.weight"] == (192, 80, 3, 3)
    assert names["Mixed_5b.branch_pool.conv.weight"] == (32, 192, 1, 1)
    assert names["Mixed_5d.branch5x5_2.conv.weight"] == (64, 48, 5, 5)
    assert names["Mixed_6a.branch3x3.conv.weight"] == (384, 288, 3, 3)
    assert names["Mixed_6b.branch7x7_2.conv.weight"] == (128, 128, 1, 7)
    assert names["Mixed_6e.branch7x7dbl_2.conv.weight"] == (192, 192, 7, 1)
    assert names["Mixed_7a.branch7x7x3_4.conv.weight"] == (192, 192, 3, 3)
    assert names["Mixed_7b.branch3x3dbl_1.conv.weight"] == (448, 1280, 1, 1)
    assert names["Mixed_7c.branch3x3dbl_3b.conv.weight"] == (384, 384, 3, 1)
    assert names["Mixed_7c.branch_pool.bn.running_var"] == (192,)
    for suffix in ("weight", "bias", "running_mean", "running_var"):
        assert names[f"Mixed_6c.branch1x1.bn.{suffix}"] == (192,)
    # Parameters (conv weights + BN affine) of pytorch-fid's InceptionV3([3]), counted with torch 2.14.
    params = sum(int(np.prod(s)) for k, s in names.items() if not k.endswith(("running_mean", "running_var")))
    assert params == 21_785_568


def _random_state_dict(names, seed=0):
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in names.items()}


def test_load_state_dict_transposes_kernels_and_maps_batchnorm(abstract_names):
    sd = _random_state_dict(abstract_names)
    sd["fc.weight"], sd["fc.bias"] = np.zeros((1008, 2048), np.float32), np.zeros(1008, np.float32)
    sd["Mixed_5b.branch1x1.bn.num_batches_tracked"] = np.array(3)
    model = I.load_state_dict(_abstract_model(), sd)
    k = np.asarray(model.Mixed_6b.branch7x7_2.conv.kernel.get_value())
    w = sd["Mixed_6b.branch7x7_2.conv.weight"]          # (O, I, 1, 7)
    assert k.shape == (1, 7, 128, 128)                   # HWIO
    assert k[0, 5, 3, 9] == w[9, 3, 0, 5]
    np.testing.assert_array_equal(k, w.transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(np.asarray(model.Conv2d_1a_3x3.conv.kernel.get_value()),
                                  sd["Conv2d_1a_3x3.conv.weight"].transpose(2, 3, 1, 0))
    bn = model.Mixed_7c.branch_pool.bn
    for leaf, suffix in (("scale", "weight"), ("bias", "bias"), ("mean", "running_mean"), ("var", "running_var")):
        np.testing.assert_array_equal(np.asarray(getattr(bn, leaf).get_value()),
                                      sd[f"Mixed_7c.branch_pool.bn.{suffix}"])


def test_load_state_dict_names_what_does_not_fit(abstract_model, abstract_names):
    sd = _random_state_dict(abstract_names)
    missing = dict(sd)
    del missing["Mixed_6d.branch7x7_3.bn.running_mean"]
    with pytest.raises(ValueError, match=r"missing 1 name\(s\), e.g. Mixed_6d.branch7x7_3.bn.running_mean"):
        I.load_state_dict(abstract_model, missing)
    extra = dict(sd, **{"AuxLogits.conv0.conv.weight": np.zeros((128, 768, 1, 1), np.float32)})
    with pytest.raises(ValueError, match=r"unexpected 1 name\(s\), e.g. AuxLogits.conv0.conv.weight"):
        I.load_state_dict(abstract_model, extra)
    wrong = dict(sd, **{"Mixed_5c.branch5x5_2.conv.weight": np.zeros((64, 48, 3, 3), np.float32)})
    with pytest.raises(ValueError, match=r"Mixed_5c.branch5x5_2.conv.weight has shape \(64, 48, 3, 3\)"):
        I.load_state_dict(abstract_model, wrong)


# --------------------------------------------------------------------------- preprocessing


def _torch_bilinear_reference(x, out_h, out_w):
    """torch's align_corners=False bilinear formula, pixel by pixel, in float64 (one image, HW)."""
    in_h, in_w = x.shape

    def src(i, n_in, n_out):
        s = max((i + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = min(int(np.floor(s)), n_in - 1)
        return i0, min(i0 + 1, n_in - 1), s - i0

    out = np.empty((out_h, out_w))
    for i in range(out_h):
        r0, r1, a = src(i, in_h, out_h)
        for j in range(out_w):
            c0, c1, b = src(j, in_w, out_w)
            out[i, j] = ((1 - a) * ((1 - b) * x[r0, c0] + b * x[r0, c1])
                         + a * ((1 - b) * x[r1, c0] + b * x[r1, c1]))
    return out


@pytest.mark.parametrize("shape, size", [((3, 5), (4, 7)), ((6, 7), (4, 3)), ((5, 4), (11, 2))])
def test_resize_matches_torch_bilinear_formula(shape, size):
    x = np.random.default_rng(0).random(shape).astype(np.float32)
    got = np.asarray(I.resize_bilinear(jnp.asarray(x)[None, :, :, None], *size))[0, :, :, 0]
    np.testing.assert_allclose(got, _torch_bilinear_reference(x.astype(np.float64), *size), atol=2e-6)


def test_resize_equals_torch_interpolate_output():
    # F.interpolate(x, size, mode="bilinear", align_corners=False) from torch 2.14 on CPU, float32.
    x = np.arange(15, dtype=np.float32).reshape(3, 5) / 14
    torch_out = np.array([[0.0, 0.04081633, 0.09183675, 0.14285715, 0.19387756, 0.24489798, 0.2857143],
                          [0.2232143, 0.2640306, 0.31505102, 0.36607143, 0.41709185, 0.46811226, 0.50892854],
                          [0.49107146, 0.53188777, 0.58290815, 0.6339286, 0.684949, 0.7359694, 0.7767857],
                          [0.71428573, 0.755102, 0.8061224, 0.85714287, 0.90816325, 0.9591837, 1.0]])
    got = np.asarray(I.resize_bilinear(jnp.asarray(x)[None, :, :, None], 4, 7))[0, :, :, 0]
    np.testing.assert_allclose(got, torch_out, atol=2e-7)
    y = np.arange(42, dtype=np.float32).reshape(6, 7) ** 2 / 1681
    torch_out = np.array([[0.009071981, 0.018887568, 0.03544517], [0.1048483, 0.14381321, 0.18952012],
                          [0.33179653, 0.39991078, 0.47476697], [0.68991673, 0.78718024, 0.8911858]])
    got = np.asarray(I.resize_bilinear(jnp.asarray(y)[None, :, :, None], 4, 3))[0, :, :, 0]
    np.testing.assert_allclose(got, torch_out, atol=2e-7)


def test_downsampling_does_not_antialias():
    # 9 -> 3 samples source pixels 1, 4, 7 exactly (src = 3i + 1): torch takes them as they are,
    # where an antialiased resize (jax.image.resize) would average their neighbours in.
    row = np.array([0, 1, 0, 0, 1, 0, 0, 1, 0], np.float32)
    x = jnp.asarray(np.tile(row, (9, 1)))[None, :, :, None]
    np.testing.assert_array_equal(np.asarray(I.resize_bilinear(x, 9, 3))[0, :, :, 0], np.ones((9, 3)))


def test_preprocess_shape_range_and_uint8_scaling():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (2, 17, 23, 3), dtype=np.uint8)
    img[0, 0, 0], img[1, -1, -1] = 0, 255       # corners survive the resize exactly
    x = np.asarray(I.preprocess(jnp.asarray(img)))
    assert x.shape == (2, 299, 299, 3) and x.dtype == np.float32
    assert x.min() == -1.0 and x.max() == 1.0
    np.testing.assert_allclose(x, np.asarray(I.preprocess(jnp.asarray(img / 255.0, jnp.float32))), atol=1e-6)
    same = rng.integers(0, 256, (1, 299, 299, 3), dtype=np.uint8)   # 299 in: no resampling
    np.testing.assert_allclose(np.asarray(I.preprocess(jnp.asarray(same))), same / 127.5 - 1, atol=1e-6)


# --------------------------------------------------------------------------- KID, FID, stats files


def test_kid_equals_hand_computation_on_a_tiny_case():
    x = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    y = np.array([[0.0, 0.0], [2.0, 1.0], [-1.0, 1.0]])
    k = lambda a, b: (a @ b / 2 + 1) ** 3  # noqa: E731
    kxx = sum(k(x[i], x[j]) for i in range(3) for j in range(3) if i != j) / 6
    kyy = sum(k(y[i], y[j]) for i in range(3) for j in range(3) if i != j) / 6
    kxy = sum(k(x[i], y[j]) for i in range(3) for j in range(3)) / 9
    mean, std = F.kid(x, y, num_subsets=5, subset_size=10)   # subsets of all 3 rows: permutations
    assert mean == pytest.approx(kxx + kyy - 2 * kxy, rel=1e-12)
    assert std == pytest.approx(0.0, abs=1e-12)


def test_kid_is_unbiased_for_equal_sets_and_positive_for_shifted_ones():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((400, 16))
    b = rng.standard_normal((400, 16))
    same, same_std = F.kid(a, b, num_subsets=50, subset_size=100, seed=1)
    shifted, _ = F.kid(a, b + 0.5, num_subsets=50, subset_size=100, seed=1)
    assert abs(same) < 4 * same_std / np.sqrt(50) + 1e-3     # zero within its standard error
    assert shifted > 0.01 and shifted > 20 * abs(same)
    assert F.kid(a, a, num_subsets=3, subset_size=50)[0] == pytest.approx(0.0, abs=0.05)


def test_fid_from_features_and_pytorch_fid_stats_files(tmp_path):
    rng = np.random.default_rng(0)
    fa, fb = rng.standard_normal((50, 4)), rng.standard_normal((60, 4)) + 1.0
    assert F.fid_from_features(fa, fb) == frechet_distance(*feature_stats(fa), *feature_stats(fb))
    mu, sigma = feature_stats(fa)
    path = str(tmp_path / "sub" / "stats.npz")
    F.save_stats(path, mu, sigma)
    with np.load(path) as f:                    # exactly what pytorch-fid reads: f["mu"], f["sigma"]
        assert sorted(f.files) == ["mu", "sigma"]
        np.testing.assert_array_equal(f["mu"], mu)
        np.testing.assert_array_equal(f["sigma"], sigma)
    mu2, sigma2 = F.load_stats(path)
    np.testing.assert_array_equal(mu2, mu)
    np.testing.assert_array_equal(sigma2, sigma)
    with pytest.raises(ConfigError, match="must end in .npz"):
        F.save_stats(str(tmp_path / "stats.npy"), mu, sigma)
    with pytest.raises(ConfigError, match="does not exist; write one with `genflow fid-stats"):
        F.load_stats(str(tmp_path / "none.npz"))
    np.savez(tmp_path / "other.npz", mean=mu)
    with pytest.raises(ConfigError, match=r"holds \['mean'\], not pytorch-fid's 'mu' and 'sigma'"):
        F.load_stats(str(tmp_path / "other.npz"))


# --------------------------------------------------------------------------- missing weights


def test_missing_weights_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("GENFLOW_CACHE", str(tmp_path / "cache"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(I.urllib.request, "urlopen", offline)
    with pytest.raises(ConfigError) as err:
        I.load_fid_inception()
    msg = str(err.value)
    assert msg == (f"the FID Inception weights pt_inception-2015-12-05-6726825d.pth are not in {tmp_path / 'cache'} "
                   "and could not be downloaded (no network in tests); download "
                   "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                   f"pt_inception-2015-12-05-6726825d.pth where there is internet and put it in {tmp_path / 'cache'} "
                   "(or set GENFLOW_CACHE to its directory, or pass its path).")
    assert not os.listdir(tmp_path / "cache")            # no partial download left behind
    with pytest.raises(ConfigError, match=r"nope.pth do not exist; download https://github.com/mseitzer"):
        I.load_fid_inception(str(tmp_path / "nope.pth"))
    # A file that is there but is not a torch checkpoint: one sentence too.
    bad = tmp_path / "cache" / I.FID_WEIGHTS_NAME
    bad.write_bytes(b"html error page")
    with pytest.raises(ConfigError, match="is not a readable torch checkpoint"):
        I.load_fid_inception()


def test_weights_found_in_cache_or_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("GENFLOW_CACHE", str(tmp_path))
    (tmp_path / I.FID_WEIGHTS_NAME).write_bytes(b"x")
    assert I.find_fid_weights() == str(tmp_path / I.FID_WEIGHTS_NAME)
    assert I.find_fid_weights(str(tmp_path)) == str(tmp_path / I.FID_WEIGHTS_NAME)
    monkeypatch.setenv("GENFLOW_CACHE", "")
    assert I.cache_dir() == os.path.join(os.path.expanduser("~"), ".cache", "genflow")


def test_tiny_checkpoint_is_not_an_inception_state_dict(monkeypatch):
    with pytest.raises(ConfigError, match=r"does not match FIDInceptionV3: missing 470 name\(s\)"):
        I.load_fid_inception(os.path.join(DATA, "tiny_torch_state_dict.pth"))


# --------------------------------------------------------------------------- commands (fake network)


class _FakeFeatures:
    """Stands in for InceptionFeatures: 2048 features tiled from the pixels; records its inputs."""
    seen: list = []

    def __init__(self, model):
        pass

    def batch(self, images):
        _FakeFeatures.seen.append(np.array(images))
        flat = images.reshape(len(images), -1) / 255.0
        return np.tile(flat, (1, -(-2048 // flat.shape[1])))[:, :2048]


def _fake_network(monkeypatch):
    _FakeFeatures.seen = []
    monkeypatch.setattr(I, "load_fid_inception", lambda weights=None: None)
    monkeypatch.setattr(I, "InceptionFeatures", _FakeFeatures)


def test_fid_stats_command_on_mock_tfds(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    _fake_network(monkeypatch)
    out = str(tmp_path / "mnist.npz")
    with tfds.testing.mock_data(num_examples=12):
        FC.fid_stats_command("mnist", out, num=10, batch_size=4, progress=False)
    mu, sigma = F.load_stats(out)
    assert mu.shape == (2048,) and sigma.shape == (2048, 2048)
    seen = np.concatenate(_FakeFeatures.seen)
    assert seen.dtype == np.uint8 and seen.shape == (12, 28, 28, 3)       # 3 batches of 4, last one padded
    assert (seen[..., 0] == seen[..., 2]).all()                           # grey repeated to RGB
    np.testing.assert_allclose(mu, _FakeFeatures(None).batch(seen[:10]).mean(0))
    with pytest.raises(ConfigError, match="has no FID recipe; choose one of mnist"):
        FC.fid_stats_command("imagenet", out)
    with pytest.raises(ConfigError, match=r"dataset 'cifar10' \(split 'train'\) is not prepared"):
        FC.fid_stats_command("cifar10", out, data_dir=str(tmp_path / "empty"))


@pytest.mark.slow
def test_fid_command_samples_a_run_in_chunks(tmp_path, monkeypatch, capsys):
    from genflow import config as C
    from genflow.cli.run import train

    exp = C.Experiment(name="tinydigits", net=C.Net(width=32, depth=1),
                       train=C.Train(batch_size=16, steps=3, log_every=1, ckpt_every=3),
                       sample=C.Sample(sampler="euler_ode", steps=3, num=8))
    workdir = str(tmp_path / "run")
    train(exp, workdir, progress=False)
    _fake_network(monkeypatch)
    ref = str(tmp_path / "ref.npz")
    F.save_stats(ref, np.zeros(2048), np.eye(2048))
    FC.fid_command(workdir, ref, num=10, batch_size=4, seed=3, progress=False)
    seen = np.concatenate(_FakeFeatures.seen)
    assert seen.dtype == np.uint8 and seen.shape == (12, 8, 8, 3)          # 3 chunks of 4
    # The same seed gives the same samples: FID against their own statistics is ~0.
    F.save_stats(ref, *feature_stats(_FakeFeatures(None).batch(seen[:10])))
    _FakeFeatures.seen = []
    value = FC.fid_command(workdir, ref, num=10, batch_size=4, seed=3, progress=False)
    np.testing.assert_array_equal(np.concatenate(_FakeFeatures.seen)[:10], seen[:10])
    # Not exactly 0: the square roots of ~2,000 rounding-level eigenvalues of a rank-9 covariance add up.
    assert abs(value) < 1e-4 * np.trace(F.load_stats(ref)[1])
    assert "(10 samples of" in capsys.readouterr().out


# --------------------------------------------------------------------------- the network itself


@pytest.mark.slow
def test_inception_forward_random_weights(abstract_names):
    """The full port on random weights (~10-20 s on a CPU, mostly compilation)."""
    sd = _random_state_dict(abstract_names, seed=1)
    for k in sd:
        if k.endswith("conv.weight"):   # He-scaled, so activations stay O(1) through the depth
            sd[k] *= np.sqrt(2.0 / np.prod(sd[k].shape[1:]))
        elif k.endswith("running_var"):
            sd[k] = np.abs(sd[k]) + 0.5
    extractor = I.InceptionFeatures(I.load_state_dict(_abstract_model(), sd))
    imgs = np.random.default_rng(0).integers(0, 256, (3, 40, 40, 3), dtype=np.uint8)
    feats = extractor(imgs, batch_size=2, progress=False)         # batches of 2: the last one padded
    assert feats.shape == (3, 2048) and feats.dtype == np.float64
    assert np.isfinite(feats).all() and (feats >= 0).all() and feats.max() > 0
    np.testing.assert_allclose(I.inception_features(extractor, imgs[2:] / 255.0, batch_size=2, progress=False),
                               feats[2:], rtol=1e-4, atol=1e-5 * feats.max())
    grey = imgs[:2, :, :, :1]
    np.testing.assert_allclose(extractor(grey, batch_size=2, progress=False),
                               extractor(np.repeat(grey, 3, -1), batch_size=2, progress=False))
    with pytest.raises(ValueError, match=r"map \[-1, 1\] samples with \(x \+ 1\) / 2"):
        extractor(imgs / 127.5 - 1, batch_size=2)
