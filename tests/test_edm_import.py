"""EDM's published networks imported without torch (issue 16, part 1).

The fixtures (tests/data/edm_*.pkl, edm_outputs.npz) are small EDM networks with random weights,
pickled exactly as EDM's training loop pickles its snapshots, with EDM's own outputs on fixed
inputs; tests/data/make_edm_pickles.py made them with torch and NVlabs/edm. Nothing here needs torch.
"""
import os
import pickle
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from genflow.cli import build
from genflow.cli.import_edm import experiment
from genflow.cli.main import main
from genflow.models import Model, edm
from genflow.pretrained import EDMPickleError, assign_params, load_edm_network, read_edm_pickle
from genflow.processes import EDM

DATA = os.path.join(os.path.dirname(__file__), "data")
REF = np.load(os.path.join(DATA, "edm_outputs.npz"))
NAMES = ["edm_ddpmpp_cond", "edm_ddpmpp_uncond", "edm_ncsnpp_cond", "edm_ncsnpp_uncond", "edm_adm_cond",
         "edm_adm_uncond"]
# float32 on both sides: EDM's forward in torch and genflow's in XLA sum the same products in other
# orders, so each of the ~20 layers adds rounding of a few ulp of its activations (|F| ~ 2, ulp
# 2.4e-7); the observed error is 1-2e-6. 1e-5 leaves that 5x headroom, while any mapping mistake
# (a transposed kernel, q/k/v in the wrong thirds, cos/sin swapped, a label row off by one) moves
# the output by O(0.1-1).
TOL = 1e-5


def _inputs(name: str, num_classes, ref=REF):
    """EDM's fixed inputs in genflow's layout: x (B, H, W, C), sigma (B,), integer labels or None
    (EDM's all-zero label row is genflow's null label)."""
    x = ref[f"{name}/x"].transpose(0, 2, 3, 1)
    sigma = ref[f"{name}/sigma"]
    labels = ref[f"{name}/labels"]
    cond = None
    if num_classes:
        cond = np.where(labels.sum(1) > 0, labels.argmax(1), num_classes).astype(np.int32)
    return x, sigma, cond


def _t_of_sigma(process: EDM, sigma: np.ndarray) -> np.ndarray:
    """The Karras-path time of a noise level (the inverse of EDM.sigma, in float64)."""
    lo, hi = process.sigma_min ** (1 / process.rho), process.sigma_max ** (1 / process.rho)
    return ((sigma.astype(np.float64) ** (1 / process.rho) - lo) / (hi - lo)).astype(np.float32)


def _import(directory: str, name: str):
    """(EDMNetwork, UNet with the imported weights, eval mode) of directory/name.pkl."""
    network = load_edm_network(os.path.join(directory, name + ".pkl"))
    exp = experiment(network, name + ".pkl")
    # Shapes only, then the imported weights: nothing initialised or compiled but the forward pass.
    # Dropout's RNG state stays abstract; the net runs in eval mode, where dropout never draws.
    abstract = nnx.eval_shape(lambda: build.build_net(exp.net, network.data_shape, "float32", 0))
    graphdef, params, rest = nnx.split(abstract, nnx.Param, ...)
    net = nnx.merge(graphdef, jax.tree.map(jnp.asarray, assign_params(params, network)), rest)
    net.eval()
    return network, net


@pytest.fixture(scope="module", params=NAMES)
def imported(request):
    """(name, EDMNetwork, UNet with the imported weights, eval mode) of a committed fixture."""
    return (request.param, *_import(DATA, request.param))


def _max_errors(name: str, network, net, ref=REF) -> tuple[float, float, float]:
    """(max |F - F_edm|, max |F_edm|, max |D - D_edm| / max(1, |D_edm|)) on EDM's fixed inputs."""
    x, sigma, cond = _inputs(name, network.num_classes, ref)
    c_in = 1 / np.sqrt(network.sigma_data ** 2 + sigma ** 2)
    f = np.asarray(net(jnp.asarray(c_in[:, None, None, None] * x), jnp.asarray(np.log(sigma) / 4), cond))
    want_f = ref[f"{name}/F"].transpose(0, 2, 3, 1)
    process = EDM(sigma_min=0.002, sigma_max=80.0, rho=7.0)
    model = Model(net, process, edm(network.sigma_data))
    d = np.asarray(model.x0(jnp.asarray(x), jnp.asarray(_t_of_sigma(process, sigma)), cond))
    want_d = ref[f"{name}/denoised"].transpose(0, 2, 3, 1)
    # D = c_skip x + c_out F with |x| up to ~200 at sigma = 80: relative to max(1, |D|), and the
    # noise level itself passes through float32 (t -> sigma(t) loses ~1e-6 relatively).
    d_err = np.abs(d - want_d) / np.maximum(1.0, np.abs(want_d))
    return float(np.abs(f - want_f).max()), float(np.abs(want_f).max()), float(d_err.max())


