"""ReFlow on the embedded 8x8 digits: 1-rectified flow -> 2-rectified flow -> one-step distillation.

Same recipe as experiments/reflow_2d.py with the digits MLP; quality is the Fréchet digits
distance (FDD, genflow.metrics.frechet_digits_distance) to the training digits of 300 samples (the
held-out set's size, so it compares with the floor of 9.06), averaged over 6 blocks of 2,000 samples.
Time runs data (t = 0) to noise (t = 1) as everywhere in genflow; rectified-flow papers' time is 1 - t.
Run:    PYTHONPATH=. python benchmarks/reflow_table.py experiments/reflow_digits.py --out runs/reflow_digits
Expect: S falls from 8.0 (1-RF) to 0.35 (2-RF); 1-step FDD from 368 to 11.7 (11.3 distilled from
        the 2-RF, 12.8 from the 1-RF), 8-step from 13.1 to 10.5; the adaptive-ODE FDD gets a little
        worse (9.4 -> 10.1: the 2-RF learns the 1-RF's samples plus its own error); 11 minutes on
        2 CPU cores (measured 2026-12-01).
"""
from genflow.config import Data, Experiment, Net, Optim, Process, Reflow, Sample, Train

config = Experiment(
    name="reflow_digits",
    data=Data(name="digits"),
    process=Process(name="rectified_flow"),
    net=Net(name="mlp", width=512, depth=3),
    predicts="velocity", objective="flow_matching",
    optim=Optim(name="adam", lr=1e-3, warmup_steps=100, grad_clip=1.0, ema_decay=0.999),
    train=Train(batch_size=128, steps=5000, log_every=100, ckpt_every=1000),
    sample=Sample(sampler="euler_ode", steps=100, num=64, denoise=False),
)

reflow = Reflow(
    num_couples=10_000, chunk_size=2000,
    solver="tsit5", rtol=1e-4, atol=1e-4,
    rounds=1, steps=5000,
    distill_steps=3000, distill_k=1,
    lr=5e-4, eval_samples=2000,
)
