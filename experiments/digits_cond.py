"""Class-conditional digits: the digits recipe with labels, label dropout and a learned null label.

VP SDE, eps-prediction, residual MLP on scikit-learn's 8x8 digits with their class labels
(net.num_classes=10); each label is dropped to the null label with probability 0.1 inside the
jitted step, so one network is both p(x | c) and p(x), and classifier-free guidance combines them.
Run:    genflow train experiments/digits_cond.py --workdir runs/digits_cond
        genflow sample runs/digits_cond --labels all --guidance 2 --out runs/digits_cond/guided.png
Measure: PYTHONPATH=. python benchmarks/guidance_digits.py (label accuracy and FDD against w).
Expect: about 2-3 minutes of training on 2 CPU cores; the table in the README.
"""
from genflow.config import Data, Experiment, Net, Optim, Process, Sample, Train

config = Experiment(
    name="digits_cond",
    data=Data(name="digits"),
    process=Process(name="vp"),
    net=Net(name="mlp", width=512, depth=3, num_classes=10),
    predicts="eps", objective="dsm", weighting="eps",
    optim=Optim(name="adam", lr=1e-3, warmup_steps=100, grad_clip=1.0, ema_decay=0.999),
    train=Train(batch_size=128, steps=4000, p_uncond=0.1),
    sample=Sample(sampler="euler_maruyama", steps=200, num=100, denoise=True),
)
