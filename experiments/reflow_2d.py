"""ReFlow on 8 Gaussians: 1-rectified flow -> 2-rectified flow -> one-step distillation.

The 1-RF is plain rectified flow (flow matching, velocity prediction). Its couplings (noise,
PF-ODE sample) are stored in runs/reflow_2d/1rf/couplings/, the 2-RF is trained on them from the
1-RF's weights, and a one-step generator is distilled from the 2-RF's couplings (and, to show
what reflow buys, from the 1-RF's). Rectified-flow papers run time from noise (0) to data (1);
genflow's t = 0 is data, so the velocity here is x1 - x0 and sampling runs from t = 1 to 0.
Run:    PYTHONPATH=. python benchmarks/reflow_table.py experiments/reflow_2d.py --out runs/reflow_2d
        (or step by step: genflow train experiments/reflow_2d.py --workdir runs/reflow_2d/1rf;
         genflow reflow runs/reflow_2d/1rf; genflow distill runs/reflow_2d/1rf-2rf)
Expect: straightness S falls from about 1.4 (1-RF) to about 5e-4 (2-RF), and the one-step energy
        distance from about 1.3 to the Monte-Carlo floor (~1e-3); 1m42s on 2 shared CPU cores
        (measured 2026-11-24, benchmarks/reflow_table.py; the table is in the issue note).
"""
from genflow.config import Data, Experiment, Net, Optim, Process, Reflow, Sample, Train

config = Experiment(
    name="reflow_2d",
    data=Data(name="8gaussians"),
    process=Process(name="rectified_flow"),
    net=Net(name="mlp", width=128, depth=3),
    predicts="velocity", objective="flow_matching",
    optim=Optim(name="adam", lr=2e-3, warmup_steps=100, grad_clip=1.0, ema_decay=0.995),
    train=Train(batch_size=256, steps=3000, log_every=100, ckpt_every=1000),
    sample=Sample(sampler="euler_ode", steps=100, num=2000, denoise=False),
)

reflow = Reflow(
    num_couples=32_768, chunk_size=8192,        # 4 chunks; ~2,600 2-RF batches of 256 see each couple ~20 times
    solver="tsit5", rtol=1e-4, atol=1e-4,       # adaptive PF-ODE for the couplings
    rounds=1, steps=3000,                       # 2-RF, started from the 1-RF's EMA weights
    distill_steps=2000, distill_k=1,
    lr=1e-3, eval_samples=2000,
)
