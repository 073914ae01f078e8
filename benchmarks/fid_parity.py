"""Parity of genflow's FID Inception (flax) with pytorch-fid's own network, feature by feature.

Builds pytorch-fid's ``InceptionV3`` (``use_fid_inception=True``: the FIDInceptionA/C/E graph)
without downloading anything, gives it random weights and random BatchNorm running statistics
(fixed seed), writes its state dict with ``torch.save``, loads that file into
``genflow.metrics.inception.FIDInceptionV3`` with genflow's torch-free reader, and compares the
2048-d pool3 features of the same random uint8 images, each side through its own preprocessing
(pytorch-fid: ToTensor's /255, ``F.interpolate`` bilinear to 299, 2x - 1). Prints one row per
input size: the largest |feature|, the largest absolute difference, that difference relative
to the largest |feature|, and PASS when it is below 1e-4. With ``--weights`` pointing at
pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` it also compares the real network.

Needs torch, torchvision and pytorch-fid beside jax/flax (not a CI test), e.g.

    python3 -m venv /tmp/fidvenv && /tmp/fidvenv/bin/pip install torch torchvision pytorch-fid \\
        jax flax numpy scipy pillow tqdm matplotlib
    PYTHONPATH=. /tmp/fidvenv/bin/python benchmarks/fid_parity.py          # CPU, about a minute
"""
from __future__ import annotations

import argparse
import math
import os
import tempfile
import time

import numpy as np

SIZES = ((32, 32), (64, 64), (299, 299), (384, 512))
THRESHOLD = 1e-4


def pytorch_fid_network(seed: int):
    """pytorch-fid's InceptionV3([pool3]) built by its own code, weights random instead of downloaded."""
    import torch
    import torchvision
    from pytorch_fid import inception as pfi

    saved_url, saved_build = pfi.load_state_dict_from_url, pfi.fid_inception_v3
    pfi.load_state_dict_from_url = lambda *a, **k: None
    torchvision.models.inception.Inception3.load_state_dict = lambda self, *a, **k: None
    try:
        net = saved_build()                                   # pytorch-fid's FIDInception graph
    finally:
        pfi.load_state_dict_from_url = saved_url
        del torchvision.models.inception.Inception3.load_state_dict   # back to nn.Module's

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d):            # He init keeps activations O(1) through depth
                fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * math.sqrt(2.0 / fan_in))
            elif isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(0.8 + 0.4 * torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
            elif isinstance(m, torch.nn.Linear):
                m.weight.copy_(0.01 * torch.randn(m.weight.shape, generator=g))
    pfi.fid_inception_v3 = lambda: net
    try:
        model = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
    finally:
        pfi.fid_inception_v3 = saved_build
    return net, model


def torch_features(model, images: np.ndarray) -> np.ndarray:
    """pytorch-fid's path: uint8 HWC -> float /255 NCHW (ToTensor) -> model (resize, 2x-1, pool3)."""
    import torch

    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().float().div(255)
    with torch.no_grad():
        return model(x)[0].squeeze(3).squeeze(2).double().numpy()


def compare(label: str, torch_model, flax_model, rng) -> bool:
    from genflow.metrics.inception import InceptionFeatures

    extractor = InceptionFeatures(flax_model)
    ok = True
    for h, w in SIZES:
        images = rng.integers(0, 256, (8, h, w, 3), dtype=np.uint8)
        t0 = time.time()
        ref = torch_features(torch_model, images)
        t1 = time.time()
        got = extractor(images, batch_size=8, progress=False)
        t2 = time.time()
        scale = np.abs(ref).max()
        abs_diff = np.abs(got - ref).max()
        rel = abs_diff / scale
        passed = bool(rel < THRESHOLD and np.all(np.isfinite(got)))
        ok &= passed
        print(f"| {label:<12} | {f'{h}x{w}':>7} | {scale:10.4g} | {abs_diff:12.3g} | {rel:9.3g} | "
              f"{'PASS' if passed else 'FAIL':<6} | {t1 - t0:7.1f} | {t2 - t1:5.1f} |", flush=True)
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--weights", default=None, help="also compare with pytorch-fid's real .pth")
    args = ap.parse_args()

    import torch

    from genflow.metrics.inception import load_fid_inception, torch_names
    from genflow.metrics.torch_checkpoint import load_torch_checkpoint

    net, torch_model = pytorch_fid_network(args.seed)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; pytorch-fid network with random "
          f"weights (seed {args.seed})")
    header = ("| weights      |   input | max |feat| | max abs diff | rel. diff | result | torch s | jax s |\n"
              "|--------------|---------|------------|--------------|-----------|--------|---------|-------|")
    with tempfile.TemporaryDirectory() as tmp:
        zip_path, legacy_path = os.path.join(tmp, "random.pth"), os.path.join(tmp, "random_legacy.pth")
        sd = net.state_dict()
        torch.save(sd, zip_path)
        torch.save(sd, legacy_path, _use_new_zipfile_serialization=False)

        # The reader, on a real 95 MB Inception state dict in both torch formats.
        for path in (zip_path, legacy_path):
            read = load_torch_checkpoint(path)
            bad = [k for k, v in sd.items() if not np.array_equal(read[k], v.numpy())]
            print(f"reader: {os.path.basename(path)}: {len(read)} tensors, "
                  f"{'all equal to torch' if not bad and len(read) == len(sd) else f'MISMATCH {bad[:3]}'}")
        flax_model = load_fid_inception(zip_path)
        n_port = len(torch_names(flax_model))
        ignored = [k for k in sd if k.startswith("fc.") or k.endswith("num_batches_tracked")]
        print(f"port: {n_port} state-dict entries mapped, {len(ignored)} ignored (fc.weight, fc.bias and "
              f"{sum(k.endswith('num_batches_tracked') for k in ignored)} BatchNorm num_batches_tracked)")
        print()
        print(header)
        ok = compare("random", torch_model, flax_model, np.random.default_rng(args.seed))

    if args.weights:
        real_net, real_model = pytorch_fid_network(args.seed)
        real_net.load_state_dict(torch.load(args.weights, map_location="cpu"))
        real_model.eval()
        ok &= compare("pt_inception", real_model, load_fid_inception(args.weights), np.random.default_rng(1))
    print()
    print("PASS" if ok else "FAIL", f"(max relative difference < {THRESHOLD:g} for every input size)")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
