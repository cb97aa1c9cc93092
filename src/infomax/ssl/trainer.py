"""End-to-end SSL training: config, data, augmentation, :func:`infomax.train.fit`, evaluation.

``train_ssl(SSLConfig(...), out_dir)`` trains ``method`` on ``data`` with two augmented views per
image, then reports the linear-probe and weighted-kNN test accuracy of the frozen encoder and the
alignment / uniformity of the projected test embeddings. It writes ``results.json`` (config,
versions, seed, curves, metrics), ``history.csv``, ``curves.png``, ``ssl_config.json`` and
``checkpoint.pt`` into ``out_dir``. ``evaluate_checkpoint(out_dir / "checkpoint.pt")`` repeats
the evaluation from a saved run.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .. import dist, reports
from ..augment import Normalize, build_augment, to_float
from ..data import DATASETS, ImageDataset, load_dataset
from ..eval import alignment, extract_features, knn_accuracy, linear_probe, uniformity
from ..models import build_encoder
from ..registry import METHODS
from ..train import TrainConfig, fit, load_checkpoint, resolve_device
from .losses import Objective

CONFIG_NAME = "ssl_config.json"


@dataclass(frozen=True)
class SSLConfig:
    """Settings of one SSL run (validated; written into ``results.json``).

    ``divergence``: ``infonce`` (NT-Xent) or a divergence name; ``temperature``: ``τ`` of the
    similarity; ``momentum``: EMA rate of MoCo's key encoder; ``train_subset`` / ``probe_subset``:
    use only the first ``n`` training images for SSL / for the probe and kNN bank (``None``: all);
    ``eval_every``: kNN accuracy on the test set every ``n`` epochs (0: only at the end);
    ``sync_batchnorm``: batch-norm statistics over all ranks under ``torchrun``;
    ``memory_efficient``: tiled loss kernels (``None``: automatic from 4096² score entries).
    """

    method: str = "simclr"
    data: str = "digits"
    data_dir: str | None = None
    encoder: str = "auto"
    width: int | None = None
    divergence: str = "infonce"
    similarity: str = "cosine"
    temperature: float = 0.5
    alpha: float = 1.0
    proj_dim: int = 128
    proj_hidden: int = 512
    queue_size: int = 4096
    momentum: float = 0.99
    epochs: int = 10
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-6
    optimizer: str = "adamw"
    warmup_epochs: float = 0.0
    augment: bool = True
    train_subset: int | None = None
    probe_subset: int | None = None
    knn_k: int = 200
    knn_temperature: float = 0.1
    eval_every: int = 0
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    progress: bool = True
    sync_batchnorm: bool = False
    memory_efficient: bool | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; valid: {', '.join(METHODS.names())}")
        if self.data not in DATASETS:
            raise ValueError(f"unknown dataset {self.data!r}; valid: {', '.join(DATASETS)}")
        if self.encoder not in ("auto", "cnn", "resnet18", "mlp"):
            raise ValueError(f"unknown encoder {self.encoder!r}; valid: auto, cnn, resnet18, mlp")
        self.objective()  # validates divergence, similarity, temperature, alpha
        for name in ("batch_size", "proj_dim", "proj_hidden", "queue_size", "knn_k"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or value < (2 if name == "batch_size" else 1)
            ):
                raise ValueError(
                    f"{name} must be a positive integer (batch_size >= 2), got {value!r}"
                )
        for name in ("train_subset", "probe_subset", "width"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 2):
                raise ValueError(f"{name} must be None or an integer >= 2, got {value!r}")
        if self.eval_every < 0 or self.knn_temperature <= 0:
            raise ValueError("eval_every must be >= 0 and knn_temperature > 0")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        self.train_config()  # validates the optimisation settings

    def objective(self) -> Objective:
        """The loss :class:`Objective`."""
        return Objective(
            self.divergence, self.similarity, self.temperature, self.alpha, self.memory_efficient
        )

    def train_config(self) -> TrainConfig:
        """The :class:`infomax.train.TrainConfig` for :func:`infomax.train.fit`."""
        return TrainConfig(
            epochs=self.epochs,
            lr=self.lr,
            weight_decay=self.weight_decay,
            optimizer=self.optimizer,
            warmup_epochs=self.warmup_epochs,
            amp=self.amp,
            device=self.device,
            seed=self.seed,
            progress=self.progress,
            sync_batchnorm=self.sync_batchnorm,
        )

    def encoder_name(self) -> str:
        """``auto`` resolves to ``mlp`` (digits), ``cnn`` (28×28) or ``resnet18`` (CIFAR-10)."""
        if self.encoder != "auto":
            return self.encoder
        return {"digits": "mlp", "cifar10": "resnet18"}.get(self.data, "cnn")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SSLConfig:
        """Rebuild from ``asdict`` output, ignoring unknown keys."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


