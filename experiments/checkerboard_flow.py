"""Checkerboard with rectified flow (flow matching, velocity prediction, Euler ODE sampling).

Rectified-flow papers run time from noise (0) to data (1); genflow's t = 0 is data, so the
velocity target here is x1 - x0 (noise minus data) and sampling integrates from t = 1 to 0.
Run:    genflow train experiments/checkerboard_flow.py
Expect: runs/checkerboard_flow/samples.png shows the 8 squares; about a minute on 2 CPU cores.
"""
from genflow.config import Data, Experiment, Net, Optim, Process, Sample, Train

config = Experiment(
    name="checkerboard_flow",
    data=Data(name="checkerboard"),
    process=Process(name="rectified_flow"),
    net=Net(name="mlp", width=256, depth=3),
    predicts="velocity", objective="flow_matching",
    optim=Optim(name="adam", lr=2e-3, warmup_steps=100, ema_decay=0.995),
    train=Train(batch_size=256, steps=4000, log_every=100, ckpt_every=1000),
    sample=Sample(sampler="euler_ode", steps=100, num=2000, denoise=False),
)
