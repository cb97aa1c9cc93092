"""Training path: fit encoder + prior by maximising an RPM ELBO with :func:`infomax.train.fit`.

Compares, on the same encoder and views, (a) InfoNCE — the RPM ELBO with the InfoNCE prior, a
deterministic recognition model and a cosine critic — with (b) the learned-prior ELBO — Gaussian
recognition ``N(g(x), σ²)``, a learned full-covariance Gaussian prior over ``(z, z′)`` and the
batch-mixture estimate of ``R(z)`` (:mod:`infomax.rpm.elbo`). Representations are scored by the
library's linear probe (:func:`infomax.eval.linear_probe` on frozen features) on scikit-learn's
bundled 8×8 digits (:func:`infomax.data.load_digits`, stratified split); the two views are two
independently corrupted copies (Gaussian pixel noise and random pixel dropout) of each training
image (batches: :class:`infomax.data.Batches`). Labels are used only by the probe.

>>> cfg = DigitsConfig(epochs=1, progress=False)
>>> cfg.latent_dim
8
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .._checks import check_positive, check_positive_int, is_real
from ..critics import Similarity, mlp
from ..data import Batches, load_digits
from ..eval import linear_probe
from .models import RPM, GaussianRecognition, rpm_loss

OBJECTIVES = ("infonce", "learned")
# scikit-learn digits: 1797 images, >= 174 per class; 2% of them leaves >= 3 per class per split
DIGITS_MIN_FRACTION = 0.02


@dataclass(frozen=True)
class DigitsConfig:
    """Settings of :func:`train_digits` (shared by both objectives)."""

    objective: str = "learned"
    epochs: int = 30
    batch_size: int = 256
    lr: float = 2e-3
    hidden: int = 256
    latent_dim: int = 8
    noise: float = 0.3
    dropout: float = 0.25
    temperature: float = 0.2
    init_std: float = 0.3
    test_fraction: float = 0.3
    seed: int = 0
    progress: bool = False

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(
                f"unknown objective {self.objective!r}; valid: {', '.join(OBJECTIVES)}"
            )
        for name in ("epochs", "hidden", "latent_dim"):
            check_positive_int(getattr(self, name), name)
        check_positive_int(self.batch_size, "batch_size", minimum=2)
        check_positive_int(self.seed, "seed", minimum=0)
        for name in ("lr", "temperature", "init_std"):
            check_positive(name, getattr(self, name))
        if not is_real(self.noise) or not 0 <= self.noise < math.inf:
            raise ValueError(f"noise must be a finite number >= 0, got {self.noise!r}")
        if not is_real(self.dropout) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        lo, hi = DIGITS_MIN_FRACTION, 1 - DIGITS_MIN_FRACTION
        if not is_real(self.test_fraction) or not lo <= self.test_fraction <= hi:
            raise ValueError(
                f"test_fraction must be in [{lo:g}, {hi:g}] (both splits need every digit "
                f"class for the linear probe), got {self.test_fraction!r}"
            )


def load_digits_split(test_fraction: float, seed: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """:func:`infomax.data.load_digits` with a stratified split (``test_fraction``, ``seed``),
    as flat pixels in ``[0, 1]``: ``(x_train [n, 64], x_test, y_train [n], y_test)``."""
    ds = load_digits(test_fraction, seed, stratify=True)
    return (
        ds.train_x.flatten(1).float() / 255.0,
        ds.test_x.flatten(1).float() / 255.0,
        ds.train_y,
        ds.test_y,
    )


def corrupt(
    x: Tensor, noise: float, dropout: float, generator: torch.Generator | None = None
) -> Tensor:
    """One random view ``x ⊙ m + noise · ε``, ``m ~ Bernoulli(1 − dropout)``, ``ε ~ N(0, I)``."""
    keep = (torch.rand(x.shape, generator=generator) >= dropout).to(x.dtype)
    return x * keep + noise * torch.randn(x.shape, generator=generator)


class DigitsEncoder(nn.Module):
    """``backbone: 64 → hidden → hidden`` (BN, ReLU) and ``head: hidden → latent_dim``."""

    def __init__(self, hidden: int, latent_dim: int) -> None:
        super().__init__()
        self.backbone = mlp([64, hidden, hidden], norm="batch", out_act=True)
        self.head = nn.Linear(hidden, latent_dim)

    def forward(self, x: Tensor) -> Tensor:
        """``x: [K, 64] -> z: [K, latent_dim]``."""
        return self.head(self.backbone(x))


def build_model(config: DigitsConfig) -> RPM:
    """The RPM for ``config.objective``: InfoNCE prior + deterministic recognition + cosine critic,
    or learned Gaussian prior + Gaussian recognition with learned ``σ``."""
    encoder = DigitsEncoder(config.hidden, config.latent_dim)
    if config.objective == "infonce":
        rec = GaussianRecognition(encoder, config.latent_dim, std=None)
        tau = config.temperature
        return RPM(rec, "infonce", critic=Similarity("cosine", tau))
    rec = GaussianRecognition(encoder, config.latent_dim, std=config.init_std, min_std=1e-2)
    return RPM(rec, "learned")


@torch.no_grad()
def probe_model(model: RPM, xtr: Tensor, xte: Tensor, ytr: Tensor, yte: Tensor) -> dict[str, float]:
    """Linear-probe accuracy (:func:`infomax.eval.linear_probe`) on the backbone features and
    on the latent mean ``g(x)``."""
    model.eval()
    enc = model.recognition.encoder
    assert isinstance(enc, DigitsEncoder)
    htr, hte = enc.backbone(xtr), enc.backbone(xte)
    return {
        "probe_backbone": linear_probe(htr, ytr, hte, yte),
        "probe_latent": linear_probe(enc.head(htr), ytr, enc.head(hte), yte),
    }


def train_digits(config: DigitsConfig) -> dict[str, Any]:
    """Train one objective on digits with :func:`infomax.train.fit`; returns history and probes."""
    from ..train import TrainConfig, fit

    xtr, xte, ytr, yte = load_digits_split(config.test_fraction, config.seed)
    torch.manual_seed(config.seed)
    model = build_model(config)
    bs = min(config.batch_size, xtr.shape[0])  # a batch larger than the split: all of it

    def batches(epoch: int) -> list[tuple[Tensor, Tensor]]:
        g = torch.Generator().manual_seed(config.seed * 100_003 + epoch)  # the views' noise
        return [
            (
                corrupt(x, config.noise, config.dropout, g),
                corrupt(x, config.noise, config.dropout, g),
            )
            for x in Batches(xtr, bs, config.seed, epoch)
        ]

    def on_epoch_end(epoch: int, m: nn.Module) -> dict[str, float]:
        g = torch.Generator().manual_seed(12345)
        x = xtr[:bs]
        with torch.no_grad():
            assert isinstance(m, RPM)
            value = m.elbo(
                corrupt(x, config.noise, config.dropout, g),
                corrupt(x, config.noise, config.dropout, g),
            )
        return {"elbo_model": float(value.model)}

    tcfg = TrainConfig(
        epochs=config.epochs,
        lr=config.lr,
        amp=False,
        device="cpu",
        seed=config.seed,
        progress=config.progress,
        weight_decay=1e-5,
    )
    result = fit(model, batches, rpm_loss, tcfg, on_epoch_end=on_epoch_end)  # type: ignore[arg-type]
    probes = probe_model(model, xtr, xte, ytr, yte)
    std = model.recognition.std_log()
    return {
        "objective": config.objective,
        "config": asdict(config),
        "history": result.history,
        "seconds": result.seconds,
        "final_elbo_model": result.history[-1]["elbo_model"],
        "recognition_std": None if std is None else torch.exp(std).tolist(),
        **probes,
    }


def baselines(config: DigitsConfig) -> dict[str, float]:
    """Probe accuracy on raw pixels and on an untrained encoder (same split)."""
    xtr, xte, ytr, yte = load_digits_split(config.test_fraction, config.seed)
    torch.manual_seed(config.seed)
    raw = linear_probe(xtr, ytr, xte, yte)
    rand = probe_model(build_model(config), xtr, xte, ytr, yte)
    return {
        "raw_pixels": raw,
        "random_backbone": rand["probe_backbone"],
        "random_latent": rand["probe_latent"],
    }


def compare_digits(config: DigitsConfig) -> dict[str, Any]:
    """InfoNCE vs learned-prior ELBO on digits (same encoder, views, epochs and seed)."""
    runs = {
        obj: train_digits(DigitsConfig(**{**asdict(config), "objective": obj}))
        for obj in OBJECTIVES
    }
    return {
        "baselines": baselines(config),
        "runs": runs,
        "chance": 0.1,
        "log_batch": math.log(config.batch_size),
    }


@dataclass(frozen=True)
class IdentConfig:
    """Settings of :func:`compare_identifiability`: latents ``z ~ N(0, I_dim)``, positives
    ``z′ = ρ z + √(1 − ρ²) ε``, observations through a random invertible MLP (SPEC §5)."""

    dim: int = 5
    rho: float = 0.9
    mixing_layers: int = 3
    steps: int = 1500
    batch_size: int = 256
    lr: float = 3e-3
    hidden: int = 64
    n_eval: int = 4000
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("dim", "mixing_layers", "steps", "hidden"):
            check_positive_int(getattr(self, name), name)
        check_positive_int(self.batch_size, "batch_size", minimum=2)
        check_positive_int(self.n_eval, "n_eval", minimum=20)
        check_positive_int(self.seed, "seed", minimum=0)
        if not is_real(self.rho) or not -1 < self.rho < 1:
            raise ValueError(f"rho must lie in (-1, 1) (|rho| < 1), got {self.rho!r}")
        check_positive("lr", self.lr)


def compare_identifiability(config: IdentConfig) -> dict[str, Any]:
    """Linear R² (``identifiability.metrics.linear_r2``) of ``h(x) → z`` after training the same
    MLP encoder with InfoNCE (InfoNCE prior, true-ratio critic of the latent pair) and with the
    learned-Gaussian-prior ELBO, plus the untrained encoder."""
    from ..identifiability.metrics import linear_r2
    from ..identifiability.mixing import InvertibleMLP
    from ..train import TrainConfig, fit
    from .gaussian import GaussianRPMTask

    task = GaussianRPMTask(config.dim, config.rho)
    mixing = InvertibleMLP.random(config.dim, config.mixing_layers, seed=config.seed)

    def observe(z: Tensor) -> Tensor:
        return mixing(z.float())

    _, _, z_eval, _ = task.sample(2 * config.n_eval, config.seed + 1)
    x_eval = observe(z_eval)
    steps_per_epoch = 50
    epochs = max(config.steps // steps_per_epoch, 1)

    def batches(epoch: int) -> list[tuple[Tensor, Tensor]]:
        n = steps_per_epoch * config.batch_size
        x, xp, _, _ = task.sample(n, config.seed * 1_000 + 10 + epoch)
        xs, xps = observe(x).split(config.batch_size), observe(xp).split(config.batch_size)
        return list(zip(xs, xps, strict=True))

    def r2(model: RPM) -> float:
        with torch.no_grad():
            h = model.encode(x_eval).double()
        n = config.n_eval
        return linear_r2(h[:n], z_eval[:n], h[n:], z_eval[n:])

    out: dict[str, Any] = {"config": asdict(config), "mutual_information": task.mutual_information}
    for objective in ("infonce", "learned", "untrained"):
        torch.manual_seed(config.seed)
        enc = mlp([config.dim, config.hidden, config.hidden, config.dim])
        if objective == "infonce":
            critic = task.true_critic()  # matched: the true log ratio of (z, z′)
            model = RPM(GaussianRecognition(enc, config.dim, std=None), "infonce", critic=critic)
        else:
            rec = GaussianRecognition(enc, config.dim, std=0.3, min_std=1e-2)
            model = RPM(rec, "learned")
        if objective != "untrained":
            tcfg = TrainConfig(
                epochs=epochs,
                lr=config.lr,
                amp=False,
                device="cpu",
                seed=config.seed,
                progress=False,
            )
            res = fit(model, batches, rpm_loss, tcfg)  # type: ignore[arg-type]
            out[f"{objective}_loss"] = res.history[-1]["loss"]
        out[f"{objective}_r2_linear"] = r2(model)
    return out


def write_digits(result: dict[str, Any], config: DigitsConfig, out_dir: str) -> None:
    """``results.json``, ``history.csv`` (per epoch and objective) and ``elbo_curves.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..reports import save_figure, write_csv, write_results

    write_results(out_dir, config=config, results=result, seed=config.seed)
    rows = [
        {"objective": name, **{k: v for k, v in rec.items() if isinstance(v, (int, float))}}
        for name, run in result["runs"].items()
        for rec in run["history"]
    ]
    write_csv(f"{out_dir}/history.csv", rows)
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for name, run in result["runs"].items():
        ax.plot(
            [r["epoch"] for r in run["history"]],
            [r["elbo_model"] for r in run["history"]],
            label=f"{name} (latent probe {run['probe_latent']:.3f})",
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("batch model ELBO (nats)")
    ax.set_title("digits: InfoNCE-prior vs learned-prior ELBO")
    ax.legend(fontsize=8)
    save_figure(fig, f"{out_dir}/elbo_curves.png")


def write_identify(result: dict[str, Any], config: IdentConfig, out_dir: str) -> None:
    """``results.json``, ``r2.csv`` and ``r2.png`` (bar chart of linear R² per encoder)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..reports import save_figure, write_csv, write_results

    write_results(out_dir, config=config, results=result, seed=config.seed)
    names = ("infonce", "learned", "untrained")
    rows = [{"encoder": n, "r2_linear": result[f"{n}_r2_linear"]} for n in names]
    write_csv(f"{out_dir}/r2.csv", rows)
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.bar(list(names), [r["r2_linear"] for r in rows], color=["C0", "C2", "C7"])
    ax.set_ylim(0, 1)
    ax.set_ylabel("held-out linear R² of h(x) → z")
    save_figure(fig, f"{out_dir}/r2.png")
