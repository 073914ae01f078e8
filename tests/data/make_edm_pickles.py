"""Small EDM snapshot pickles with random weights, and EDM's own outputs on fixed inputs, for
tests/test_edm_import.py.

Run in a side environment with torch (never in genflow's own; CI reads only the files written):

    python3 -m venv /tmp/edmvenv && /tmp/edmvenv/bin/pip install torch numpy requests
    git clone https://github.com/NVlabs/edm /tmp/edm        # tested at 008a4e5
    /tmp/edmvenv/bin/python tests/data/make_edm_pickles.py /tmp/edm
    /tmp/edmvenv/bin/python tests/data/make_edm_pickles.py /tmp/edm --full /tmp/edm-full   # optional

``--full DIR`` writes the same networks larger into DIR, for a one-off check (not committed; see
the test's ``GENFLOW_EDM_FULL``): DDPM++ and NCSN++ at the published CIFAR-10 size (32x32,
model_channels=128, channel_mult=[2,2,2], num_blocks=4, attention at 16x16; 56M parameters, 220 MB
each), ADM at 16x16 with 64 and 128 channels, so that it has attention (1 and 2 heads; the small
ADM, below EDM's 64 channels per head, has none).

Each network (DDPM++, NCSN++ and ADM, conditional on 10 classes and unconditional) is built the way
EDM's train.py builds it (``construct_class_by_name`` on the ``--arch`` / ``--precond=edm`` /
``--augment`` keyword sets, so ``augment_dim=9`` like the published CIFAR-10 models), at a small
size: 8x8x3 images, model_channels=12, channel_mult=[1,2], num_blocks=1, attention at 4x4. Every
parameter is then redrawn at unit scale (EDM's own init makes the output convs ~1e-5, which would
let a wrong mapping pass), and the snapshot is
written exactly as EDM's training loop writes ``network-snapshot-*.pkl``: ``pickle.dump`` of
``dict(ema=..., loss_fn=..., augment_pipe=..., dataset_kwargs=...)`` with the modules deep-copied,
``.eval().requires_grad_(False)`` and on the CPU, so the persistence decorator embeds the source.

Outputs (float32, EDM's NCHW layout) go to edm_outputs.npz under ``<name>/``: ``x`` (B, C, H, W),
``sigma`` (B,), ``labels`` (B, label_dim; one row all zeros, EDM's "no label"), ``denoised`` =
EDMPrecond(x, sigma, labels), and ``F`` = the inner network on EDM's preconditioned inputs
(c_in x, c_noise = ln(sigma) / 4, labels, augment_labels = 0), i.e. the raw network output.
"""
from __future__ import annotations

import copy
import os
import pickle
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ARCHS = {  # EDM train.py's --arch keyword sets, then the small sizes used here
    "ddpmpp": dict(model_type="SongUNet", embedding_type="positional", encoder_type="standard",
                   decoder_type="standard", channel_mult_noise=1, resample_filter=[1, 1]),
    "ncsnpp": dict(model_type="SongUNet", embedding_type="fourier", encoder_type="residual",
                   decoder_type="standard", channel_mult_noise=2, resample_filter=[1, 3, 3, 1]),
    "adm": dict(model_type="DhariwalUNet"),
}
SMALL = dict(model_channels=12, channel_mult=[1, 2], num_blocks=1, attn_resolutions=[4])
FULL = dict(model_channels=128, channel_mult=[2, 2, 2], num_blocks=4, attn_resolutions=[16])
# ADM has 64 channels per attention head, so below 64 channels (the small size) it has no attention;
# --full writes it at 16x16 with 64 and 128 channels (1 and 2 heads) instead of ImageNet-64's 296M.
ADM_MEDIUM = dict(model_channels=64, channel_mult=[1, 2], num_blocks=2, attn_resolutions=[16, 8])
SIGMAS = [0.002, 0.05, 0.5, 2.0, 10.0, 80.0]