def build_model(config: SSLConfig) -> nn.Module:
    """The method module (encoder from :func:`infomax.models.build_encoder` + heads)."""
    c, h, _, _, _ = DATASETS[config.data]
    encoder = build_encoder(config.encoder_name(), in_channels=c, image_size=h, width=config.width)
    kwargs: dict[str, Any] = {
        "objective": config.objective(),
        "proj_dim": config.proj_dim,
        "proj_hidden": config.proj_hidden,
    }
    if config.method in ("mocov2", "mocov3"):
        kwargs["momentum"] = config.momentum
    if config.method == "mocov2":
        kwargs["queue_size"] = config.queue_size
    return METHODS.get(config.method)(encoder, **kwargs)


class EpochBatches:
    """This rank's mini-batches of one epoch: ``images[idx]`` (``uint8 [B / world, C, H, W]``).

    ``batch_size`` is the **global** batch (all ranks together; it must divide by ``world``).
    Indices come from a ``DistributedSampler`` (shuffled by ``(seed, epoch)``, the tail that does
    not fill a global batch dropped), so the images of global step ``i`` are the same set for any
    number of ranks: one process sees them as one batch, ``world`` processes as ``world`` slices.
    """

    def __init__(
        self,
        images: Tensor,
        batch_size: int,
        seed: int,
        epoch: int,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        from torch.utils.data import DistributedSampler

        n = images.shape[0]
        global_batch = min(batch_size, n - n % world)
        if global_batch % world or global_batch < 2 * world:
            raise ValueError(
                f"batch_size {batch_size} must be divisible by the {world} ranks and give "
                f">= 2 images per rank (dataset: {n} images)"
            )
        self.images, self.local = images, global_batch // world
        self.sampler: DistributedSampler[int] = DistributedSampler(
            range(n),  # type: ignore[arg-type]  # only its length is used
            num_replicas=world,
            rank=rank,
            shuffle=True,
            seed=seed,
            drop_last=True,
        )
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler) // self.local

    def __iter__(self) -> Iterator[Tensor]:
        idx = torch.tensor(list(self.sampler), dtype=torch.long, device=self.images.device)
        for i in range(len(self)):
            yield self.images[idx[i * self.local : (i + 1) * self.local]]


def _subset(x: Tensor, y: Tensor, n: int | None) -> tuple[Tensor, Tensor]:
    return (x, y) if n is None else (x[:n], y[:n])


def evaluate_model(
    model: nn.Module, dataset: ImageDataset, config: SSLConfig, device: torch.device
) -> dict[str, float]:
    """Linear probe and kNN (k, T from ``config``) on encoder features, alignment and
    uniformity of unit-normalised projected embeddings of two augmented test views."""
    norm = Normalize(dataset.mean, dataset.std).to(device)
    train_x, train_y = _subset(dataset.train_x, dataset.train_y, config.probe_subset)
    encoder: nn.Module = model.encoder  # type: ignore[assignment]
    f_train = extract_features(encoder, train_x, transform=norm, device=device)
    f_test = extract_features(encoder, dataset.test_x, transform=norm, device=device)
    out = {
        "linear_probe_acc": linear_probe(f_train, train_y, f_test, dataset.test_y),
        "knn_acc": knn_accuracy(
            f_train,
            train_y,
            f_test,
            dataset.test_y,
            k=config.knn_k,
            temperature=config.knn_temperature,
        ),
    }
    aug = build_augment(dataset.name)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        x = to_float(dataset.test_x[:2048], device)
        z1 = model.embed(norm(aug(x)))  # type: ignore[attr-defined,operator]
        z2 = model.embed(norm(aug(x)))  # type: ignore[attr-defined,operator]
        out["alignment"] = float(alignment(z1.float(), z2.float()))
        out["uniformity"] = float(uniformity(z1.float()))
    model.train(was_training)
    return out


