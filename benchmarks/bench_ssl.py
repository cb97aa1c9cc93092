"""SSL benchmarks (commands, not tests).

``throughput``: images/s of one SimCLR training step on CPU with augmentation on and off, and the
fraction of the step spent in augmentation (issue 4 acceptance: < 25%).

``table``: SimCLR with every divergence (and NT-Xent) on one dataset at the same budget; writes
``table.csv``, ``table.md`` and ``results.json`` into ``--out`` plus one run folder per row, and a
raw-pixel logistic-regression baseline row.

    python benchmarks/bench_ssl.py throughput --threads 1
    python benchmarks/bench_ssl.py table --data mnist --data-dir DIR --epochs 1 --out runs/mnist
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from infomax import reports
from infomax.augment import Normalize, build_augment
from infomax.data import load_dataset
from infomax.eval import linear_probe
from infomax.ssl import SSLConfig, build_model, train_ssl
from infomax.ssl.trainer import evaluate_model
from infomax.train import build_optimizer

DIVERGENCES = ["kl", "js", "pearson", "sqhellinger", "tsallis", "vlc"]


def throughput(batch_size: int, steps: int, width: int, threads: int | None) -> dict[str, float]:
    """Seconds per SimCLR step (2 views, CNN on 28×28) with and without kornia augmentation."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = SSLConfig(data="mnist", encoder="cnn", width=width, batch_size=batch_size, progress=False)
    model = build_model(cfg)
    opt = build_optimizer(model, cfg.train_config())
    aug, norm = build_augment("mnist"), Normalize((0.1307,), (0.3081,))
    x = torch.rand(batch_size, 1, 28, 28)

    def step(augment: bool) -> tuple[float, float]:
        t0 = time.perf_counter()
        v1, v2 = (aug(x), aug(x)) if augment else (x, x)
        t_aug = time.perf_counter() - t0
        loss = model(norm(v1), norm(v2))
        opt.zero_grad()
        loss.backward()
        opt.step()
        return time.perf_counter() - t0, t_aug

    for _ in range(2):
        step(True)
    on = [step(True) for _ in range(steps)]
    off = [step(False) for _ in range(steps)]
    t_on = sum(t for t, _ in on) / steps
    t_off = sum(t for t, _ in off) / steps
    t_aug = sum(a for _, a in on) / steps
    return {
        "batch_size": batch_size,
        "threads": torch.get_num_threads(),
        "images_per_s_aug_on": batch_size / t_on,
        "images_per_s_aug_off": batch_size / t_off,
        "aug_fraction_of_step": t_aug / t_on,
        "step_seconds_aug_on": t_on,
        "step_seconds_aug_off": t_off,
        "load_average_1min": os.getloadavg()[0],
    }


def table(args: argparse.Namespace) -> None:
    """SimCLR with each objective at one budget, plus the raw-pixel baseline (and the untrained
    encoder when ``random-init`` is listed among the objectives)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    rows = []
    ds = load_dataset(args.data, args.data_dir)
    n_probe = args.probe_subset or ds.train_x.shape[0]
    t0 = time.perf_counter()
    pix = linear_probe(
        ds.train_x[:n_probe].flatten(1).float() / 255,
        ds.train_y[:n_probe],
        ds.test_x.flatten(1).float() / 255,
        ds.test_y,
    )
    rows.append(
        {
            "objective": "raw pixels (logistic regression)",
            "linear_probe_acc": pix,
            "knn_acc": float("nan"),
            "epochs": 0,
            "train_seconds": 0.0,
            "eval_seconds": time.perf_counter() - t0,
        }
    )
    for name in args.objectives.split(","):
        cfg = SSLConfig(
            method="simclr",
            data=args.data,
            data_dir=args.data_dir,
            objective="infonce" if name == "random-init" else name,
            similarity=args.similarity,
            temperature=args.temperature,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            width=args.width,
            train_subset=args.train_subset,
            probe_subset=args.probe_subset,
            seed=args.seed,
            progress=False,
        )
        load0 = os.getloadavg()[0]
        if name == "random-init":  # the untrained encoder: what the probe gets for free
            torch.manual_seed(args.seed)
            t1 = time.perf_counter()
            acc = evaluate_model(build_model(cfg), ds, cfg, torch.device("cpu"))
            rows.append(
                {
                    "objective": name,
                    **acc,
                    "epochs": 0,
                    "train_seconds": 0.0,
                    "eval_seconds": time.perf_counter() - t1,
                    "load_avg_start": load0,
                }
            )
            print(rows[-1], flush=True)
            continue
        try:
            m = train_ssl(cfg, out / name)
        except ValueError as err:  # e.g. a diverged loss: report it as a row
            rows.append({"objective": name, "error": str(err)})
            continue
        rows.append(
            {
                "objective": name,
                **{
                    k: m[k]
                    for k in (
                        "linear_probe_acc",
                        "knn_acc",
                        "alignment",
                        "uniformity",
                        "final_loss",
                        "epochs",
                        "train_seconds",
                        "eval_seconds",
                        "images_per_s",
                    )
                },
                "load_avg_start": load0,
                "load_avg_end": os.getloadavg()[0],
            }
        )
        reports.write_csv(out / "table.csv", rows)
        print(rows[-1], flush=True)
    reports.write_csv(out / "table.csv", rows)
    cols = ["objective", "linear_probe_acc", "knn_acc", "epochs", "train_seconds"]
    md = reports.markdown_table(cols, [[r.get(c, "") for c in cols] for r in rows])
    reports.atomic_write_text(out / "table.md", md)
    reports.write_results(out, config=vars(args), results=rows, seed=args.seed)
    print(md)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("throughput")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=None)
    t = sub.add_parser("table")
    t.add_argument("--data", default="mnist")
    t.add_argument("--data-dir", default=None)
    t.add_argument("--objectives", default="infonce," + ",".join(DIVERGENCES))
    t.add_argument("--similarity", default="cosine")
    t.add_argument("--temperature", type=float, default=0.5)
    t.add_argument("--epochs", type=int, default=1)
    t.add_argument("--batch-size", type=int, default=256)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--width", type=int, default=16)
    t.add_argument("--train-subset", type=int, default=None)
    t.add_argument("--probe-subset", type=int, default=None)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--out", default="runs/ssl-table")
    args = parser.parse_args()
    if args.cmd == "throughput":
        res = throughput(args.batch_size, args.steps, args.width, args.threads)
        print(res)
        if args.out:
            reports.write_results(args.out, config=vars(args), results=res, seed=0)
    else:
        table(args)


if __name__ == "__main__":
    main()
