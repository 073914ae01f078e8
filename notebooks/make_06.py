"""Write notebooks/06_parallel_sampling.ipynb (nbformat 4); then run notebooks/execute.py on it.

    python notebooks/make_06.py && python notebooks/execute.py notebooks/06_parallel_sampling.ipynb
"""
import json
import os

from make_04_05 import code, md, notebook

HERE = os.path.dirname(os.path.abspath(__file__))

NB06 = [
    md(r"""
# 06 · Sequential made parallel: Picard and Newton iteration over a whole trajectory

A recurrence $x_k = F_k(x_{k-1})$, $k = 1..N$ (an RNN, or a sampler's $N$ solver steps) is the
fixed point of the map that applies every $F_k$ to the previous guess of the trajectory at once
(seed equations, section 9):

* **Picard (fixed-point) iteration**: $x^{(i+1)}_k = F_k(x^{(i)}_{k-1})$ for all $k$ in parallel.
* **Newton iteration** (DEER): linearise each $F_k$ at the guess,
  $x^{(i+1)}_k = F_k(x^{(i)}_{k-1}) + J_k\,(x^{(i+1)}_{k-1} - x^{(i)}_{k-1})$, $J_k = \partial F_k / \partial x$,
  a *linear* recurrence, which a parallel associative scan solves in $O(\log N)$ depth.

Both make at least one more step exact per iteration (the first step only needs $x_0$, which is
known), so both reach the sequential answer after at most $N$ iterations — and usually after far
fewer: the sequential depth drops from $N$ network calls to the number of iterations, paid for with
more (parallel, batched) calls.

1. The article's own example: the non-linear RNN $x_t = \tanh(A x_{t-1} + u_t)$.
2. A 1000-step DDIM sampler on an exact 8-Gaussian mixture score, solved by
   `genflow.samplers.parallel`: error against the sequential sampler vs rounds.
"""),
    code(r"""
import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from genflow.data.toy2d import GaussianMixture
from genflow.processes import DDPM
from genflow.samplers import SAMPLERS, grids, parallel

jax.config.update("jax_enable_x64", True)   # the RNN part: float64, so "exact" means 1e-12
FAST = os.environ.get("GENFLOW_FAST") == "1"
"""),
    md(r"""
## 1. A non-linear RNN: fixed-point vs Newton iteration

$D = 8$ hidden units, $T$ steps, $A$ random with spectral norm 0.99 (so the RNN forgets, slowly), inputs
$u_t \sim N(0, 1)$. The sequential answer is a `lax.scan`. Newton's linear recurrence
$x_t = J_t x_{t-1} + b_t$ with $J_t = \mathrm{diag}(1 - \tanh^2(A x_{t-1} + u_t))\,A$ is solved by
`jax.lax.associative_scan` over the pairs $(J_t, b_t)$, composed as $(J_2 J_1,\ J_2 b_1 + b_2)$.
"""),
    code(r"""
D, T = 8, (200 if FAST else 1000)
k1, k2 = jax.random.split(jax.random.PRNGKey(0))
A = jax.random.normal(k1, (D, D)) / np.sqrt(D)
A = 0.99 * A / jnp.linalg.norm(A, ord=2)
U = jax.random.normal(k2, (T, D))
x0 = jnp.zeros(D)

def cell(x_prev, u):
    return jnp.tanh(A @ x_prev + u)

def sequential():
    return jax.lax.scan(lambda x, u: (cell(x, u), cell(x, u)), x0, U)[1]           # (T, D)

def shifted(xs):            # x_{t-1} for t = 1..T, x_0 the known start
    return jnp.concatenate([x0[None], xs[:-1]])

@jax.jit
def fixed_point_step(xs):
    return jax.vmap(cell)(shifted(xs), U)

def compose(early, late):
    (j1, b1), (j2, b2) = early, late
    return j2 @ j1, (j2 @ b1[..., None])[..., 0] + b2

@jax.jit
def newton_step(xs):
    prev = shifted(xs)
    f = jax.vmap(cell)(prev, U)                                                    # F_t(x_{t-1}^old)
    jac = jax.vmap(jax.jacfwd(cell))(prev, U)                                      # (T, D, D)
    b = f - (jac @ prev[..., None])[..., 0]
    b = b.at[0].set(f[0])                                                          # x_0 is exact: no J_1 term
    jac = jac.at[0].set(0.0)
    return jax.lax.associative_scan(compose, (jac, b))[1]

truth = sequential()
errors = {"fixed point": [], "Newton": []}
for name, step in [("fixed point", fixed_point_step), ("Newton", newton_step)]:
    xs = jnp.zeros((T, D))
    for i in range(80):
        xs = step(xs)
        errors[name].append(float(jnp.max(jnp.abs(xs - truth))))
iters = {name: next((i + 1 for i, e in enumerate(errs) if e < 1e-10), None) for name, errs in errors.items()}
print(f"T = {T} steps; iterations to the sequential answer (max error < 1e-10): {iters}")
assert iters["Newton"] <= 10 and iters["fixed point"] >= 4 * iters["Newton"]

plt.figure(figsize=(5, 3.2))
for name, errs in errors.items():
    plt.semilogy(np.arange(1, len(errs) + 1), np.maximum(errs, 1e-16), label=name)
plt.xlabel("iteration (sequential depth)"); plt.ylabel("max |x - x_sequential|")
plt.title(f"tanh RNN, T = {T} steps"); plt.legend(); plt.grid(alpha=0.3)
"""),
    md(r"""
Newton converges quadratically once near the answer; the fixed-point iteration moves its exact
front forward only about one "memory length" $1 / (1 - \|A\|)$ per iteration. Neither needs $T$
iterations.

## 2. A 1000-step DDIM sampler on an exact mixture score

The sampler's steps are a recurrence too (`genflow.samplers.recurrence`). `parallel.sample`
runs any fixed-grid sampler with one network call per step that way: each round evaluates the
network at all the window's steps in one batched call, then updates the window by

* **Picard**: the steps re-run with the network's answers held fixed (only the network lags a
  round; the process's linear part of each step stays exact),
* **Newton**: the linearised recurrence by associative scan, with the exact per-example Jacobian
  (`jacobian="full"`, for low-dimensional data) or an isotropic Hutchinson estimate
  (`"isotropic"`, one JVP per step, for images).

`max_rounds` stops a solve early (it is a traced value, so the sweep below compiles once per method).
"""),
    code(r"""
jax.config.update("jax_enable_x64", False)
process = DDPM()
model = GaussianMixture.eight_gaussians().exact_model(process, "eps")
N = 200 if FAST else 1000
ts = grids.uniform(process, N)
x1 = process.prior(jax.random.PRNGKey(1), (64, 2))
reference, _ = SAMPLERS["ddim"].fn(model, x1, ts)
finer, _ = SAMPLERS["ddim"].fn(model, x1, grids.uniform(process, 4 * N))
discretisation = float(jnp.max(jnp.abs(reference - finer)))

methods = {"Picard": dict(method="picard"), "Newton (full)": dict(method="newton", jacobian="full"),
           "Newton (isotropic)": dict(method="newton", jacobian="isotropic")}
rounds = np.array([1, 2, 3, 4, 6, 8, 12, 16, 24]) if FAST else np.arange(1, 31)
curves, converged = {}, {}
for name, kw in methods.items():
    curves[name] = [float(jnp.max(jnp.abs(parallel.sample(model, x1, ts, sampler="ddim", tol=0.0, max_rounds=int(r),
                                                           **kw)[0] - reference))) for r in rounds]
    x, stats = parallel.sample(model, x1, ts, sampler="ddim", tol=1e-3, **kw)
    converged[name] = (int(stats["rounds"]), int(stats["nfe"]), float(jnp.max(jnp.abs(x - reference))))

print(f"{N}-step DDIM, batch 64; its own discretisation error (vs a 4x finer grid): {discretisation:.1e}")
print(f"{'method':20s} {'rounds':>6s} {'NFE':>7s} {'error vs sequential':>20s}")
for name, (r, nfe, err) in converged.items():
    print(f"{name:20s} {r:6d} {nfe:7d} {err:20.1e}")
for name, (r, nfe, err) in converged.items():
    assert r <= N // 10 and err < discretisation / 10, (name, r, err)   # >= 10x fewer rounds, error well below
assert converged["Newton (full)"][0] < converged["Picard"][0]

plt.figure(figsize=(5, 3.2))
for name, errs in curves.items():
    plt.semilogy(rounds, np.maximum(errs, 1e-8), label=name)
plt.axhline(discretisation, color="k", ls=":", lw=1, label="DDIM's discretisation error")
plt.xlabel("rounds (sequential network-call depth)"); plt.ylabel("max |x - x_sequential|")
plt.title(f"{N}-step DDIM, exact mixture score"); plt.legend(fontsize=8); plt.grid(alpha=0.3)
"""),
    md(r"""
With a tolerance of $10^{-3}$ of the noise level per step, every method stops far below the
sampler's own discretisation error, in a small fraction of its $N$ sequential calls. The price is
NFE: each round evaluates the whole window. On a GPU those calls are one batched program, so the
rounds are the latency; `benchmarks/parallel_sampling.py` measures both.
"""),
]

if __name__ == "__main__":
    path = os.path.join(HERE, "06_parallel_sampling.ipynb")
    with open(path, "w") as f:
        json.dump(notebook(NB06, "nb06"), f, indent=1)
        f.write("\n")
    print("wrote", path)
