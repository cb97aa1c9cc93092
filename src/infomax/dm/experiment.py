"""Noise-injected Deep InfoMax: one training run (SPEC §7).

Model: encoder ``e`` (MLP for vectors / digits, small CNN for 28×28) → linear head to ``d`` →
:class:`~infomax.dm.noise.NoiseInjection`. Two views ``x¹, x²`` of each input (kornia
augmentations for images, additive Gaussian jitter for vectors, or the input itself with
``views="identity"``). The InfoMax objective is a bound of :data:`infomax.registry.BOUNDS` on the
score matrix ``S_ij = −‖z¹_i − c²_j‖² / τ`` (``Similarity("lp", τ, p=2)``, learnable ``τ``)
between the *noisy* representation ``z¹ = n(e(x¹)) + σε`` of one view and the clean one
``c² = n(e(x²))`` of the other, symmetrised over the two views. Training uses
:func:`infomax.train.fit` on :class:`infomax.data.Batches`. Evaluation (clean ``n(e(x))``, no
noise, eval-mode statistics): linear-probe accuracy, :func:`~infomax.dm.metrics.dm_metrics`, and
a held-out estimate of the bound with noise on, reported next to the capacity ceiling and
``log K``. The σ sweep (one :func:`train_dm` per σ, trade-off plots) is
:mod:`infomax.experiments.dm_sweep`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .. import reports
from .._checks import check_int, check_positive, is_int_at_least, is_real
from ..bounds import pointwise_infonce
from ..critics import Similarity
from ..data.batches import Batches
from ..losses import NTXentLoss
from ..models import ENCODERS
from ..registry import BOUNDS
from ..train import TrainConfig, TrainResult, fit, resolve_device
from .metrics import MATCH_PENALTIES, dm_metrics, energy_test
from .noise import (
    NORMALIZATIONS,
    NoiseInjection,
    RankNormalization,
    binding_sigma,
    capacity,
    sigma_schedule,
)
from .targets import TargetLaw, get_target

DATA_CHOICES = ("synthetic", "digits", "mnist", "fashion-mnist")
#: ``noisy-dim``: the InfoMax bound on noisy vs clean views (the method). ``simclr``: the
#: reference row, plain SimCLR (NT-Xent, cosine similarity, τ = 0.5, no noise) on the same
#: encoder, head, views and budget; its head output is evaluated after the same normalisation.
METHODS = ("noisy-dim", "simclr")
#: ``augment``: two random views; ``identity``: the input twice; ``augment-clean``: one random
#: view and the clean input (the representation that is evaluated).
VIEWS = ("augment", "identity", "augment-clean")
DENOMINATORS = ("with-positive", "balanced")
#: Default epochs per data set (``epochs=None``): 4 passes over the 60,000 MNIST-sized images
#: fit the 10-minute / 2-core budget; the small sets need more passes for as many steps.
RECIPE_EPOCHS = {"synthetic": 20, "digits": 100, "mnist": 4, "fashion-mnist": 4}
#: Default ``match_weight`` per (data set, base law of the target) (``match_weight=None``): 0
#: elsewhere. Chosen on MNIST / Fashion-MNIST test-set runs (docs/dm.md says which).
RECIPE_MATCH_WEIGHT: dict[tuple[str, str], float] = {
    ("mnist", "gaussian"): 150.0,
    ("mnist", "uniform"): 50.0,
    ("fashion-mnist", "gaussian"): 100.0,
    ("fashion-mnist", "uniform"): 50.0,
}
#: Default ``stroke`` per data set (``stroke=None``): 0 elsewhere. MNIST's test writers differ
#: from its training writers (docs/dm.md); a random pen width makes the encoder ignore it.
RECIPE_STROKE: dict[str, float] = {"mnist": 0.8}
#: Default width of the small CNN (``width=None`` with a CNN encoder).
CNN_WIDTH = 16
SIMCLR_TEMPERATURE = 0.5
ENCODER_CHOICES = ("auto", *ENCODERS)
TAU_SCALE = 20.0
#: Smallest critic temperature (squared-distance units): keeps the scores finite if τ collapses.
TAU_MIN = 1e-3
MIN_SUBSET = 10
MIN_DM_SIZE = 20


@dataclass(frozen=True)
class DMConfig:
    """One noise-injected DIM run (validated; written into ``results.json``).

    ``method``: :data:`METHODS`; ``target``: a name of :func:`~infomax.dm.targets.get_target`;
    ``sigma``: noise std (Gaussian) or half-width (uniform base); ``sigma_warmup``: fraction of
    training over which the noise moves linearly from ``sigma_start`` (default 0: a ramp up;
    larger than ``σ``: an anneal down) to ``σ``; ``normalization``:
    :data:`~infomax.dm.noise.NORMALIZATIONS`; ``match_weight``: weight of an extra penalty
    between the clean batch and as many target draws (0: none, pure noise-injected DIM;
    ``None``: :data:`RECIPE_MATCH_WEIGHT`); ``match_kernel``: that penalty, a name of
    :data:`~infomax.dm.metrics.MATCH_PENALTIES`; ``denominator``: ``with-positive`` (InfoNCE
    as it is) or ``balanced`` (the mean of InfoNCE with and without the positive in its
    denominator, whose finite-``K`` biases cancel to first order); ``views``: :data:`VIEWS`;
    ``crop``: smallest random-resized-crop scale of the image views (``None``: the data set's
    preset); ``stroke``: probability of a random stroke width in the image view
    (:class:`~infomax.augment.RandomStrokeWidth`; ``None``: :data:`RECIPE_STROKE`);
    ``train_subset`` / ``probe_subset`` / ``test_subset``: first ``n`` images for DIM training /
    probe training / test (``None``: all); ``dm_sizes``: sample sizes of the DM tests (the first
    is the headline one); ``dm_resamples``: further random subsets of that size (each with
    fresh target draws) over which the pass rates are reported, since one subset's p-value
    moves a lot from draw to draw (0: none).
    """

    data: str = "digits"
    data_dir: str | None = None
    method: str = "noisy-dim"
    target: str = "gaussian"
    sigma: float | None = None
    sigma_warmup: float = 0.0
    sigma_start: float = 0.0
    normalization: str = "rank"
    match_weight: float | None = None
    match_kernel: str = "energy"
    denominator: str = "balanced"
    dim: int = 32
    bound: str = "infonce"
    views: str = "augment-clean"
    crop: float | None = 0.6
    stroke: float | None = None
    encoder: str = "auto"
    width: int | None = None
    epochs: int | None = None
    batch_size: int = 256
    lr: float = 2e-3
    train_subset: int | None = None
    probe_subset: int | None = None
    test_subset: int | None = None
    dm_sizes: tuple[int, ...] = (500, 1000)
    permutations: int = 200
    dm_resamples: int = 10
    seed: int = 0
    device: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        if self.data not in DATA_CHOICES:
            raise ValueError(f"unknown data {self.data!r}; valid: {', '.join(DATA_CHOICES)}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(
                f"unknown normalization {self.normalization!r}; valid: {', '.join(NORMALIZATIONS)}"
            )
        if self.match_kernel not in MATCH_PENALTIES:
            raise ValueError(
                f"unknown match_kernel {self.match_kernel!r}; valid: {', '.join(MATCH_PENALTIES)}"
            )
        if self.denominator not in DENOMINATORS:
            raise ValueError(
                f"unknown denominator {self.denominator!r}; valid: {', '.join(DENOMINATORS)}"
            )
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; valid: {', '.join(METHODS)}")
        law = get_target(self.target)
        weight = self.match_weight
        if weight is None:
            weight = RECIPE_MATCH_WEIGHT.get((self.data, law.base), 0.0)
            object.__setattr__(self, "match_weight", weight)
        if not (is_real(weight) and 0 <= weight < math.inf):
            raise ValueError(f"match_weight must be a finite number >= 0, got {weight!r}")
        if self.normalization == "radial" and law.base != "gaussian":
            raise ValueError(
                f"normalization 'radial' is for the gaussian target only, not {self.target!r}"
            )
        check_int("dim", self.dim, 1)
        check_int("batch_size", self.batch_size, 2)  # InfoMax needs a negative
        if self.sigma is None:  # the recipe: the noise at which the ceiling equals log K
            object.__setattr__(self, "sigma", binding_sigma(law.base, self.dim, self.batch_size))
        if self.epochs is None:
            object.__setattr__(self, "epochs", RECIPE_EPOCHS.get(self.data, 20))
        if not (is_real(self.sigma) and 0 <= self.noise_level < math.inf):
            raise ValueError(f"sigma must be a finite number >= 0, got {self.sigma!r}")
        if not (is_real(self.sigma_warmup) and 0 <= self.sigma_warmup <= 1):
            raise ValueError(
                f"sigma_warmup must be a fraction of training in [0, 1], got {self.sigma_warmup!r}"
            )
        if not (is_real(self.sigma_start) and 0 <= self.sigma_start < math.inf):
            raise ValueError(f"sigma_start must be a finite number >= 0, got {self.sigma_start!r}")
        if BOUNDS.get(self.bound).extra is not None:
            raise ValueError(
                f"bound {self.bound!r} needs an extra network; use one of "
                f"{', '.join(n for n in BOUNDS.names() if BOUNDS.get(n).extra is None)}"
            )
        if self.crop is not None and not (is_real(self.crop) and 0 < self.crop <= 1):
            raise ValueError(f"crop must be a fraction in (0, 1] (or None), got {self.crop!r}")
        stroke = self.stroke
        if stroke is None:
            stroke = RECIPE_STROKE.get(self.data, 0.0)
            object.__setattr__(self, "stroke", stroke)
        if not (is_real(stroke) and 0 <= stroke <= 1):
            raise ValueError(f"stroke must be a probability in [0, 1], got {stroke!r}")
        if self.views not in VIEWS:
            raise ValueError(f"views must be one of {', '.join(VIEWS)}, got {self.views!r}")
        if self.encoder not in ENCODER_CHOICES:
            raise ValueError(
                f"unknown encoder {self.encoder!r}; valid: {', '.join(ENCODER_CHOICES)}"
            )
        check_int("epochs", self.epochs, 1)
        check_int("permutations", self.permutations, 1)
        check_int("dm_resamples", self.dm_resamples, 0)
        check_int("width", self.width, 1, none="the encoder's default")
        check_int("seed", self.seed, 0)
        check_positive("lr", self.lr)
        for name in ("train_subset", "probe_subset", "test_subset"):
            check_int(name, getattr(self, name), MIN_SUBSET, none="all")
        if (
            not isinstance(self.dm_sizes, (tuple, list))
            or not self.dm_sizes
            or any(not is_int_at_least(n, MIN_DM_SIZE) for n in self.dm_sizes)
        ):
            raise ValueError(
                f"dm_sizes must be one or more integer sample sizes >= {MIN_DM_SIZE} (the DM "
                f"tests need at least {MIN_DM_SIZE} points), got {self.dm_sizes!r}"
            )
        # sizes that the subsets already rule out (the data set itself: check_data_sizes)
        check_data_sizes(
            self,
            n_train=self.train_subset,
            n_probe=self.probe_subset,
            n_test=self.test_subset,
        )
        self.train_config()

    @property
    def noise_level(self) -> float:
        """``sigma`` after the default is resolved (always a number after construction)."""
        return float(self.sigma)  # type: ignore[arg-type]

    @property
    def n_epochs(self) -> int:
        """``epochs`` after the default is resolved."""
        return int(self.epochs)  # type: ignore[arg-type]

    def train_config(self) -> TrainConfig:
        """Settings for :func:`infomax.train.fit` (AdamW, cosine schedule, no AMP on CPU)."""
        return TrainConfig(
            epochs=self.n_epochs,
            lr=self.lr,
            device=self.device,
            seed=self.seed,
            progress=self.progress,
            checkpoint_every=self.n_epochs,
        )


def check_data_sizes(
    config: DMConfig,
    *,
    n_train: int | None = None,
    n_probe: int | None = None,
    n_test: int | None = None,
) -> None:
    """``ValueError`` (naming the option and the largest value that works) unless the inputs
    available, ``n_train`` (DIM training), ``n_probe`` (probe training, also the in-sample energy
    test at ``dm_sizes[0]``) and ``n_test`` (``None``: unknown, not checked), hold one batch and
    every DM test size. :class:`DMConfig` checks the subsets, :func:`train_dm` the data set, both
    before any training or ``O(n²)`` DM test."""
    sub = " (after --test-subset)" if config.test_subset is not None else ""
    if n_test is not None:
        for n in config.dm_sizes:
            if n > n_test:
                raise ValueError(
                    f"--dm-sizes {n} is larger than the {n_test} test inputs{sub}; "
                    f"use at most {n_test}"
                )
        if n_test < config.batch_size:
            raise ValueError(
                f"the {n_test} test inputs{sub} are fewer than one batch of --batch-size "
                f"{config.batch_size} (held-out MI estimate); use --batch-size {n_test} at most"
            )
    if n_probe is not None and config.dm_sizes[0] > n_probe:
        raise ValueError(
            f"--dm-sizes {config.dm_sizes[0]} (the first size, also used for the in-sample test "
            f"on the probe's training inputs) is larger than the {n_probe} probe inputs; use at "
            f"most {n_probe} or a larger --probe-subset"
        )
    if n_train is not None and n_train < config.batch_size:
        raise ValueError(
            f"the {n_train} training inputs are fewer than one batch of --batch-size "
            f"{config.batch_size}; use --batch-size {n_train} at most"
        )


class NoisyDIM(nn.Module):
    """Encoder → ``Linear(out_dim, d)`` → :class:`NoiseInjection`, plus the critic temperature."""

    def __init__(
        self,
        encoder: nn.Module,
        dim: int,
        target: str | TargetLaw,
        sigma: float,
        normalization: str = "batch",
    ) -> None:
        super().__init__()
        self.law = get_target(target)
        base = self.law.base
        self.encoder = encoder
        self.head = nn.Linear(int(encoder.out_dim), dim)  # type: ignore[arg-type]
        self.noise = NoiseInjection(dim, base, sigma, normalization=normalization)
        spread = 0.25 if base == "gaussian" else 0.02
        noise_var = sigma**2 if base == "gaussian" else sigma**2 / 3.0
        # log τ = TAU_SCALE · θ: the temperature adapts ~TAU_SCALE× faster than the weights
        self.tau_param = nn.Parameter(
            torch.tensor(math.log(2.0 * (noise_var + spread)) / TAU_SCALE)
        )

    @property
    def tau(self) -> Tensor:
        """Critic temperature ``τ`` (learnable, positive)."""
        return (TAU_SCALE * self.tau_param).exp().clamp_min(TAU_MIN)

    def represent(self, x: Tensor) -> Tensor:
        """Clean normalised representation ``n(e(x)): [B, d]`` of the base law (what the noise
        is added to)."""
        return self.noise.normalize(self.head(self.encoder(x)))

    def embed(self, x: Tensor) -> Tensor:
        """The representation in the target law: ``F⁻¹(n(e(x)))`` for an inverse-CDF target,
        ``n(e(x))`` for ``gaussian`` / ``uniform``; ``[B, d]``."""
        return self.law.from_base(self.represent(x))

    def scores(self, z: Tensor, c: Tensor) -> Tensor:
        """``S_ij = −‖z_i − c_j‖² / τ``: ``[B, B]``."""
        return Similarity("lp", self.tau, p=2.0)(z, c)

    def pair_scores(self, x1: Tensor, x2: Tensor, *, noisy: bool = True) -> tuple[Tensor, Tensor]:
        """Both directions ``(S(z¹, c²), S(z², c¹))`` from one encoder pass over ``[x¹; x²]``."""
        s12, s21, _ = self.pair_scores_and_clean(x1, x2, noisy=noisy)
        return s12, s21

    def pair_scores_and_clean(
        self, x1: Tensor, x2: Tensor, *, noisy: bool = True
    ) -> tuple[Tensor, Tensor, Tensor]:
        """:meth:`pair_scores` and the clean ``c = n(e([x¹; x²])): [2B, d]`` it used."""
        c = self.represent(torch.cat([x1, x2]))
        c1, c2 = c.chunk(2)
        z1 = self.noise.add_noise(c1) if noisy else c1
        z2 = self.noise.add_noise(c2) if noisy else c2
        return self.scores(z1, c2), self.scores(z2, c1), c


# ----------------------------------------------------------------------------------------------
# Data


@dataclass(frozen=True)
class DMData:
    """Inputs (``uint8`` images or float vectors) and labels; ``view``/``clean`` map a raw batch
    to one random view / the clean model input on the device; ``clean_second``: the second view
    of a pair is the clean input (``views="augment-clean"``)."""

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    view: Callable[[Tensor], Tensor]
    clean: Callable[[Tensor], Tensor]
    encoder: nn.Module
    clean_second: bool = False

    def pair(self, batch: Tensor) -> tuple[Tensor, Tensor]:
        """The two views ``(x¹, x²)`` of a raw batch that training and the held-out estimate
        compare."""
        return self.view(batch), (self.clean if self.clean_second else self.view)(batch)


def synthetic_data(
    n_train: int = 4000, n_test: int = 2000, dim: int = 32, classes: int = 10, seed: int = 0
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gaussian mixture: class means ``~ N(0, 4 I)``, ``x = μ_y + N(0, I)`` in ``dim`` dims."""
    gen = torch.Generator().manual_seed(seed)
    means = 2.0 * torch.randn(classes, dim, generator=gen)
    y = torch.randint(classes, (n_train + n_test,), generator=gen)
    x = means[y] + torch.randn(n_train + n_test, dim, generator=gen)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def build_data(config: DMConfig, device: torch.device) -> DMData:
    """Data, views and encoder for ``config.data`` (``synthetic`` needs no files)."""
    from ..augment import Normalize, build_augment, to_float
    from ..models import build_encoder

    def cut(x: Tensor, y: Tensor, n: int | None) -> tuple[Tensor, Tensor]:
        return (x, y) if n is None else (x[:n], y[:n])

    identity = config.views == "identity"
    clean_second = config.views == "augment-clean"
    if config.data == "synthetic":
        trx, tr_y, tex, te_y = synthetic_data(seed=config.seed)
        jitter = 0.0 if identity else 0.3

        def vec_view(x: Tensor) -> Tensor:
            x = x.to(device)
            return x + jitter * torch.randn_like(x) if jitter else x

        enc = build_encoder("mlp", in_channels=trx.shape[1], image_size=1, width=config.width)
        trx, tr_y = cut(trx, tr_y, config.train_subset)
        tex, te_y = cut(tex, te_y, config.test_subset)
        return DMData(trx, tr_y, tex, te_y, vec_view, lambda x: x.to(device), enc, clean_second)
    from ..data import load_dataset

    ds = load_dataset(config.data, config.data_dir)
    c, h, _ = ds.image_shape
    name = config.encoder if config.encoder != "auto" else ("mlp" if h == 8 else "cnn")
    width = config.width if config.width is not None or name != "cnn" else CNN_WIDTH
    enc = build_encoder(name, in_channels=c, image_size=h, width=width)
    norm = Normalize(ds.mean, ds.std).to(device)
    overrides: dict[str, Any] = {"stroke": float(config.stroke)}  # type: ignore[arg-type]
    if config.crop is not None:
        overrides["crop_scale"] = (float(config.crop), 1.0)
    aug = build_augment(ds.name, **overrides).to(device)

    def img_view(x: Tensor) -> Tensor:
        x = to_float(x, device)
        return norm(x if identity else aug(x))

    tex, te_y = cut(ds.test_x, ds.test_y, config.test_subset)
    return DMData(
        ds.train_x,
        ds.train_y,
        tex,
        te_y,
        img_view,
        lambda x: norm(to_float(x, device)),
        enc,
        clean_second,
    )


