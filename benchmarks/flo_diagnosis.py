"""Why is FLO below the truth at high MI?  Separate critic quality from u-network quality.

Trains FLO (the library's ``MIObjective``: dot critic + joint u-network, Adam, per-module
gradient clipping) on fresh samples of a correlated Gaussian every step (no overfitting), and
every ``--every`` steps evaluates on a fixed held-out set:

* ``flo``      — FLO with the learned u-network (the reported estimate, a lower bound);
* ``flo_u*``   — FLO with u at its per-batch optimum ``u*_i = log mean_{j≠i} exp(S_ij − S_ii)``
                 (the same critic; a plug-in diagnostic, not a bound);
* ``js``       — ``1 + E_p[S] − E_q[e^S]`` of the same critic.

If ``flo_u*`` is near the truth while ``flo`` is not, the critic is fine and the u-network lags.

    python benchmarks/flo_diagnosis.py --mi 10 --dim 20 --steps 4000
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from infomax import bounds
from infomax.critics import build_critic
from infomax.objectives import MIObjective
from infomax.tasks import CorrelatedGaussian


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mi", type=float, default=10.0)
    parser.add_argument("--dim", type=int, default=20)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--grad-clip", type=float, default=1.0)
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    task = CorrelatedGaussian(dim=args.dim, mi=args.mi)
    k = args.batch_size
    torch.manual_seed(args.seed)
    critic = build_critic("dot", args.dim, args.dim)
    objective = MIObjective("flo", critic, args.dim, args.dim)
    optimizer = torch.optim.Adam(objective.parameters(), lr=args.lr)
    xs, ys = (torch.tensor(a, dtype=torch.float32) for a in task.sample(32 * k, seed=10**6))
    print(f"task {task.id}: true MI {task.mutual_information:.3f} nats, K = {k}")
    print(f"{'step':>6} {'flo':>8} {'flo_u*':>8} {'js':>8} {'seconds':>8}")
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        x, y = (
            torch.tensor(a, dtype=torch.float32)
            for a in task.sample(k, seed=args.seed * 10**6 + step)
        )
        loss, _ = objective.loss(x, y)
        optimizer.zero_grad()
        loss.backward()
        for module in objective.children():
            params = [p for p in module.parameters() if p.grad is not None]
            if params:
                torch.nn.utils.clip_grad_norm_(params, args.grad_clip)
        optimizer.step()
        if step % args.every == 0:
            flo, flo_star, js = [], [], []
            with torch.no_grad():
                for i in range(0, xs.shape[0], k):
                    xb, yb = xs[i : i + k], ys[i : i + k]
                    s = critic(xb, yb)
                    flo.append(float(objective.estimate(xb, yb)))
                    flo_star.append(float(bounds.flo(s, bounds.flo_optimal_u(s))))
                    js.append(float(bounds.js_estimate(s)))
            print(
                f"{step:>6} {np.mean(flo):8.3f} {np.mean(flo_star):8.3f} {np.mean(js):8.3f} "
                f"{time.perf_counter() - start:8.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
