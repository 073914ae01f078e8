"""A small class-conditional DiT (Peebles & Xie 2023) on scikit-learn's 8x8 digits, on CPU.

The digits recipe of digits_cond.py (VP SDE, eps-prediction, labels with label dropout and a learned
null label) with the MLP replaced by a Diffusion Transformer: 4x4 patches give 4 tokens of width 128,
4 adaLN-Zero blocks with 4 heads (1.28M parameters). Blocks are scanned (net.scan), so the compiled
step holds one block whatever net.depth is. (2x2 patches at width 64, 16 tokens, 0.33M parameters,
reached FDD 44.8 and 45% label accuracy in the same 3,000 steps and took twice as long.)
Run:    genflow train experiments/digits_dit.py --workdir runs/digits_dit
        genflow sample runs/digits_dit --labels all --guidance 2 --out runs/digits_dit/guided.png
Expect: measured 2026-12-04 on 2 shared CPU cores: 4m38s for 3,000 steps (13 steps/s), final loss
        0.081, Fréchet digits distance 16.7 (held-out real digits 9.06), label accuracy 86%.
"""
from genflow.config import Data, Experiment, Net, Optim, Process, Sample, Train

config = Experiment(
    name="digits_dit",
    data=Data(name="digits"),
    process=Process(name="vp"),
    net=Net(name="dit", width=128, depth=4, heads=4, patch=4, num_classes=10, scan=True),
    predicts="eps", objective="dsm", weighting="eps",
    optim=Optim(name="adam", lr=1e-3, warmup_steps=200, grad_clip=1.0, ema_decay=0.999),
    train=Train(batch_size=128, steps=3000, p_uncond=0.1, log_every=250),
    sample=Sample(sampler="euler_maruyama", steps=200, num=100, denoise=True),
)
