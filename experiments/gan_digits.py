"""The GAN derived from ReFlow (seed equations, sections 6-7) vs WGAN-GP vs rectified flow + one-step
distillation on the embedded 8x8 digits, at an equal budget of 8,000 parameter updates per method.

All end in the same kind of one-step generator, g(z) = z - v(z, 1) with v the digits MLP (width 512,
depth 3, the net of experiments/reflow_digits.py), z ~ N(0, I) of shape 8x8x1; critics are 3-layer
SiLU MLPs of width 512 on the flattened image; Adam(1e-3, b1 = 0.5, b2 = 0.9) for every GAN network;
batches of 128 real digits (epoch-shuffled training set, 1,497 images). Counting critic and
generator updates alike:
  derived GAN   critic E phi(fake) - E phi(real) + (lambda/2) E||grad phi(x_t)||^2, lambda = 1;
                generator by regression onto g(z) + eta grad phi(g(z)), eta = 0.1 (section 6);
  WGAN-GP       penalty lambda (||grad phi(x_t)|| - 1)^2, lambda = 10; generator on -E phi(g(z));
  each with 5 critic updates per generator update (WGAN-GP's schedule) and with 1; WGAN-GP also with
  Gulrajani et al.'s own Adam (1e-4, b1 = 0, b2 = 0.9); and the derived GAN taking 4 regression
  steps toward each set of moved samples (eta = 0.3);
  RF            5,000 flow-matching steps (the config below) + 3,000 steps of one-step distillation
                on 10,000 couplings (their ODE solves are extra work, timed).
Quality: Fréchet digits distance of 300 samples (the held-out set's size) to the training digits,
mean of 5 blocks; the floor is the 300 held-out real digits (9.055).
Run:    PYTHONPATH=. python benchmarks/gan_compare.py experiments/gan_digits.py --out runs/gan_digits
Expect: 28 minutes on 2 shared CPU cores (measured 2026-12-01). FDD, mean +- std over seeds 0-2:
        n_critic = 5 (1,333 generator steps): derived 118 +- 2, WGAN-GP 85 +- 2 (78 +- 1 with the
        paper's Adam); n_critic = 1 (4,000 generator steps): derived 16.5 +- 1.0, WGAN-GP 11.5 +- 1.1;
        derived with 4 regression steps 40 +- 2; RF + one-step distillation 10.8 +- 1.2. Another
        draw of z moves a seed's FDD by about 1: differences below 2 are noise.
"""
from genflow.config import Data, Experiment, Net, Optim, Process, Sample, Train
from genflow.gan import GANConfig

config = Experiment(
    name="gan_digits",
    data=Data(name="digits"),
    process=Process(name="rectified_flow"),
    net=Net(name="mlp", width=512, depth=3),
    predicts="velocity", objective="flow_matching",
    optim=Optim(name="adam", lr=1e-3, warmup_steps=100, grad_clip=1.0, ema_decay=0.999),
    train=Train(batch_size=128, steps=5000, log_every=100, ckpt_every=5000),
    sample=Sample(sampler="euler_ode", steps=100, num=64, denoise=False),
)

distill_steps = 3000
num_couples = 10_000
eval_draws = 5

_common = dict(batch_size=128, gen_lr=1e-3, critic_lr=1e-3, b1=0.5, b2=0.9, ema_decay=0.999,
               gen_width=512, gen_depth=3, critic_width=512, critic_depth=3)
_derived = dict(critic_objective="derived", generator_form="regression", penalty=1.0, eta=0.1, **_common)
_wgan_gp = dict(critic_objective="wgan_gp", generator_form="potential", penalty=10.0, **_common)

gans = {
    "derived GAN, n_critic = 5": GANConfig(n_critic=5, steps=1333, **_derived),
    "WGAN-GP, n_critic = 5": GANConfig(n_critic=5, steps=1333, **_wgan_gp),
    "WGAN-GP, n_critic = 5, paper's Adam": GANConfig(n_critic=5, steps=1333,
                                                      **dict(_wgan_gp, gen_lr=1e-4, critic_lr=1e-4, b1=0.0)),
    "derived GAN, n_critic = 1": GANConfig(n_critic=1, steps=4000, **_derived),
    "WGAN-GP, n_critic = 1": GANConfig(n_critic=1, steps=4000, **_wgan_gp),
    "derived GAN, 4 regression steps": GANConfig(n_critic=1, steps=1600, **dict(_derived, eta=0.3, inner_steps=4)),
}

seeds = (0, 1, 2)