#: Seeds of the resampled DM subsets start here (the headline subset uses ``seed`` itself).
RESAMPLE_SEED = 100_000
POPULATION_FIT_SIZE = 60_000  # training images (at most) that fix the eval-mode statistics


def population_sample(n: int, seed: int, size: int = POPULATION_FIT_SIZE) -> Tensor:
    """Indices of the ``min(n, size)`` training images that fix the eval-mode statistics
    (:func:`recalibrate_bn`): a seeded random sample, never the first images of the file.

    MNIST's training file is not shuffled: its 10k blocks differ by up to 0.14 sd on a
    coordinate of a d = 8 representation, against 0.02-0.03 for shuffled blocks. Fitting on the
    first 10k put that offset on every other image; a larger sample also shrinks the fit's own
    sampling error."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=gen)[: min(n, size)]


@torch.no_grad()
def recalibrate_bn(
    model: nn.Module, x: Tensor, prep: Callable[[Tensor], Tensor], batch_size: int = 256
) -> None:
    """Precise batch norm: replace every BN layer's running mean / variance by the average over
    ``x`` (train-mode batches of ``batch_size``, no gradient), so that eval-mode representations
    are normalised with the population statistics of the *final* network, not an EMA that lags
    behind training."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.training) for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
        m.train()
    for i in range(0, x.shape[0] - batch_size + 1, batch_size):
        model.represent(prep(x[i : i + batch_size]))  # type: ignore[operator]
    for m, (momentum, training) in zip(bns, saved, strict=True):
        m.momentum = momentum
        m.train(training)
    ranks = [r for r in model.modules() if isinstance(r, RankNormalization)]
    if ranks:  # population whitening and quantiles from the final (eval-mode) network
        was = model.training
        model.eval()
        hs = [
            model.head(model.encoder(prep(x[i : i + batch_size])))  # type: ignore[operator]
            for i in range(0, x.shape[0], batch_size)
        ]
        model.train(was)
        for r in ranks:
            r.fit(torch.cat(hs))


