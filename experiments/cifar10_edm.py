"""EDM's CIFAR-10 recipe (Karras et al. 2022): DDPM++ U-Net with EDM preconditioning, EDM loss, log-normal noise.

The same 55.7M-parameter DDPM++ network as cifar10_ddpmpp.py (the VP recipe), trained as EDM's
`--arch=ddpmpp --precond=edm` config: the network sees c_in x and c_noise = ln(sigma)/4 and
predicts F with D = c_skip x + c_out F (predicts="edm", sigma_data = 0.5), the loss weight
lambda(sigma) = (sigma^2 + s_d^2) / (sigma s_d)^2 on the denoiser (weighting="edm", unit weight on
F), ln(sigma) ~ N(-1.2, 1.2^2) (time_sampling="lognormal"); batch 512, Adam lr 1e-3 with a 10M-image
warm-up, EMA half-life 0.5M images, dropout 0.13, x-flips (EDM's augmentation pipeline is not
reproduced). Sampling: EDM's Heun sampler on its 18 Karras noise levels with the last step to
sigma = 0, i.e. 17 Heun steps plus the final Euler step (denoise=True): 35 NFE.
The recipe is a config choice for any process: set process.name=vp (etc.) and keep the rest.
Run:    genflow train experiments/cifar10_edm.py --workdir runs/cifar10_edm   (GPU-sized; `tfds build cifar10`)
Expect: not yet measured here (no GPU run has been made with genflow); EDM reports FID 1.97
        (unconditional, VP) / 1.98 (EDM preconditioning) at 35 NFE after 200M images.
"""
from genflow.config import Data, Experiment, Net, Optim, Process, Sample, Train

config = Experiment(
    name="cifar10_edm",
    data=Data(name="cifar10", random_flip=True, holdout=0),
    process=Process(name="edm", sigma_min=0.002, sigma_max=80.0, rho=7.0),
    net=Net(name="unet", channels=128, channel_mult=(2, 2, 2), num_res_blocks=4, attn_resolutions=(16,),
            dropout=0.13),
    predicts="edm", sigma_data=0.5, objective="dsm", weighting="edm",
    time_sampling="lognormal", p_mean=-1.2, p_std=1.2,
    optim=Optim(name="adam", lr=1e-3, b1=0.9, b2=0.999, warmup_steps=19_531, grad_clip=None,
                ema_decay=0.99929),  # 0.5 ** (512 / 500_000)
    train=Train(batch_size=512, steps=390_625, dtype="bfloat16", log_every=500, sample_every=20_000,
                ckpt_every=10_000),
    sample=Sample(sampler="edm_heun", grid="karras", steps=17, num=64, denoise=True),
)
