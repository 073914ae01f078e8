"""Denoising, implicit (Hutchinson) and sliced score matching on the 8x8 digits (64 dimensions).

The score of the digits is unknown, so there is no Fisher column and no exact-SM row; the
table reports the energy distance of samples to the 300 held-out digits, gradient noise,
time per step and XLA memory, with the same MLP, data order, optimizer and budget for all.
Run:    genflow compare-objectives experiments/compare_digits.py --out runs/compare_digits
Expect: DSM gives the best samples at this budget; the Hutchinson and sliced objectives are
        noisier in 64 dimensions. Not yet run to completion: about 5 minutes per objective on
        2 CPU cores by the per-step times of a 20-step run (30-80 ms/step), plus evaluation.
"""
from genflow.config import Comparison, Data, Experiment, Net, Optim, Process, Sample, Train

config = Experiment(
    name="compare_digits",
    data=Data(name="digits"),
    process=Process(name="vp"),
    net=Net(name="mlp", width=512, depth=3),
    predicts="eps", objective="dsm", weighting="sigma2",
    optim=Optim(name="adam", lr=1e-3, warmup_steps=100, grad_clip=1.0, ema_decay=0.999),
    train=Train(batch_size=128, steps=4000, seed=0),
    sample=Sample(sampler="euler_maruyama", steps=200, num=300, denoise=True),
)

comparison = Comparison(
    objectives=("dsm", "ism", "ssm", "ssm_vr"),
    ism_trace="rademacher",    # Hutchinson: an exact trace would cost 64 jvps a step
    probe="gaussian", n_probes=1,  # (with Rademacher probes SSM-VR would be exactly this ISM)
    num_samples=300, nll_samples=64, grad_batches=32,
)