def test_imported_network_equals_edm(imported):
    """The raw network F(c_in x; c_noise) and genflow's Model with EDM preconditioning, D(x; sigma),
    against EDMPrecond and its SongUNet, conditional and unconditional."""
    name, network, net = imported
    f_err, f_max, d_err = _max_errors(name, network, net)
    print(f"{name}: max |F_genflow - F_edm| = {f_err:.2e} (max |F| = {f_max:.2f}); "
          f"max |D_genflow - D_edm| / max(1, |D|) = {d_err:.2e}")
    assert f_err < TOL and d_err < TOL
    assert network.unet_kwargs["num_classes"] == (10 if "uncond" not in name else None)
    assert set(network.left_out) == {"map_augment"}  # the CIFAR-10 models' augment_dim=9 input


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("GENFLOW_EDM_FULL"), reason="set GENFLOW_EDM_FULL to the directory "
                    "`make_edm_pickles.py EDM --full DIR` wrote")
@pytest.mark.parametrize("name", NAMES)
def test_larger_networks_equal_edm(name):
    """The same check larger: DDPM++ and NCSN++ at the published CIFAR-10 size (56M parameters,
    32x32), ADM at 16x16 with 64 and 128 channels, so with 1- and 2-head attention."""
    directory = os.environ["GENFLOW_EDM_FULL"]
    network, net = _import(directory, name)
    f_err, f_max, d_err = _max_errors(name, network, net, np.load(os.path.join(directory, "edm_outputs.npz")))
    n = sum(int(v.size) for v in network.params.values())
    print(f"larger {name} ({n:,} parameters): max |F_genflow - F_edm| = {f_err:.2e} (max |F| = {f_max:.2f}); "
          f"max |D_genflow - D_edm| / max(1, |D|) = {d_err:.2e}")
    assert f_err < TOL and d_err < TOL


# --------------------------------------------------------------------------- the command line


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def one_sentence(err: str) -> bool:
    lines = [line for line in err.splitlines() if line.strip()]
    return len(lines) == 1 and lines[0].startswith("genflow: error: ") and "Traceback" not in err


def test_import_edm_writes_a_run_that_samples_and_guides(capsys, tmp_path):
    """The CLI's run loads through load_run as EDM's denoiser, and `genflow sample` (with
    classifier-free guidance) works on it unchanged."""
    from genflow.cli.run import load_run

    name = "edm_ddpmpp_cond"
    workdir = tmp_path / "run"
    code, err = cli(capsys, "import-edm", os.path.join(DATA, name + ".pkl"), "--workdir", workdir)
    assert code == 0 and "EDM DDPM++ (class-conditional, 10 classes" in err, err
    run = load_run(str(workdir))
    assert run.exp.predicts == "edm" and run.exp.net.time_embedding == "positional" and run.shape == (8, 8, 3)
    x, sigma, cond = _inputs(name, 10)
    model = run.eval_spec.model(run.params)
    d = np.asarray(model.x0(jnp.asarray(x), jnp.asarray(_t_of_sigma(run.process, sigma)), cond))
    want = REF[f"{name}/denoised"].transpose(0, 2, 3, 1)
    assert (np.abs(d - want) / np.maximum(1.0, np.abs(want))).max() < TOL
    out = tmp_path / "s.npz"
    code, err = cli(capsys, "sample", workdir, "--num", 4, "--steps", 2, "--labels", "0,1", "--guidance", 1,
                    "--out", out, "--no-progress")
    assert code == 0, err
    samples = np.load(out)
    assert samples["samples"].shape == (4, 8, 8, 3) and np.isfinite(samples["samples"]).all()
    assert list(samples["labels"]) == [0, 1, 0, 1]
    code, err = cli(capsys, "import-edm", os.path.join(DATA, name + ".pkl"), "--workdir", workdir)
    assert code == 2 and one_sentence(err) and "already exists" in err, err


@pytest.mark.parametrize("name, said, options", [
    ("edm_ncsnpp_uncond", "EDM NCSN++ (unconditional", ("fourier", 2, (1, 3, 3, 1), "residual", "ddpmpp", None)),
    ("edm_adm_cond", "EDM ADM (class-conditional, 10 classes", ("adm", 1, (1, 1), "standard", "adm", 10)),
])
def test_import_edm_writes_ncsnpp_and_adm_runs(capsys, tmp_path, name, said, options):
    """NCSN++'s and ADM's options reach the run's config (the networks: test_imported_network_equals_edm)."""
    from genflow.cli.run import read_config

    workdir = tmp_path / "run"
    code, err = cli(capsys, "import-edm", os.path.join(DATA, name + ".pkl"), "--workdir", workdir)
    assert code == 0 and said in err, err
    net = read_config(str(workdir)).net
    assert (net.time_embedding, net.noise_mult, net.resample_filter, net.encoder, net.variant,
            net.num_classes) == options


