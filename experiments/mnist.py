"""VP SDE, eps-prediction, a small DDPM++-style U-Net on MNIST 28x28 (TFDS, `tfds build mnist` once).

Run:    genflow train experiments/mnist.py --workdir runs/mnist
Expect: not yet measured (no GPU run has been made with genflow); a few minutes per 10k steps on a GPU.
"""
from genflow.config import Data, Experiment, Net, Optim, Process, Sample, Train

config = Experiment(
    name="mnist",
    data=Data(name="mnist", holdout=1000),
    process=Process(name="vp"),
    net=Net(name="unet", channels=64, channel_mult=(1, 2, 2), num_res_blocks=2, attn_resolutions=(7,), dropout=0.1),
    predicts="eps", objective="dsm", weighting="eps",
    optim=Optim(name="adam", lr=2e-4, warmup_steps=1000, grad_clip=1.0, ema_decay=0.9999),
    train=Train(batch_size=128, steps=100_000, dtype="bfloat16", log_every=500, sample_every=10_000,
                ckpt_every=5_000),
    sample=Sample(sampler="dpm_solver_pp_2m", grid="log_snr", steps=20, num=64, denoise=True),
)
