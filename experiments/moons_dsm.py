"""Two moons with denoising score matching on the VP SDE; likelihood-weighted DSM, score-SDE style.

Run:    genflow train experiments/moons_dsm.py
Expect: runs/moons_dsm/samples.png shows both moons; under a minute on 2 CPU cores.
"""
from genflow.config import Data, Experiment, Net, Optim, Process, Sample, Train

config = Experiment(
    name="moons_dsm",
    data=Data(name="moons"),
    process=Process(name="vp"),
    net=Net(name="mlp", width=128, depth=3),
    predicts="eps", objective="dsm", weighting="eps",
    optim=Optim(name="adam", lr=2e-3, warmup_steps=100, ema_decay=0.995),
    train=Train(batch_size=256, steps=3000, log_every=100, ckpt_every=1000),
    sample=Sample(sampler="euler_maruyama", steps=200, num=2000, denoise=True),
)
