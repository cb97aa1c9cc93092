"""End-to-end SSL training: config, data, augmentation, :func:`infomax.train.fit`, evaluation.

``train_ssl(SSLConfig(...), out_dir)`` trains ``method`` on ``data`` with two augmented views per
image, then reports the linear-probe and weighted-kNN test accuracy of the frozen encoder and the
alignment / uniformity of the projected test embeddings. It writes ``results.json`` (config,
versions, seed, curves, metrics), ``history.csv``, ``curves.png``, ``ssl_config.json`` and
``checkpoint.pt`` into ``out_dir``. ``evaluate_checkpoint(out_dir / "checkpoint.pt")`` repeats
the evaluation from a saved run.

Run folders are protected: training into a folder that already holds a ``checkpoint.pt`` needs
``resume=True`` (continue it: the settings must match the saved ones, see :data:`RESUMABLE`)
or ``overwrite=True`` (replace it); a refused resume writes nothing. Every checkpoint also stores
its :class:`SSLConfig` (``"ssl_config"``), so a checkpoint that does not fit the configuration
in use is reported by the settings that differ, never by torch's ``state_dict`` error. Settings
saved under an earlier name (``divergence``, now ``objective``: :data:`RENAMED`) are read under
the new one, so older runs still resume and evaluate.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .. import dist, reports
from .._checks import renamed_keys
from ..augment import Normalize, build_augment, to_float
from ..data import DATASETS, Batches, ImageDataset, load_dataset
from ..eval import alignment, extract_features, knn_accuracy, linear_probe, uniformity
from ..models import build_encoder
from ..registry import METHODS, Registry
from ..train import (
    CHECKPOINT_NAME,
    Evaluate,
    TrainConfig,
    TrainResult,
    check_checkpoint,
    fit,
    load_checkpoint,
    load_model_state,
    resolve_device,
    state_dict_mismatch,
)
from .losses import Objective

CONFIG_NAME = "ssl_config.json"

#: Settings that may differ from the saved ones when a run is resumed. They change how long
#: (``epochs``: extend a run; the cosine schedule is then recomputed for the new length), where
#: or how fast (``device``, ``threads``, ``memory_efficient``: tiled kernels compute the same
#: loss) or how verbosely (``progress``, ``eval_every``) the run is computed, or where its data
#: is read from (``data_dir``), but not what the saved epochs learnt. Every other setting
#: (method, model, ``objective`` (``divergence`` in runs saved before its rename), data,
#: optimisation, seed, and the evaluation settings ``knn_k``, ``knn_temperature``,
#: ``probe_subset``, which must stay fixed for the kNN curve to be comparable) must equal the
#: saved value.
RESUMABLE = frozenset(
    {
        "epochs",
        "eval_every",
        "progress",
        "device",
        "threads",
        "memory_efficient",
        "data_dir",
        "preset",
    }
)
#: Settings that only affect the evaluation (``evaluate_checkpoint`` may use other values).
EVAL_ONLY = frozenset({"knn_k", "knn_temperature", "probe_subset"})
#: :class:`SSLConfig` fields passed on to :class:`infomax.train.TrainConfig` (saved in every
#: checkpoint's ``"train_config"``, also by versions that did not store ``"ssl_config"``).
_TRAIN_FIELDS = (
    "epochs",
    "lr",
    "weight_decay",
    "optimizer",
    "warmup_epochs",
    "amp",
    "device",
    "seed",
    "progress",
    "sync_batchnorm",
)
#: The files :func:`train_ssl` writes into a run folder.
RUN_FILES = (CHECKPOINT_NAME, CONFIG_NAME, "results.json", "history.csv", "curves.png")
#: Settings saved under an earlier name (``{old: new}``): checkpoints and ``ssl_config.json``
#: files written before the rename load, resume and evaluate with the new name.
RENAMED = {"divergence": "objective"}

#: Named settings per data set (``SSLConfig.from_preset``, ``infomax train --preset``): a
#: preset is a dict of :class:`SSLConfig` fields (never ``data``), measured to reach the
#: documented accuracy on 2 CPU cores in under 10 minutes (docs/ssl.md). ``preset="auto"``
#: takes the preset named like the data set (``cifar10`` has none: the plain defaults).
SSL_PRESETS: Registry[dict[str, Any]] = Registry("SSL preset")
#: digits: the plain :class:`SSLConfig` defaults (MLP encoder, 10 epochs).
SSL_PRESETS.add("digits", {})
#: MNIST: linear probe 0.988 / 0.989 (seeds 0 / 1) in 8 epochs, 233 s wall on 2 cores.
SSL_PRESETS.add(
    "mnist", {"encoder": "cnn", "width": 16, "objective": "js", "epochs": 8, "lr": 2e-3}
)
#: Fashion-MNIST: linear probe 0.855 / 0.855 (seeds 0 / 1) in 6 epochs, 220 s wall.
SSL_PRESETS.add(
    "fashion-mnist",
    {"encoder": "cnn", "width": 16, "objective": "js", "epochs": 6, "lr": 2e-3},
)


def preset_text(name: str) -> str:
    """``mnist: encoder=cnn width=16 ...`` (``digits: the defaults``): a preset for help text."""
    values = SSL_PRESETS.get(name)
    text = " ".join(f"{k}={v}" for k, v in values.items())
    return f"{name}: {text or 'the defaults'}"


@dataclass(frozen=True)
class SSLConfig:
    """Settings of one SSL run (validated; written into ``results.json``).

    ``objective``: ``infonce`` (NT-Xent) or an f-MICL divergence name (saved settings may call it
    ``divergence``, its earlier name: see :data:`RENAMED`); ``temperature``: ``τ`` of the
    similarity; ``momentum``: EMA rate of MoCo's key encoder; ``train_subset`` / ``probe_subset``:
    use only the first ``n`` training images for SSL / for the probe and kNN bank (``None``: all);
    ``eval_every``: kNN accuracy on the test set every ``n`` epochs (0: only at the end);
    ``sync_batchnorm``: batch-norm statistics over all ranks under ``torchrun``;
    ``memory_efficient``: tiled loss kernels (``None``: automatic from 1024² score entries);
    ``threads``: torch CPU threads set by :func:`train_ssl` (``None``: leave torch's setting);
    ``preset``: the name of the :data:`SSL_PRESETS` entry the values came from (a label, set by
    :meth:`from_preset`).

    Every value is checked here (``ValueError``): counts and sizes are integers in range
    (``batch_size``, ``train_subset``, ``probe_subset``, ``width`` >= 2; ``epochs``,
    ``proj_dim``, ``proj_hidden``, ``queue_size``, ``knn_k``, ``threads`` >= 1;
    ``eval_every`` >= 0), rates and temperatures finite, switches booleans.
    """

    method: str = "simclr"
    data: str = "digits"
    data_dir: str | None = None
    encoder: str = "auto"
    width: int | None = None
    objective: str = "infonce"
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
    threads: int | None = None
    amp: bool = True
    progress: bool = True
    sync_batchnorm: bool = False
    memory_efficient: bool | None = None
    preset: str | None = None

    def __post_init__(self) -> None:
        if self.preset is not None:
            object.__setattr__(self, "preset", str(self.preset).lower())
            SSL_PRESETS.get(self.preset)
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; valid: {', '.join(METHODS.names())}")
        if self.data not in DATASETS:
            raise ValueError(f"unknown dataset {self.data!r}; valid: {', '.join(DATASETS)}")
        if self.encoder not in ("auto", "cnn", "resnet18", "mlp"):
            raise ValueError(f"unknown encoder {self.encoder!r}; valid: auto, cnn, resnet18, mlp")
        if isinstance(self.data_dir, os.PathLike):
            object.__setattr__(self, "data_dir", os.fspath(self.data_dir))
        if self.data_dir is not None and not isinstance(self.data_dir, str):
            raise ValueError(f"data_dir must be a folder name or None, got {self.data_dir!r}")
        for name in ("temperature", "alpha", "knn_temperature", "lr"):
            value = getattr(self, name)
            if not (_is_number(value) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        for name in ("weight_decay", "warmup_epochs"):
            value = getattr(self, name)
            if not (_is_number(value) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not (_is_number(self.momentum) and 0 <= self.momentum < 1):
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        for name in ("augment", "amp", "progress", "sync_batchnorm"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.memory_efficient is not None and not isinstance(self.memory_efficient, bool):
            raise ValueError(
                f"memory_efficient must be True, False or None, got {self.memory_efficient!r}"
            )
        minimum = {
            "epochs": 1,
            "batch_size": 2,
            "proj_dim": 1,
            "proj_hidden": 1,
            "queue_size": 1,
            "knn_k": 1,
            "eval_every": 0,
            "seed": 0,
        }
        optional = {"train_subset": 2, "probe_subset": 2, "width": 2, "threads": 1}
        for name, low in [*minimum.items(), *optional.items()]:
            value = getattr(self, name)
            if value is None and name in optional:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                none = "None or " if name in optional else ""
                raise ValueError(f"{name} must be {none}an integer >= {low}, got {value!r}")
        self.build_objective()  # validates objective, similarity
        self.train_config()  # validates the optimisation settings

    def build_objective(self) -> Objective:
        """The loss :class:`Objective` (``objective``, similarity, ``τ``, ``α``, tiling)."""
        return Objective(
            self.objective, self.similarity, self.temperature, self.alpha, self.memory_efficient
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
    def from_preset(cls, preset: str | None = "auto", **options: Any) -> SSLConfig:
        """The :data:`SSL_PRESETS` entry ``preset`` updated by ``options`` (fields of this
        class; options override the preset). ``"auto"``: the preset named like
        ``options["data"]`` (default ``digits``) if there is one; ``None``: no preset.

        >>> cfg = SSLConfig.from_preset(data="mnist", epochs=2)
        >>> (cfg.preset, cfg.encoder, cfg.width, cfg.epochs)
        ('mnist', 'cnn', 16, 2)
        >>> SSLConfig.from_preset(None, data="mnist").preset is None
        True
        """
        names = {f.name for f in fields(cls)} - {"preset"}
        unknown = sorted(set(options) - names)
        if unknown:
            raise ValueError(f"unknown SSL setting(s) {unknown}; valid: {sorted(names)}")
        if preset == "auto":
            data = str(options.get("data", cls.data)).lower()
            preset = data if data in SSL_PRESETS.names() else None
        values: dict[str, Any] = {}
        if preset is not None:
            preset = str(preset).lower()
            values.update(SSL_PRESETS.get(preset))
        values.update(options)
        return cls(**values, preset=preset)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> SSLConfig:
        """Rebuild from ``asdict`` output, ignoring unknown keys; a setting saved under its
        earlier name (:data:`RENAMED`) is read under the new one."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in renamed_keys(values, RENAMED).items() if k in names})


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def build_model(config: SSLConfig) -> nn.Module:
    """The method module (encoder from :func:`infomax.models.build_encoder` + heads)."""
    c, h, _, _, _ = DATASETS[config.data]
    encoder = build_encoder(config.encoder_name(), in_channels=c, image_size=h, width=config.width)
    kwargs: dict[str, Any] = {
        "objective": config.build_objective(),
        "proj_dim": config.proj_dim,
        "proj_hidden": config.proj_hidden,
    }
    if config.method in ("mocov2", "mocov3"):
        kwargs["momentum"] = config.momentum
    if config.method == "mocov2":
        kwargs["queue_size"] = config.queue_size
    return METHODS.get(config.method)(encoder, **kwargs)


class EpochBatches(Batches):
    """This rank's mini-batches of one epoch of ``images`` (``uint8 [B / world, C, H, W]``):
    :class:`infomax.data.Batches` (``batch_size`` global, shuffled by ``(seed, epoch)``, the tail
    that does not fill a global batch dropped), whose messages speak of images."""

    noun = "images"


def _subset(x: Tensor, y: Tensor, n: int | None) -> tuple[Tensor, Tensor]:
    return (x, y) if n is None else (x[:n], y[:n])


def eval_features(
    model: nn.Module, dataset: ImageDataset, config: SSLConfig, device: torch.device
) -> tuple[Tensor, Tensor, Tensor]:
    """``(bank_features, bank_labels, test_features)``: frozen ``model.encoder`` features of the
    probe / kNN memory bank (the first ``config.probe_subset`` training images, all when
    ``None``) and of the test images. The one source of features for :func:`knn_score` (the
    per-epoch curve and the final number) and the linear probe."""
    norm = Normalize(dataset.mean, dataset.std).to(device)
    bank_x, bank_y = _subset(dataset.train_x, dataset.train_y, config.probe_subset)
    encoder: nn.Module = model.encoder  # type: ignore[assignment]
    f_bank = extract_features(encoder, bank_x, transform=norm, device=device)
    f_test = extract_features(encoder, dataset.test_x, transform=norm, device=device)
    return f_bank, bank_y, f_test


def knn_score(
    f_bank: Tensor, bank_y: Tensor, f_test: Tensor, test_y: Tensor, config: SSLConfig
) -> float:
    """Weighted-kNN test accuracy with ``config.knn_k`` and ``config.knn_temperature``: the
    single kNN code path of a run (``eval_every`` curve and final ``knn_acc``)."""
    return knn_accuracy(
        f_bank, bank_y, f_test, test_y, k=config.knn_k, temperature=config.knn_temperature
    )


def evaluate_knn(
    model: nn.Module, dataset: ImageDataset, config: SSLConfig, device: torch.device
) -> float:
    """:func:`knn_score` of :func:`eval_features`: what ``eval_every`` records per epoch; equal
    to ``evaluate_model(...)["knn_acc"]`` for the same weights."""
    f_bank, bank_y, f_test = eval_features(model, dataset, config, device)
    return knn_score(f_bank, bank_y, f_test, dataset.test_y, config)


def evaluate_model(
    model: nn.Module, dataset: ImageDataset, config: SSLConfig, device: torch.device
) -> dict[str, float]:
    """Linear probe and kNN (:func:`knn_score`) on :func:`eval_features`, alignment and
    uniformity of unit-normalised projected embeddings of two augmented test views."""
    f_bank, bank_y, f_test = eval_features(model, dataset, config, device)
    out = {
        "linear_probe_acc": linear_probe(f_bank, bank_y, f_test, dataset.test_y),
        "knn_acc": knn_score(f_bank, bank_y, f_test, dataset.test_y, config),
    }
    norm = Normalize(dataset.mean, dataset.std).to(device)
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
    """The training loss per epoch and, when the run measured it (``eval_every``), the test
    kNN accuracy beside it (no empty panel)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    knn = [(h["epoch"], h["knn_acc"]) for h in history if "knn_acc" in h]
    fig, axes = plt.subplots(1, 2 if knn else 1, figsize=(9 if knn else 4.5, 3.2), squeeze=False)
    epochs = [h["epoch"] for h in history]
    axes[0, 0].plot(epochs, [h["loss"] for h in history], marker="o")
    axes[0, 0].set(xlabel="epoch", ylabel="loss", title="training loss")
    if knn:
        axes[0, 1].plot(*zip(*knn, strict=True), marker="o")
        axes[0, 1].set(xlabel="epoch", ylabel="kNN accuracy", title="test kNN accuracy")
    reports.save_figure(fig, path)


def config_differences(
    saved: Mapping[str, Any], config: SSLConfig, ignore: frozenset[str] = RESUMABLE
) -> list[str]:
    """``["name old -> new", ...]`` for every :class:`SSLConfig` field in ``saved`` (see
    :func:`saved_settings`) and outside ``ignore`` whose value in ``config`` differs."""
    out = []
    for f in fields(config):
        if f.name in ignore or f.name not in saved:
            continue
        new = getattr(config, f.name)
        old = saved[f.name]
        if old != new or isinstance(old, bool) != isinstance(new, bool):
            out.append(f"{f.name} {old!r} -> {new!r}")
    return out


def _read_config_json(path: Path) -> dict[str, Any]:
    try:
        values = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read {str(path)!r}: {err}") from None
    if not isinstance(values, dict):
        raise ValueError(f"{str(path)!r} does not hold a settings object")
    return values


def saved_settings(state: Mapping[str, Any], config_json: Path | None = None) -> dict[str, Any]:
    """The settings a checkpoint was written with: its ``"ssl_config"``; for checkpoints without
    one, ``config_json`` (the ``ssl_config.json`` next to it, if given and present) updated
    with the :class:`TrainConfig` fields of its ``"train_config"``. Fields a full record lacks
    (written before they existed) get their defaults, fields saved under an earlier name
    (:data:`RENAMED`) their new name; ``{}``: nothing known."""
    defaults = {f.name: f.default for f in fields(SSLConfig)}
    embedded = state.get("ssl_config")
    if isinstance(embedded, Mapping):
        return {**defaults, **renamed_keys(embedded, RENAMED)}
    values: dict[str, Any] = {}
    if config_json is not None and config_json.is_file():
        values.update(defaults)
        values.update(renamed_keys(_read_config_json(config_json), RENAMED))
    train_config = state.get("train_config")
    if isinstance(train_config, Mapping):
        values.update({k: train_config[k] for k in _TRAIN_FIELDS if k in train_config})
    return values


def _resume_state(config: SSLConfig, out: Path, device: torch.device) -> dict[str, Any]:
    """Read and validate ``out/checkpoint.pt`` for resuming with ``config``; writes nothing."""
    ckpt = out / CHECKPOINT_NAME
    if not ckpt.is_file():
        raise ValueError(f"cannot resume: no checkpoint at {str(ckpt)!r}")
    state = load_checkpoint(ckpt, map_location=device)
    check_checkpoint(state, ckpt)
    saved = saved_settings(state, out / CONFIG_NAME)
    if "method" not in saved:
        raise ValueError(
            f"cannot resume: no SSL settings saved with {str(ckpt)!r} (no {CONFIG_NAME}); "
            "is this an `infomax train` run?"
        )
    diffs = config_differences(saved, config)
    if diffs:
        raise ValueError(
            "cannot resume: settings differ from the saved run: "
            f"{', '.join(diffs)}; use the saved settings or a new --out"
        )
    done = int(state["epoch"])
    if config.epochs < done:
        raise ValueError(
            f"cannot resume: the saved run has already trained {done} epochs, more than "
            f"epochs={config.epochs}; pass epochs >= {done}"
        )
    return state


def train_ssl(
    config: SSLConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train and evaluate one SSL run; returns the metrics dict also stored in ``results.json``.

    Keys: ``linear_probe_acc``, ``knn_acc``, ``alignment``, ``uniformity``, ``final_loss``,
    ``epochs``, ``train_seconds``, ``images_per_s``. With ``eval_every``, each ``eval_every``-th
    epoch's history record gets the ``knn_acc`` of :func:`evaluate_knn` (same memory bank, ``k``
    and temperature as the final ``knn_acc``, so the last point equals it).

    ``resume=True`` continues ``out_dir/checkpoint.pt``. The settings saved with it must equal
    ``config`` except for those in :data:`RESUMABLE` (``epochs`` may grow to extend the run,
    ``progress``, ``eval_every``, ``device``, ``threads``, ``memory_efficient``, ``data_dir``);
    anything else raises ``ValueError`` naming every differing setting. All checks (settings,
    epochs, that the saved model state fits the model) run before anything is written: a
    refused resume leaves the run folder untouched.

    Without ``resume``, a folder that already holds a ``checkpoint.pt`` raises ``ValueError``
    unless ``overwrite=True``, which first deletes that run's files (:data:`RUN_FILES`).

    Under ``torchrun`` (a process group from :func:`infomax.dist.init_from_env`) every rank
    trains on its slice of each global batch of ``config.batch_size`` images, with negatives
    gathered from all ranks; rank 0 alone evaluates and writes the outputs, the other ranks
    return ``{}``.
    """
    out = Path(out_dir)
    device, dataset, state = _open_run(config, out, resume, overwrite)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    rank, world = dist.rank(), dist.world_size()
    images = _subset(dataset.train_x, dataset.train_y, config.train_subset)[0].to(device)
    if images.shape[0] < 2:
        raise ValueError("need at least 2 training images")
    torch.manual_seed(config.seed)  # initial weights; fit() reseeds for data and augmentation
    model = build_model(config)
    if state is not None:  # the saved weights must fit before anything is written
        load_model_state(
            model,
            state["model"],
            f"cannot resume: checkpoint {str(out / CHECKPOINT_NAME)!r}",
            "the model built from these settings",
        )
    loss_fn = _two_view_loss(config, dataset, device)
    out.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        if overwrite:
            for name in RUN_FILES:
                (out / name).unlink(missing_ok=True)
        reports.write_json(out / CONFIG_NAME, asdict(config))
    knn = Evaluate(
        lambda s: {"knn_acc": evaluate_knn(s.model, dataset, config, device)},
        every=config.eval_every,
    )
    result = fit(
        model,
        lambda epoch: EpochBatches(images, config.batch_size, config.seed, epoch, rank, world),
        loss_fn,
        config.train_config(),
        out_dir=out,
        resume=resume,
        after_step=_update_momentum,
        callbacks=[knn],
        resume_state=state,
        extra_state={"ssl_config": asdict(config)},
    )
    if rank != 0:
        return {}
    return _finish_run(model, dataset, config, device, result, int(images.shape[0]), out)


def _open_run(
    config: SSLConfig, out: Path, resume: bool, overwrite: bool
) -> tuple[torch.device, ImageDataset, dict[str, Any] | None]:
    """Device, data set and (``resume``) the validated checkpoint of a run into ``out``; every
    refusal (bad folder, unreadable data, a resume that does not fit, a folder holding a run
    without ``resume`` / ``overwrite``) comes before anything is written."""
    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other: continue the run or replace it")
    if out.exists() and not out.is_dir():
        raise ValueError(f"output folder {str(out)!r} exists and is not a folder")
    device = resolve_device(config.device)
    dataset = load_dataset(config.data, config.data_dir)  # input errors first, then the folder
    state: dict[str, Any] | None = None
    if resume:
        state = _resume_state(config, out, device)
    elif (out / CHECKPOINT_NAME).exists() and not overwrite:
        raise ValueError(
            f"{str(out)!r} already holds a training run ({CHECKPOINT_NAME}); pass --resume to "
            "continue it, --overwrite to replace it, or choose another --out"
        )
    return device, dataset, state


def _two_view_loss(
    config: SSLConfig, dataset: ImageDataset, device: torch.device
) -> Callable[[nn.Module, Tensor], Tensor]:
    """The ``loss_fn`` of :func:`infomax.train.fit`: the method's loss on two independently
    augmented (``config.augment``), normalised views of the batch's images."""
    aug = build_augment(config.data).to(device)
    norm = Normalize(dataset.mean, dataset.std).to(device)

    def view(x: Tensor) -> Tensor:
        return norm(aug(x) if config.augment else x)

    def loss_fn(m: nn.Module, batch: Tensor) -> Tensor:
        x = to_float(batch, device)
        return m(view(x), view(x))  # type: ignore[no-any-return]

    return loss_fn


def _update_momentum(model: nn.Module, step: int) -> None:
    """After each optimiser step: the momentum encoder's EMA update (MoCo; others have none)."""
    update = getattr(model, "update_momentum", None)
    if update is not None:
        update()


def _finish_run(
    model: nn.Module,
    dataset: ImageDataset,
    config: SSLConfig,
    device: torch.device,
    result: TrainResult,
    train_images: int,
    out: Path,
) -> dict[str, Any]:
    """Evaluate the trained model, write ``results.json``, ``history.csv`` and ``curves.png``;
    returns the metrics."""
    t0 = time.perf_counter()
    metrics: dict[str, Any] = evaluate_model(model, dataset, config, device)
    history = result.history
    metrics.update(
        final_loss=history[-1]["loss"] if history else math.nan,
        epochs=result.epochs_done,
        train_seconds=result.seconds,
        eval_seconds=time.perf_counter() - t0,
        images_per_s=sum(h["images_per_s"] for h in history) / max(len(history), 1),
        train_images=train_images,
        device=str(device),
        torch_threads=torch.get_num_threads(),
        world_size=dist.world_size(),
    )
    preset = (
        {"name": config.preset, "values": SSL_PRESETS.get(config.preset)} if config.preset else None
    )
    reports.write_results(
        out,
        config=config,
        results=metrics,
        seed=config.seed,
        extra={"curves": history, "preset": preset},
    )
    reports.write_csv(out / "history.csv", history)
    _plot(history, out / "curves.png")
    return metrics


def evaluate_checkpoint(
    path: str | Path,
    *,
    data_dir: str | None = None,
    device: str = "auto",
    probe_subset: int | None = None,
) -> dict[str, Any]:
    """Re-evaluate a run from its ``checkpoint.pt`` (or its folder), using the
    ``ssl_config.json`` saved next to it; ``data_dir`` overrides the saved data directory.

    A checkpoint that does not fit the model built from ``ssl_config.json`` (or that was trained
    on another dataset) raises ``ValueError``: the settings that differ between the checkpoint
    and ``ssl_config.json`` when the checkpoint records them, otherwise the numbers of missing,
    unexpected and mis-shaped entries."""
    path = Path(path)
    ckpt = path / CHECKPOINT_NAME if path.is_dir() else path
    cfg_path = ckpt.parent / CONFIG_NAME
    if not cfg_path.is_file():
        raise ValueError(f"no {CONFIG_NAME} next to {str(ckpt)!r}; is this an `infomax train` run?")
    values = _read_config_json(cfg_path)
    if data_dir is not None:
        values["data_dir"] = data_dir
    if probe_subset is not None:
        values["probe_subset"] = probe_subset
    values["device"] = device
    config = SSLConfig.from_dict(values)
    dev = resolve_device(device)
    state = load_checkpoint(ckpt, map_location=dev)
    check_checkpoint(state, ckpt)
    model = build_model(config).to(dev)
    saved = saved_settings(state)
    diffs = config_differences(saved, config, RESUMABLE | EVAL_ONLY) if saved else []
    mismatch = state_dict_mismatch(model, state["model"])
    if diffs and (mismatch or saved.get("data", config.data) != config.data):
        counts = f"; model: {mismatch.split(' (')[0]}" if mismatch else ""
        raise ValueError(
            f"{str(ckpt)!r} was trained with other settings than {str(cfg_path)!r} says "
            f"(checkpoint -> {CONFIG_NAME}): {', '.join(diffs)}{counts}"
        )
    load_model_state(
        model, state["model"], f"checkpoint {str(ckpt)!r}", f"the model built from {CONFIG_NAME}"
    )
    dataset = load_dataset(config.data, config.data_dir)
    metrics: dict[str, Any] = evaluate_model(model, dataset, config, dev)
    metrics["epochs"] = int(state["epoch"])
    return metrics