def _plot(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    epochs = [h["epoch"] for h in history]
    axes[0].plot(epochs, [h["loss"] for h in history], marker="o")
    axes[0].set(xlabel="epoch", ylabel="loss", title="training loss")
    knn = [(h["epoch"], h["knn_acc"]) for h in history if "knn_acc" in h]
    if knn:
        axes[1].plot(*zip(*knn, strict=True), marker="o")
    axes[1].set(xlabel="epoch", ylabel="kNN accuracy", title="test kNN accuracy")
    reports.save_figure(fig, path)


def train_ssl(config: SSLConfig, out_dir: str | Path, *, resume: bool = False) -> dict[str, Any]:
    """Train and evaluate one SSL run; returns the metrics dict also stored in ``results.json``.

    Keys: ``linear_probe_acc``, ``knn_acc``, ``alignment``, ``uniformity``, ``final_loss``,
    ``epochs``, ``train_seconds``, ``images_per_s``.

    Under ``torchrun`` (a process group from :func:`infomax.dist.init_from_env`) every rank
    trains on its slice of each global batch of ``config.batch_size`` images, with negatives
    gathered from all ranks; rank 0 alone evaluates and writes the outputs, the other ranks
    return ``{}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dataset = load_dataset(config.data, config.data_dir)
    device = resolve_device(config.device)
    rank, world = dist.rank(), dist.world_size()
    if rank == 0:
        reports.write_json(out / CONFIG_NAME, asdict(config))
    train_x, _ = _subset(dataset.train_x, dataset.train_y, config.train_subset)
    images = train_x.to(device)
    if images.shape[0] < 2:
        raise ValueError("need at least 2 training images")
    torch.manual_seed(config.seed)  # initial weights; fit() reseeds for data and augmentation
    model = build_model(config)
    aug = build_augment(config.data).to(device)
    norm = Normalize(dataset.mean, dataset.std).to(device)

    def view(x: Tensor) -> Tensor:
        return norm(aug(x) if config.augment else x)

    def loss_fn(m: nn.Module, batch: Tensor) -> Tensor:
        x = to_float(batch, device)
        return m(view(x), view(x))

    def after_step(m: nn.Module, step: int) -> None:
        update = getattr(m, "update_momentum", None)
        if update is not None:
            update()

    def on_epoch_end(epoch: int, m: nn.Module) -> dict[str, float]:
        if config.eval_every <= 0 or (epoch + 1) % config.eval_every:
            return {}
        bank_x, bank_y = _subset(dataset.train_x, dataset.train_y, config.probe_subset or 10_000)
        enc: nn.Module = m.encoder  # type: ignore[assignment]
        f_bank = extract_features(enc, bank_x, transform=norm, device=device)
        f_test = extract_features(enc, dataset.test_x, transform=norm, device=device)
        return {"knn_acc": knn_accuracy(f_bank, bank_y, f_test, dataset.test_y, k=config.knn_k)}

    result = fit(
        model,
        lambda epoch: EpochBatches(images, config.batch_size, config.seed, epoch, rank, world),
        loss_fn,
        config.train_config(),
        out_dir=out,
        resume=resume,
        after_step=after_step,
        on_epoch_end=on_epoch_end,
    )
    if rank != 0:
        return {}
    t0 = time.perf_counter()
    metrics: dict[str, Any] = evaluate_model(model, dataset, config, device)
    history = result.history
    metrics.update(
        final_loss=history[-1]["loss"] if history else math.nan,
        epochs=result.epochs_done,
        train_seconds=result.seconds,
        eval_seconds=time.perf_counter() - t0,
        images_per_s=sum(h["images_per_s"] for h in history) / max(len(history), 1),
        train_images=int(images.shape[0]),
        device=str(device),
        torch_threads=torch.get_num_threads(),
        world_size=world,
    )
    reports.write_results(
        out, config=config, results=metrics, seed=config.seed, extra={"curves": history}
    )
    reports.write_csv(out / "history.csv", history)
    _plot(history, out / "curves.png")
    if config.progress:
        reports.print_table(
            f"{config.method} / {config.divergence} / {config.similarity} on {config.data}",
            ["linear probe", "kNN", "alignment", "uniformity", "epochs", "seconds"],
            [
                [
                    metrics["linear_probe_acc"],
                    metrics["knn_acc"],
                    metrics["alignment"],
                    metrics["uniformity"],
                    metrics["epochs"],
                    metrics["train_seconds"],
                ]
            ],
        )
    return metrics


def evaluate_checkpoint(
    path: str | Path,
    *,
    data_dir: str | None = None,
    device: str = "auto",
    probe_subset: int | None = None,
) -> dict[str, Any]:
    """Re-evaluate a run from its ``checkpoint.pt`` (or its folder), using the
    ``ssl_config.json`` saved next to it; ``data_dir`` overrides the saved data directory."""
    path = Path(path)
    ckpt = path / "checkpoint.pt" if path.is_dir() else path
    cfg_path = ckpt.parent / CONFIG_NAME
    if not cfg_path.is_file():
        raise ValueError(f"no {CONFIG_NAME} next to {str(ckpt)!r}; is this an `infomax train` run?")
    values = json.loads(cfg_path.read_text())
    if data_dir is not None:
        values["data_dir"] = data_dir
    if probe_subset is not None:
        values["probe_subset"] = probe_subset
    values["device"] = device
    config = SSLConfig.from_dict(values)
    dev = resolve_device(device)
    state = load_checkpoint(ckpt, map_location=dev)
    model = build_model(config).to(dev)
    model.load_state_dict(state["model"])
    dataset = load_dataset(config.data, config.data_dir)
    metrics: dict[str, Any] = evaluate_model(model, dataset, config, dev)
    metrics["epochs"] = int(state["epoch"])
    return metrics


def demo_simclr_digits(out_dir: str | Path, seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """A short SimCLR run (NT-Xent, MLP encoder) on scikit-learn's digits; also reports the
    raw-pixel logistic-regression accuracy for comparison. Takes well under a minute on CPU."""
    config = SSLConfig(
        method="simclr",
        data="digits",
        epochs=30,
        batch_size=256,
        lr=2e-3,
        temperature=0.5,
        seed=seed,
        progress=progress,
    )
    metrics = train_ssl(config, out_dir)
    ds = load_dataset("digits")
    metrics["raw_pixel_probe_acc"] = linear_probe(
        ds.train_x.flatten(1).float(), ds.train_y, ds.test_x.flatten(1).float(), ds.test_y
    )
    return metrics
