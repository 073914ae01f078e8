"""Rectified flow (1-RF), velocity prediction, DDPM++ U-Net, CIFAR-10 32x32 (Liu et al. 2023).

The rectified-flow paper trains score_sde's DDPM++ network with its CIFAR-10 recipe: Adam, lr 2e-4,
5,000 warm-up steps, gradient clipping at 1, batch 128, EMA 0.999999, random flips, and samples with
RK45 at tolerance 1e-5 (here: adaptive dopri5, rtol = atol = 1e-5). genflow's time runs data -> noise,
so its velocity target is noise - data (the paper's is data - noise at time 1 - t).
Follow-ups: `genflow reflow RUN_DIR` (2-RF on the flow's couplings), `genflow distill RUN_DIR`.
Run:    genflow train experiments/cifar10_rectified_flow.py --workdir runs/cifar10_rf
Expect: not yet measured (no GPU run has been made with genflow).
"""
from genflow.config import Data, Experiment, Net, Optim, Process, Sample, Train

config = Experiment(
    name="cifar10_rectified_flow",
    data=Data(name="cifar10", random_flip=True, holdout=0),
    process=Process(name="rectified_flow"),
    net=Net(name="unet", channels=128, channel_mult=(1, 2, 2, 2), num_res_blocks=4, attn_resolutions=(16,),
            dropout=0.1),  # score_sde's cifar10_ddpmpp_continuous layout
    predicts="velocity", objective="flow_matching",
    optim=Optim(name="adam", lr=2e-4, warmup_steps=5_000, grad_clip=1.0, ema_decay=0.999999),
    train=Train(batch_size=128, steps=800_000, dtype="bfloat16", log_every=500, sample_every=50_000,
                ckpt_every=10_000),
    sample=Sample(sampler="dopri5", rtol=1e-5, atol=1e-5, num=64, denoise=False),
)