class _Evil:
    """Unpickling this runs a shell command that creates ``path``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


@pytest.fixture
def persistent(monkeypatch):
    """``persistent(class_name, state)``: an object that pickles as EDM's persistence does
    (``torch_utils.persistence._reconstruct_persistent_obj(meta)``), made without torch or EDM
    through stand-in modules that exist only while the test runs."""
    package, module = types.ModuleType("torch_utils"), types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):  # the reader must never call the file's own function
        raise AssertionError("the stand-in reconstruct function ran")

    _reconstruct_persistent_obj.__module__ = module.__name__
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    module._reconstruct_persistent_obj = _reconstruct_persistent_obj
    package.persistence = module
    monkeypatch.setitem(sys.modules, "torch_utils", package)
    monkeypatch.setitem(sys.modules, "torch_utils.persistence", module)

    class Persistent:
        def __init__(self, class_name: str, state: dict):
            self.meta = dict(type="class", version=6, module_src="raise SystemExit('embedded code ran')",
                             class_name=class_name, state=state)

        def __reduce__(self):
            return (_reconstruct_persistent_obj, (self.meta,))

    return Persistent


def test_a_malicious_pickle_is_refused_and_nothing_runs(capsys, tmp_path, persistent):
    sentinel = tmp_path / "pwned"
    # A global outside the allowed set, at the top and deep inside a network's state.
    deep = {"ema": persistent("EDMPrecond", {"_modules": {"model": persistent("SongUNet", {"x": _Evil(sentinel)})}})}
    # ... and inside a tensor storage, whose bytes are a legacy torch.save stream of their own.
    blob = pickle.dumps(_Evil(sentinel), protocol=2)
    storage = b"\x80\x03ctorch.storage\n_load_from_bytes\nB" + len(blob).to_bytes(4, "little") + blob + b"\x85R."
    for i, payload in enumerate([pickle.dumps({"ema": _Evil(sentinel)}), pickle.dumps(deep), storage]):
        path = tmp_path / f"evil{i}.pkl"
        path.write_bytes(payload)
        with pytest.raises(EDMPickleError, match="refused unread and nothing in it was run|posix.system"):
            read_edm_pickle(str(path))
        code, err = cli(capsys, "import-edm", path, "--workdir", tmp_path / f"run{i}")
        assert code == 2 and one_sentence(err) and "system" in err, err
        assert not sentinel.exists() and not (tmp_path / f"run{i}").exists()


def test_bad_inputs_are_one_sentence(capsys, tmp_path, persistent):
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"this is not a pickle at all")
    other = tmp_path / "other.pkl"
    other.write_bytes(pickle.dumps({"weights": [1.0, 2.0]}))
    cut = tmp_path / "cut.pkl"
    cut.write_bytes(open(os.path.join(DATA, "edm_ddpmpp_uncond.pkl"), "rb").read()[:50_000])
    vp = tmp_path / "vp.pkl"
    vp.write_bytes(pickle.dumps({"ema": persistent("VPPrecond", {})}))
    adm = tmp_path / "adm.pkl"
    shape = {"img_resolution": 64, "in_channels": 3, "out_channels": 3}
    precond = {"_init_kwargs": {"img_resolution": 64}}
    adm.write_bytes(pickle.dumps({"ema": persistent("EDMPrecond", {**precond, "_modules": {
        "model": persistent("DhariwalUNet", {"_init_kwargs": {**shape, "channel_mult": [2, 2]}})}})}))
    bare = tmp_path / "bare.pkl"   # a record without the constructor arguments every EDM network has
    bare.write_bytes(pickle.dumps({"ema": persistent("EDMPrecond", {"_modules": {
        "model": persistent("SongUNet", {})}})}))
    skip = tmp_path / "skip.pkl"   # EDM's SongUNet also has a "skip" encoder/decoder, used by neither
    skip.write_bytes(pickle.dumps({"ema": persistent("EDMPrecond", {**precond, "_modules": {
        "model": persistent("SongUNet", {"_init_kwargs": {**shape, "encoder_type": "skip",
                                                           "decoder_type": "skip"}})}})}))
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    for path, workdir, message in [
        (tmp_path / "missing.pkl", tmp_path / "r1", "does not exist; pass the path of an EDM snapshot"),
        (junk, tmp_path / "r2", "is not a readable pickle"),
        (other, tmp_path / "r3", "holds a dict with keys ['weights'], not an EDM snapshot"),
        (cut, tmp_path / "r4", "is not a readable pickle"),
        (vp, tmp_path / "r5", "VP preconditioning (EDM's baseline models)"),
        (adm, tmp_path / "r6", "ADM network has channel_mult [2, 2], whose first level is not 1"),
        (bare, tmp_path / "r8", "has a missing or malformed setting (KeyError: 'in_channels')"),
        (skip, tmp_path / "r7", "'encoder_type': 'skip', 'decoder_type': 'skip'}, neither EDM's DDPM++ nor its NCSN++"),
        (os.path.join(DATA, "edm_ddpmpp_uncond.pkl"), busy, "already exists and is not empty"),
    ]:
        code, err = cli(capsys, "import-edm", path, "--workdir", workdir)
        assert code == 2 and one_sentence(err) and message in err, err
        assert workdir == busy or not os.path.exists(workdir)
    assert (busy / "keep.txt").read_text() == "mine"