def build(dnnlib, arch: str, label_dim: int, seed: int, size: dict, res: int):
    torch.manual_seed(seed)
    network_kwargs = dnnlib.EasyDict(class_name="training.networks.EDMPrecond", **ARCHS[arch], **size)
    network_kwargs.update(augment_dim=9, dropout=0.13, use_fp16=False)
    net = dnnlib.util.construct_class_by_name(**network_kwargs, img_resolution=res, img_channels=3, label_dim=label_dim)
    with torch.no_grad():  # unit-scale weights: every layer matters to the output
        for name, p in list(net.named_parameters()) + list(net.named_buffers()):
            if "resample_filter" in name or name.endswith("map_noise.freqs"):
                continue  # fixed by the architecture (FIR taps) or already EDM's own random draw (NCSN++ freqs)
            if p.ndim >= 2:
                p.copy_(torch.randn_like(p) / np.sqrt(p[0].numel()))
            elif name.endswith("weight"):  # GroupNorm scales
                p.copy_(1 + 0.3 * torch.randn_like(p))
            else:
                p.copy_(0.3 * torch.randn_like(p))
    loss_fn = dnnlib.util.construct_class_by_name(class_name="training.loss.EDMLoss")
    augment = dnnlib.util.construct_class_by_name(class_name="training.augment.AugmentPipe", p=0.12, xflip=1e8,
                                                  yflip=1, scale=1, rotate_frac=1, aniso=1, translate_frac=1)
    dataset_kwargs = dnnlib.EasyDict(class_name="training.dataset.ImageFolderDataset", path="datasets/tiny.zip",
                                     use_labels=bool(label_dim), xflip=False, cache=True, resolution=res, max_size=64)
    return net, loss_fn, augment, dataset_kwargs


def snapshot(net, loss_fn, augment_pipe, dataset_kwargs, path: str) -> None:
    """As EDM's training_loop.py saves a snapshot (lines 177-188 at 008a4e5)."""
    data = dict(ema=net, loss_fn=loss_fn, augment_pipe=augment_pipe, dataset_kwargs=dict(dataset_kwargs))
    for key, value in data.items():
        if isinstance(value, torch.nn.Module):
            value = copy.deepcopy(value).eval().requires_grad_(False)
            data[key] = value.cpu()
        del value
    with open(path, "wb") as f:
        pickle.dump(data, f)


def outputs(net, label_dim: int, seed: int, res: int) -> dict[str, np.ndarray]:
    g = torch.Generator().manual_seed(seed + 100)
    sigma = torch.tensor(SIGMAS, dtype=torch.float32)
    b = len(SIGMAS)
    x = torch.randn(b, 3, res, res, generator=g) * torch.sqrt(sigma**2 + 0.25).reshape(-1, 1, 1, 1)
    labels = torch.zeros(b, label_dim)
    if label_dim:
        labels[torch.arange(b - 1), torch.arange(b - 1) % label_dim] = 1  # the last row: no label
    net = net.eval()
    with torch.no_grad():
        denoised = net(x, sigma, labels if label_dim else None)
        s = sigma.reshape(-1, 1, 1, 1)
        c_in = 1 / (net.sigma_data**2 + s**2).sqrt()
        f = net.model(c_in * x, (sigma.log() / 4).flatten(), class_labels=labels if label_dim else None,
                      augment_labels=torch.zeros(b, net.model.map_augment.in_features))
    return {"x": x.numpy(), "sigma": sigma.numpy(), "labels": labels.numpy(), "denoised": denoised.numpy(),
            "F": f.numpy()}


def main(edm_dir: str, out: str = HERE, full: bool = False) -> None:
    sys.path.insert(0, edm_dir)
    import dnnlib  # EDM's own

    os.makedirs(out, exist_ok=True)
    arrays = {}
    nets = [("ddpmpp", 10), ("ddpmpp", 0), ("ncsnpp", 10), ("ncsnpp", 0), ("adm", 10), ("adm", 0)]
    for i, (arch, label_dim) in enumerate(nets):
        name = f"edm_{arch}_{'cond' if label_dim else 'uncond'}"
        size, res = ((ADM_MEDIUM, 16) if arch == "adm" else (FULL, 32)) if full else (SMALL, 8)
        net, loss_fn, augment, dataset_kwargs = build(dnnlib, arch, label_dim, seed=i, size=size, res=res)
        snapshot(net, loss_fn, augment, dataset_kwargs, os.path.join(out, name + ".pkl"))
        for key, value in outputs(net, label_dim, seed=i, res=res).items():
            arrays[f"{name}/{key}"] = value
        print(f"{name}.pkl: {os.path.getsize(os.path.join(out, name + '.pkl')) / 1024:.0f} KiB, "
              f"{sum(p.numel() for p in net.parameters()):,} parameters")
    np.savez(os.path.join(out, "edm_outputs.npz"), **arrays)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[2] == "--full":
        main(sys.argv[1], sys.argv[3], full=True)
    else:
        main(sys.argv[1])
