"""Class-conditional ImageNet 64x64 in pixel space with DiT-B/4 (Peebles & Xie 2023): a GPU-sized config.

DiT's training recipe on 64x64 RGB images instead of 32x32x4 VAE latents: patch 4 gives 256 tokens,
the sequence length of the paper's 256x256 runs at patch 2 (U-ViT's ImageNet-64 models also use
patch 4); DiT-B (hidden 768, 12 blocks, 12 heads, 130M parameters at B/4 with learned sigma off);
the DDPM linear-beta chain with 1000 steps, eps-prediction and the simple loss (learned sigma off);
AdamW at a constant 1e-4 without weight decay or warm-up, batch 256, EMA 0.9999, label dropout 0.1;
bf16 compute with float32 parameters; scanned blocks (compile time flat in depth). Sampling: DDPM's
ancestral sampler on 250 of the chain's steps, as DiT's evaluation; DiT's cfg scale 1.5 is
guidance w = 0.5 in genflow's convention (`--guidance 0.5`).
Data: genflow has no ImageNet reader; point data.path at a folder of class subfolders of 64x64
images (e.g. the downsampled ImageNet of Chrabaszcz et al. 2017 written out as PNGs).
Run:    genflow train experiments/imagenet64_dit.py --set data.path=/data/imagenet64/train
Expect: not yet measured (no GPU run has been made with genflow); not run in CI, where a test checks
        the config validates and builds the 130M-parameter network with eval_shape.
"""
from genflow.config import Data, Experiment, Net, Optim, Process, Sample, Train

config = Experiment(
    name="imagenet64_dit",
    data=Data(name="folder", path="data/imagenet64/train", image_size=64, channels=3, labels=True,
              random_flip=True, holdout=0),
    process=Process(name="ddpm", num_steps=1000, schedule="linear"),
    net=Net(name="dit", dit="B/4", num_classes=1000, scan=True),
    predicts="eps", objective="dsm", weighting="eps",
    optim=Optim(name="adamw", lr=1e-4, b1=0.9, b2=0.999, weight_decay=0.0, warmup_steps=0, grad_clip=None,
                ema_decay=0.9999),
    train=Train(batch_size=256, steps=400_000, dtype="bfloat16", p_uncond=0.1, log_every=500,
                sample_every=20_000, ckpt_every=10_000),
    sample=Sample(sampler="ancestral", steps=250, num=64, denoise=False),
)