@torch.no_grad()
def representations(model: NoisyDIM, x: Tensor, prep: Callable[[Tensor], Tensor]) -> Tensor:
    """Clean representation in the target law (:meth:`NoisyDIM.embed`) in eval mode, in batches
    of 1024: ``float [N, d]`` on the CPU."""
    was = model.training
    model.eval()
    out = [model.embed(prep(x[i : i + 1024])).float().cpu() for i in range(0, len(x), 1024)]
    model.train(was)
    return torch.cat(out)


#: Multiples of the learned ``τ`` tried on the calibration half of the test inputs by
#: :func:`heldout_bound`; ``inf`` is the constant critic, whose InfoNCE estimate is exactly 0.
TAU_GRID = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, math.inf)
#: Temperatures tried as multiples of the median squared distance of a calibration batch.
MEDIAN_GRID = (1 / 256, 1 / 64, 1 / 16, 1 / 4, 1.0, 4.0)


@dataclass(frozen=True)
class HeldoutBound:
    """The held-out estimate of :func:`heldout_bound` (nats) and how it was made."""

    estimate: float
    stderr: float
    tau_scale: float
    batch_size: int
    batches: int
    note: str


@torch.no_grad()
def heldout_bound(
    model: NoisyDIM,
    data: DMData,
    bound: str,
    k: int,
    min_batches: int = 8,
) -> HeldoutBound:
    """The bound between the noisy representation of one view and the clean one of another,
    estimated on test inputs that made no choice.

    The test inputs are split in two halves. On the first, the critic's one free scale is
    chosen: ``S/s`` for ``s`` in :data:`TAU_GRID` and for temperatures of :data:`MEDIAN_GRID`
    times the median squared distance (the learned ``τ`` fitted the *training* views, and is
    too sharp where test views lie further apart, or collapsed; ``s = ∞`` is the constant
    critic, for which InfoNCE is exactly 0). The views are paired as in training
    (:meth:`DMData.pair`).
    On the second half, the mean and standard error over random batches of ``min(k, N/2)``
    pairs are reported with that scale, so a negative value can only come from sampling noise
    (``note`` says so), never from a mis-scaled critic.

    The encoder uses eval-mode statistics; the noise layer standardises each test batch with its
    own statistics, exactly the constraint of training under which the SPEC §7 ceiling holds.
    Batches overlap when a half holds fewer than ``min_batches · k`` inputs, so the standard
    error is then optimistic.
    """
    n = data.test_x.shape[0]
    k_eval = min(k, n // 2)
    if k_eval < 2:
        raise ValueError(f"test set ({n}) too small for a held-out estimate (need >= 4 inputs)")
    spec = BOUNDS.get(bound)
    was = model.training
    model.eval()
    norm = model.noise.norm
    saved = {key: v.clone() for key, v in norm.state_dict().items()}
    norm.train()
    gen_state = torch.get_rng_state()
    torch.manual_seed(12345)
    order = torch.randperm(n)
    halves = order[: n // 2], order[n // 2 :]

    def estimates(idx: Tensor, scales: tuple[float, ...]) -> np.ndarray:
        out = []
        for _ in range(max(len(idx) // k_eval, min_batches)):
            xb = data.test_x[idx[torch.randperm(len(idx))[:k_eval]]]
            s12, s21 = model.pair_scores(*data.pair(xb), noisy=True)
            out.append(
                [
                    0.5 * float(spec.estimate(s12 / s) + spec.estimate(s21 / s))
                    if math.isfinite(s)
                    else 0.5 * float(spec.estimate(0 * s12) + spec.estimate(0 * s21))
                    for s in scales
                ]
            )
        return np.array(out)

    # candidate scales: multiples of the learned τ, and of the data's own scale (the median
    # squared distance of a calibration batch), for a τ that collapsed in training
    xb = data.test_x[halves[0][:k_eval]]
    s12, _ = model.pair_scores(*data.pair(xb), noisy=True)
    median_d2 = float((-s12 * model.tau).median())
    scales = TAU_GRID + tuple(median_d2 * g / float(model.tau) for g in MEDIAN_GRID)
    calib = estimates(halves[0], scales).mean(axis=0)
    scale = scales[int(np.argmax(calib))]
    vals = estimates(halves[1], (scale,))[:, 0]
    torch.set_rng_state(gen_state)
    norm.load_state_dict(saved)
    model.train(was)
    mean, se = float(vals.mean()), float(vals.std(ddof=1) / math.sqrt(len(vals)))
    note = ""
    if mean < 0:
        note = (
            f"below 0 by sampling noise only ({mean:.3f} ± {se:.3f} nats over {len(vals)} "
            f"batches; the critic scale was chosen on the other half of the test inputs)"
        )
    return HeldoutBound(mean, se, float(scale), k_eval, len(vals), note)


# ----------------------------------------------------------------------------------------------
# One run


def train_dm(config: DMConfig, out_dir: str | Path | None = None) -> tuple[dict[str, Any], Tensor]:
    """Train one noise-injected DIM and evaluate it; returns ``(metrics, test representation)``.

    Metric keys: ``sigma``, ``linear_probe_acc``, DM metrics at ``dm_sizes[0]`` (see
    :class:`~infomax.dm.metrics.DMMetrics`), ``energy_p@n`` for every size, ``train_energy`` /
    ``train_energy_p`` (energy test of the in-sample representation of the probe's training
    inputs), ``shift_energy`` / ``shift_energy_p`` (energy two-sample test between the
    representations of training and test inputs: the part of a test failure that no match on
    the training inputs can remove), ``energy_pass_rate`` / ``ks_pass_rate`` /
    ``shapiro_pass_rate`` / ``energy_median`` (:func:`resampled_pass_rates`), ``mi_estimate`` /
    ``mi_stderr`` (held-out bound, nats), ``capacity`` (SPEC §7 ceiling), ``log_k``,
    ``train_seconds``, ``epochs``, ``train_images``, ``torch_threads``.
    """
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)  # before build_data, which initialises the encoder
    data = build_data(config, device)
    images = data.train_x if config.train_subset is None else data.train_x[: config.train_subset]
    n_probe = data.train_x.shape[0] if config.probe_subset is None else config.probe_subset
    check_data_sizes(
        config,
        n_train=images.shape[0],
        n_probe=min(n_probe, data.train_x.shape[0]),
        n_test=data.test_x.shape[0],
    )
    model = NoisyDIM(
        data.encoder, config.dim, config.target, config.noise_level, config.normalization
    ).to(device)
    result = _train(model, data, images, config, out_dir)
    metrics, f_test = _evaluate(model, data, images, config)
    metrics.update(
        tau=float(model.tau.detach()),
        final_loss=result.history[-1]["loss"],
        train_seconds=result.seconds,
        epochs=result.epochs_done,
        train_images=int(images.shape[0]),
        torch_threads=torch.get_num_threads(),
    )
    if out_dir is not None:
        reports.write_results(
            out_dir,
            config=config,
            results=metrics,
            seed=config.seed,
            extra={"curves": result.history},
        )
    return metrics, f_test


def _train(
    model: NoisyDIM, data: DMData, images: Tensor, config: DMConfig, out_dir: str | Path | None
) -> TrainResult:
    """:func:`infomax.train.fit` on :class:`~infomax.data.Batches` of ``images``: the
    symmetrised bound between the noisy representation of one view and the clean one of the
    other, with ``σ`` following :func:`~infomax.dm.noise.sigma_schedule` step by step."""
    spec = BOUNDS.get(config.bound)
    steps_total = config.n_epochs * (images.shape[0] // config.batch_size)
    ntxent = NTXentLoss(SIMCLR_TEMPERATURE)

    def loss_fn(m: nn.Module, batch: Tensor) -> Tensor:
        if config.method == "simclr":
            h = m.head(m.encoder(torch.cat([data.view(batch), data.view(batch)])))  # type: ignore[operator]
            m.noise.normalize(h)  # type: ignore[union-attr,operator]  # running statistics
            return ntxent(*h.chunk(2))
        s12, s21, c = m.pair_scores_and_clean(*data.pair(batch))  # type: ignore[operator]
        loss = 0.5 * (spec.loss(s12) + spec.loss(s21))
        if config.denominator == "balanced":
            # the positive left out of its own denominator: biased the other way at finite K
            without = pointwise_infonce(s12).mean() + pointwise_infonce(s21).mean()
            loss = 0.5 * loss - 0.25 * without
        if config.match_weight:
            base = m.noise.target  # type: ignore[union-attr]
            ref = torch.randn_like(c) if base == "gaussian" else torch.rand_like(c)
            loss = loss + config.match_weight * MATCH_PENALTIES[config.match_kernel](c, ref)
        return loss

    def after_step(m: nn.Module, step: int) -> None:
        m.noise.sigma = sigma_schedule(  # type: ignore[union-attr]
            step / steps_total, config.noise_level, config.sigma_warmup, config.sigma_start
        )

    model.noise.sigma = sigma_schedule(
        0.0, config.noise_level, config.sigma_warmup, config.sigma_start
    )
    return fit(
        model,
        lambda epoch: Batches(images, config.batch_size, config.seed, epoch),
        loss_fn,
        config.train_config(),
        out_dir=Path(out_dir) if out_dir is not None else None,
        after_step=after_step,
    )


def resampled_pass_rates(z: Tensor, config: DMConfig) -> dict[str, float]:
    """Pass rates of the DM tests over ``config.dm_resamples`` random subsets of
    ``config.dm_sizes[0]`` rows of ``z: [N, d]``, each against fresh target draws (seeds
    ``RESAMPLE_SEED + 1000 · seed + i``, none equal to the headline subset's): ``energy_pass_rate``,
    ``ks_pass_rate``, ``shapiro_pass_rate``, and the median energy ``energy_median`` (NaN for 0
    resamples)."""
    runs = [
        dm_metrics(
            z,
            config.target,
            n=config.dm_sizes[0],
            permutations=config.permutations,
            seed=RESAMPLE_SEED + 1000 * config.seed + i,
        )
        for i in range(config.dm_resamples)
    ]
    if not runs:
        keys = ("energy_pass_rate", "ks_pass_rate", "shapiro_pass_rate", "energy_median")
        return dict.fromkeys(keys, math.nan)
    return {
        "energy_pass_rate": sum(r.energy_pass for r in runs) / len(runs),
        "ks_pass_rate": sum(r.ks_pass for r in runs) / len(runs),
        "shapiro_pass_rate": sum(r.shapiro_pass for r in runs) / len(runs),
        "energy_median": statistics.median(r.energy for r in runs),
    }


def _evaluate(
    model: NoisyDIM, data: DMData, images: Tensor, config: DMConfig
) -> tuple[dict[str, Any], Tensor]:
    """Metrics of a trained model at ``config.sigma`` (batch norm recalibrated on ``images``):
    linear probe, DM tests of the test representation at every ``dm_sizes`` and of the probe's
    training representation, the held-out bound next to the capacity ceiling; returns them and
    the test representation."""
    from ..eval import linear_probe

    model.noise.sigma = config.noise_level
    fit_idx = population_sample(images.shape[0], config.seed)
    recalibrate_bn(model, images[fit_idx], data.clean, config.batch_size)
    probe_x = data.train_x if config.probe_subset is None else data.train_x[: config.probe_subset]
    probe_y = data.train_y[: probe_x.shape[0]]
    f_train = representations(model, probe_x, data.clean)
    f_test = representations(model, data.test_x, data.clean)
    metrics: dict[str, Any] = {
        "sigma": config.noise_level if config.method == "noisy-dim" else 0.0,
        "method": config.method,
        "target": config.target,
        "seed": config.seed,
    }
    metrics["linear_probe_acc"] = linear_probe(f_train, probe_y, f_test, data.test_y)
    sizes = list(config.dm_sizes)  # checked against the test set before training
    for i, n in enumerate(sizes):
        dm = dm_metrics(
            f_test, config.target, n=n, permutations=config.permutations, seed=config.seed
        )
        if i == 0:
            metrics.update({k: v for k, v in dm.as_dict().items() if k != "target"})
        metrics[f"energy_p@{n}"] = dm.energy_p
    metrics.update(resampled_pass_rates(f_test, config))
    in_sample = dm_metrics(
        f_train, config.target, n=sizes[0], permutations=config.permutations, seed=config.seed
    )
    metrics.update(train_energy=in_sample.energy, train_energy_p=in_sample.energy_p)
    gen = torch.Generator().manual_seed(config.seed)
    picks = [torch.randperm(f.shape[0], generator=gen)[: sizes[0]] for f in (f_train, f_test)]
    shift, shift_p = energy_test(
        f_train[picks[0]], f_test[picks[1]], permutations=config.permutations, generator=gen
    )
    metrics.update(shift_energy=shift, shift_energy_p=shift_p)
    if config.method == "simclr":  # no noise channel: no ceiling to compare with
        metrics.update(mi_estimate=math.nan, mi_stderr=math.nan, capacity=math.inf)
        return metrics, f_test
    held = heldout_bound(model, data, config.bound, config.batch_size)
    metrics.update(
        mi_estimate=held.estimate,
        mi_stderr=held.stderr,
        mi_tau_scale=held.tau_scale,
        mi_batch_size=held.batch_size,
        mi_note=held.note,
        capacity=capacity(model.law.base, config.dim, config.noise_level),
        log_k=math.log(held.batch_size),
        binding_sigma=binding_sigma(model.law.base, config.dim, config.batch_size),
    )
    return metrics, f_test
