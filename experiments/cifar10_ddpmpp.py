"""VP SDE, eps-prediction, DDPM++ U-Net (55.7M parameters, EDM's DDPM++ CIFAR-10 network), CIFAR-10 32x32.

GPU-sized; the CIFAR-10 data pipeline is the TFDS one (`tfds build cifar10` where there is
internet). Hyper-parameters follow EDM's `--arch=ddpmpp --precond=vp` recipe: batch 512,
Adam lr 1e-3 with 10M-image warm-up, EMA half-life 0.5M images, dropout 0.13, x-flips.
Run:    genflow train experiments/cifar10_ddpmpp.py --workdir runs/cifar10_ddpmpp
Expect: not yet measured here (no GPU run has been made with genflow).
"""
from genflow.config import Data, Experiment, Net, Optim, Process, Sample, Train

config = Experiment(
    name="cifar10_ddpmpp",
    data=Data(name="cifar10", random_flip=True, holdout=0),
    process=Process(name="vp", beta_min=0.1, beta_max=19.9, t_min=1e-5),
    net=Net(name="unet", channels=128, channel_mult=(2, 2, 2), num_res_blocks=4, attn_resolutions=(16,),
            dropout=0.13),
    predicts="eps", objective="dsm", weighting="eps",
    optim=Optim(name="adam", lr=1e-3, b1=0.9, b2=0.999, warmup_steps=19_531, grad_clip=None,
                ema_decay=0.99929),  # 0.5 ** (512 / 500_000)
    train=Train(batch_size=512, steps=390_625, dtype="bfloat16", log_every=500, sample_every=20_000,
                ckpt_every=10_000),
    sample=Sample(sampler="edm_heun", grid="karras", steps=18, num=64, denoise=False),  # EDM: Heun, 18 steps
)
