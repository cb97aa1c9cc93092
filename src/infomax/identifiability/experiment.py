"""Identifiability experiment: train an encoder contrastively on ``(g(z), g(z̃))`` pairs and
measure how well it recovers ``z`` (SPEC §5, Zimmermann et al. 2021).

Each step draws a fresh batch ``z ~ p(z)``, ``z̃ ~ p(z̃ | z)`` (:mod:`.spaces`), mixes it with a
frozen invertible MLP ``g`` (:mod:`.mixing`), whitens ``x`` with a fixed affine map estimated
on a held-out sample (invertible, so identifiability is unchanged), and minimises a contrastive
loss on the score matrix
``S[i, j] = score(f(g(z_i)), f(g(z̃_j)))``, ``[K, K]``:

- model ``sphere``: ``f`` is normalised and ``score`` is ``cosine`` with ``τ = 1/κ`` (matched to a
  vMF(κ) conditional: ``log p(z̃ | z) = κ zᵀz̃ + const``);
- model ``box`` / ``rn``: ``score`` is ``lp``: ``−‖f(x) − f(x̃)‖_p^p / τ`` with ``τ = α^p`` (matched
  to a generalised normal of scale ``α`` and shape ``p``: Laplace ``p = 1``, normal ``p = 2``).

The training objective (``objective``) is any bound of :data:`infomax.registry.BOUNDS` (its
``loss``; FLO uses its optimal ``u`` detached, MINE its EMA) or ``fmicl:<divergence>``,
minimised as a loss; by default it is symmetrised,
``½ (L(S) + L(Sᵀ))``. Training runs on :func:`infomax.train.fit` (step-based: one "epoch" per
``eval_every`` steps, each step on a fresh batch). Metrics (:mod:`.metrics`) are taken every
``eval_every`` steps on a fixed held-out set and at the end on fresh samples, next to two
baselines: the untrained encoder and the mixed observations ``x = g(z)`` themselves.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_int, check_positive, renamed_keys
from ..critics import Similarity, mlp
from ..models import StridedCNN
from ..registry import BOUNDS
from ..train import DivergedError, Evaluate, Progress, TrainConfig, TrainState, fit
from .metrics import (
    identifiability_metrics,
    linear_prediction,
    linear_r2,
    mcc,
    per_latent_metrics,
)
from .mixing import InvertibleMLP, invertibility_report
from .spaces import SPACES, Conditional, Space, get_space
from .worlds import ShapesWorld, get_world, unit_from_space

logger = logging.getLogger(__name__)

MODELS = ("sphere", "box", "rn")
MIN_EVAL_SAMPLES = 10
#: Settings saved under an earlier name (``{old: new}``), read by :meth:`IdentifyConfig.from_dict`.
RENAMED = {"loss": "objective"}


@dataclass(frozen=True)
class IdentifyConfig:
    """Settings of one run (validated; written into ``results.json``).

    ``model``/``model_p``/``temperature`` left as ``None`` are *matched* to the generative
    process: model space = ``space``; ``p`` = the conditional's exponent; ``τ = 1/κ`` (cosine) or
    ``τ = α^p`` (lp; ``2/κ`` for a vMF conditional, since ``κ zᵀz̃ = κ − κ‖z − z̃‖²/2``).
    ``hidden`` (encoder widths) defaults to a CPU budget, ``(64, 256, 256, 64)`` (the paper:
    ``(10n, 50n, 50n, 50n, 50n, 10n)``, batch 6144). ``mixing_condition`` caps each mixing
    layer's condition number (default: :meth:`InvertibleMLP.random`'s quantile rule); ``norm``
    (``batch`` / ``layer``) adds normalisation between the encoder's hidden layers;
    ``input_norm`` is the fixed invertible affine map in front of the encoder (:func:`input_map`).
    ``objective``: a bound name or ``fmicl:<divergence>`` (:func:`make_objective`; called
    ``loss`` in results written before its rename, see :meth:`from_dict`).

    ``world`` (e.g. ``"shapes"``, :mod:`.worlds`): the observations are images rendered from
    the latents instead of an MLP mixing; ``latents`` (default: all of the world's) vary,
    ``dim`` becomes their number, the space must be ``box`` or ``sphere``, and the encoder is
    :class:`~infomax.models.StridedCNN` of ``width`` on ``image_size``-pixel images (``hidden``,
    ``mixing_*`` and ``input_norm`` do not apply; pixels are standardised per channel).
    """

    space: str = "sphere"
    conditional: str = "vmf"
    kappa: float = 10.0
    scale: float = 0.1
    p: float = 1.0
    model: str | None = None
    model_p: float | None = None
    temperature: float | None = None
    objective: str = "infonce"
    symmetric: bool = True
    dim: int = 10
    mixing_layers: int = 3
    mixing_condition: float | None = None
    hidden: tuple[int, ...] = (64, 256, 256, 64)
    norm: str | None = None
    input_norm: str = "whiten"
    steps: int = 16000
    batch: int = 512
    lr: float = 2e-3
    lr_schedule: str = "cosine"
    eval_every: int = 1000
    eval_samples: int = 2000
    final_samples: int = 5000
    seed: int = 0
    threads: int | None = None
    world: str | None = None
    latents: tuple[str, ...] = ()
    image_size: int = 32
    width: int = 32

    def __post_init__(self) -> None:
        if self.world is not None:
            world = self.renderer()
            assert world is not None
            if world.dim < 2:
                raise ValueError("an image world needs at least 2 varying latents")
            object.__setattr__(self, "latents", world.latent_names)
            object.__setattr__(self, "dim", world.dim)
            unit_from_space(torch.zeros(1, world.dim), self.space)  # box or sphere only
            check_int("width", self.width, 1)
        elif self.latents:
            raise ValueError("latents names the latents of an image world: give world too")
        if self.space not in SPACES:
            raise ValueError(f"unknown space {self.space!r}; valid names: {', '.join(SPACES)}")
        if self.model is not None and self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; valid names: {', '.join(MODELS)}")
        for name in ("kappa", "scale", "p", "lr"):
            check_positive(name, getattr(self, name))
        for name in ("model_p", "temperature", "mixing_condition"):
            check_positive(name, getattr(self, name), optional=True)
        _ = self.cond  # validates the conditional
        if self.conditional == "vmf" and self.space != "sphere":
            raise ValueError("the vmf conditional needs --space sphere")
        check_int("dim", self.dim, 2)  # the spaces need n >= 2
        for name in ("mixing_layers", "steps", "eval_every"):
            check_int(name, getattr(self, name), 1)
        check_int("batch", self.batch, 2)  # a contrastive batch needs a negative
        for name in ("eval_samples", "final_samples"):
            check_int(name, getattr(self, name), MIN_EVAL_SAMPLES)
        check_int("seed", self.seed, 0)
        check_int("threads", self.threads, 1, none=True)
        if (
            not isinstance(self.hidden, (tuple, list))
            or not self.hidden
            or any(
                isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w < 1
                for w in self.hidden
            )
        ):
            raise ValueError(
                f"hidden must be a non-empty sequence of integer widths >= 1, got {self.hidden!r}"
            )
        if self.mixing_condition is not None and not self.mixing_condition > 1:
            raise ValueError(
                "mixing_condition must be > 1 (a condition number; None: the default quantile "
                f"rule), got {self.mixing_condition}"
            )
        if self.lr_schedule not in ("cosine", "constant"):
            raise ValueError(
                f"lr_schedule must be 'cosine' or 'constant', got {self.lr_schedule!r}"
            )
        if self.input_norm not in ("whiten", "standardize", "none"):
            raise ValueError(
                f"input_norm must be 'whiten', 'standardize' or 'none', got {self.input_norm!r}"
            )
        if self.norm not in (None, "batch", "layer"):
            raise ValueError(f"norm must be None, 'batch' or 'layer', got {self.norm!r}")
        make_objective(self.objective)  # unknown name -> ValueError now, not after sampling

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> IdentifyConfig:
        """Rebuild from ``asdict`` output (e.g. a ``results.json``'s ``"config"``), ignoring
        unknown keys; ``hidden`` may be a list (JSON), a setting saved under its earlier name
        (:data:`RENAMED`) is read under the new one.

        >>> IdentifyConfig.from_dict({"loss": "nwj", "hidden": [8, 8]}).objective
        'nwj'
        """
        names = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in renamed_keys(values, RENAMED).items() if k in names}
        for name in ("hidden", "latents"):
            if isinstance(kwargs.get(name), list):
                kwargs[name] = tuple(kwargs[name])
        return cls(**kwargs)

    def renderer(self) -> ShapesWorld | None:
        """The image world of ``world`` (``None``: the MLP mixing)."""
        if self.world is None:
            return None
        latents = {"latents": tuple(self.latents)} if self.latents else {}
        return get_world(self.world, size=self.image_size, **latents)

    @property
    def cond(self) -> Conditional:
        """The generative conditional."""
        return Conditional(self.conditional, kappa=self.kappa, scale=self.scale, p=self.p)

    @property
    def model_space(self) -> str:
        """Model space (``sphere`` -> cosine critic, otherwise lp critic)."""
        return self.model or self.space

    @property
    def critic_p(self) -> float:
        """Exponent of the lp critic."""
        return self.model_p if self.model_p is not None else self.cond.shape_p

    @property
    def similarity(self) -> Similarity:
        """The model's score (module doc): cosine with ``τ = 1/κ`` or ``L_p`` with ``τ = α^p``."""
        if self.model_space == "sphere":
            return Similarity("cosine", self.tau)
        return Similarity("lp", self.tau, p=self.critic_p)

    @property
    def tau(self) -> float:
        """Critic temperature (matched to the conditional unless given)."""
        if self.temperature is not None:
            return self.temperature
        if self.model_space == "sphere":
            return 1.0 / self.kappa
        if self.conditional == "vmf":
            return 2.0 / self.kappa
        return self.cond.gn_scale**self.critic_p

    def label(self) -> str:
        """Short description, e.g. ``sphere/vMF(κ=10) -> sphere cos τ=0.1``."""
        critic = "cos" if self.model_space == "sphere" else f"L{self.critic_p:g}"
        pixels = f"{self.world} {self.image_size}px: " if self.world else ""
        return (
            f"{pixels}{self.space}/{self.cond.describe()} -> {self.model_space} {critic} "
            f"τ={self.tau:.3g} {self.objective}"
        )


@dataclass
class IdentifyResult:
    """Outcome of :func:`run_identify`: final held-out ``metrics`` and the baselines
    (``untrained``: the same encoder before training; ``mixing_only``: ``h = g(z)``),
    the curve ``history`` (one dict per evaluation), timings and the mixing check."""

    config: IdentifyConfig
    metrics: dict[str, float]
    untrained: dict[str, float]
    mixing_only: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    invertibility: dict[str, float] = field(default_factory=dict)
    per_latent: dict[str, Any] = field(default_factory=dict)
    #: arrays for the plots of an image-world run (not in ``to_dict``): held-out ``z`` and its
    #: linear prediction, and a few rendered positive pairs
    arrays: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "arrays"}
        out["config"] = asdict(self.config)
        out["label"] = self.config.label()
        return out


# ----------------------------------------------------------------------------------------------
# Objective and model


def make_objective(name: str, symmetric: bool = False) -> Callable[[Tensor], Tensor]:
    """Loss to minimise from a score matrix ``S: [K, K]``: a :data:`BOUNDS` name (its ``loss``)
    or ``fmicl:<divergence>`` (``−L_f``). FLO uses ``u = flo_optimal_u(S)`` detached (its
    gradient is then that of ``−log mean_{j≠i} exp(S_ij − S_ii)``); MINE keeps its EMA
    (:class:`MINEObjective`). ``symmetric``: ``½ (L(S) + L(Sᵀ))``, one call per training step
    (MINE's EMA is then still updated once per call, see :class:`MINEObjective`)."""
    name = str(name).lower()
    if name == "mine":
        return MINEObjective(symmetric=symmetric)
    one = _one_direction(name)
    if not symmetric:
        return one
    return lambda s: 0.5 * (one(s) + one(s.T))


def _one_direction(name: str) -> Callable[[Tensor], Tensor]:
    if name.startswith("fmicl:"):
        from ..divergences import fmicl, get_divergence

        div = get_divergence(name.split(":", 1)[1])
        return lambda s: -fmicl(s, div)
    spec = BOUNDS.get(name)
    if spec.extra is None:
        return spec.loss
    if name == "flo":
        from ..bounds import flo_optimal_u

        return lambda s: spec.loss(s, u=flo_optimal_u(s).detach())
    raise ValueError(
        f"objective {name!r} needs a learned {spec.extra!r} network; not supported here"
    )


class MINEObjective:
    """MINE loss ``−mine(S, ema)`` with its running mean (SPEC §2: EMA of
    ``m = mean_{i≠j} exp(S_ij)``, rate ``rate``), kept in ``self.mine`` (a
    :class:`~infomax.bounds.MINELoss`). Each call is one training step and updates the EMA
    exactly once, ``ema ← (1 − rate)·ema + rate·m`` (initialised to the first ``m``).

    Symmetric: ``½ (−mine(S, ema) − mine(Sᵀ, ema))`` with the *same* updated ``ema``. The two
    directions see the same off-diagonal entries, so ``m(Sᵀ) = m(S)``: the EMA tracks one
    quantity, and the step's one update with ``m(S)`` is the update with the mean over both
    directions. Updating once per direction (as two :class:`MINELoss` calls would) doubles the
    effective rate to ``1 − (1 − rate)²`` and, being in place between the forward and the backward
    of the step, also invalidates the EMA that the first direction's graph saved (autograd
    ``RuntimeError``); one EMA per direction would keep two copies of the same running mean.
    """

    def __init__(self, symmetric: bool = False, rate: float = 0.01) -> None:
        from ..bounds import MINELoss

        self.symmetric = bool(symmetric)
        self.mine = MINELoss(rate)

    @property
    def ema(self) -> Tensor:
        """The running mean of ``mean_{i≠j} exp(S_ij)`` (NaN before the first step)."""
        return self.mine.ema

    def __call__(self, scores: Tensor) -> Tensor:
        from ..bounds import mine

        value = self.mine(scores)  # the step's one EMA update, then mine(S, ema)
        if not self.symmetric:
            return -value
        return -0.5 * (value + mine(scores.T, self.mine.ema.to(scores.dtype)))


def model_scores(config: IdentifyConfig, a: Tensor, b: Tensor) -> Tensor:
    """``S: [K, K]`` from encoder outputs ``a, b: [K, d]`` (cosine or lp, see module doc)."""
    return config.similarity(a, b)


def features(config: IdentifyConfig, encoder: nn.Module, x: Tensor) -> Tensor:
    """Representation ``h = f(x)`` used by the metrics (normalised for the sphere model)."""
    h = encoder(x)
    return F.normalize(h, dim=-1) if config.model_space == "sphere" else h


class InputMap(nn.Module):
    """Fixed affine input map ``(x − mean) @ W`` (``[batch, n] -> [batch, n]``) with an
    invertible ``W``, so it changes nothing about identifiability, only the geometry the
    encoder's first layer sees. Built by :func:`input_map`."""

    mean: Tensor
    matrix: Tensor

    def __init__(self, mean: Tensor, matrix: Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean.detach().clone())
        self.register_buffer("matrix", matrix.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) @ self.matrix


def input_map(x: Tensor, kind: str) -> InputMap:
    """``whiten``: ``W = Σ^{−1/2}`` (ZCA, from ``x``'s covariance); ``standardize``:
    ``W = diag(1/std)``; ``none``: identity. ``x: [n, dim]``."""
    mean, dim = x.mean(0), x.shape[1]
    if kind == "none":
        return InputMap(torch.zeros(dim), torch.eye(dim))
    if kind == "standardize":
        return InputMap(mean, torch.diag(1.0 / x.std(0).clamp_min(1e-8)))
    if kind == "whiten":
        xc = (x - mean).double()
        evals, evecs = torch.linalg.eigh(xc.T @ xc / (x.shape[0] - 1))
        w = evecs @ torch.diag(evals.clamp_min(1e-12).rsqrt()) @ evecs.T
        return InputMap(mean, w.float())
    raise ValueError(f"input_norm must be 'whiten', 'standardize' or 'none', got {kind!r}")


def _encode(config: IdentifyConfig, encoder: nn.Module, x: Tensor, chunk: int = 2048) -> Tensor:
    was_training = encoder.training
    encoder.eval()
    with torch.no_grad():
        h = torch.cat(
            [features(config, encoder, x[i : i + chunk]) for i in range(0, len(x), chunk)]
        )
    encoder.train(was_training)
    return h


class PixelStandardize(nn.Module):
    """Fixed per-channel ``(x − mean) / std`` of images ``[B, C, H, W]`` (statistics of a
    held-out sample): invertible, so it changes nothing about identifiability."""

    mean: Tensor
    std: Tensor

    def __init__(self, images: Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", images.mean((0, 2, 3)).view(1, -1, 1, 1))
        self.register_buffer("std", images.std((0, 2, 3)).clamp_min(1e-6).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


def _observations(config: IdentifyConfig) -> Callable[[Tensor], Tensor]:
    """The map ``z -> x`` of a run: the image world's renderer of ``unit_from_space(z)``, or a
    random invertible MLP."""
    world = config.renderer()
    if world is None:
        return InvertibleMLP.random(
            config.dim,
            config.mixing_layers,
            seed=config.seed,
            max_condition=config.mixing_condition,
        )
    return lambda z: world.render(unit_from_space(z, config.space))


def _build_encoder(config: IdentifyConfig, x_fit: Tensor) -> nn.Module:
    if config.world is not None:
        cnn = StridedCNN(config.dim, x_fit.shape[1], config.image_size, config.width)
        return nn.Sequential(PixelStandardize(x_fit), cnn)
    return nn.Sequential(
        input_map(x_fit, config.input_norm),
        mlp([config.dim, *config.hidden, config.dim], act="leaky_relu", norm=config.norm),
    )


# ----------------------------------------------------------------------------------------------
# Runner


def run_identify(
    config: IdentifyConfig, out: str | Path | None = None, progress: bool = True
) -> IdentifyResult:
    """Train and evaluate one setting; with ``out``, write ``results.json``, ``history.csv``
    and ``r2_curve.png`` there."""
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    t0, c0 = time.perf_counter(), time.process_time()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    space: Space = get_space(config.space, config.dim)
    g = _observations(config)
    objective = make_objective(config.objective, symmetric=config.symmetric)

    eval_rng = np.random.default_rng([config.seed, 1])
    z_fit, z_val = (space.sample_marginal(config.eval_samples, eval_rng) for _ in range(2))
    x_fit, x_val = g(z_fit), g(z_val)
    encoder = _build_encoder(config, x_fit)
    final_rng = np.random.default_rng([config.seed, 2])
    z_tr, z_te = (space.sample_marginal(config.final_samples, final_rng) for _ in range(2))
    x_tr, x_te = g(z_tr), g(z_te)

    def encode_final() -> tuple[Tensor, Tensor]:
        return _encode(config, encoder, x_tr), _encode(config, encoder, x_te)

    h_tr, h_te = encode_final()
    untrained = identifiability_metrics(h_tr, z_tr, h_te, z_te, seed=config.seed)
    flat_tr, flat_te = x_tr.flatten(1), x_te.flatten(1)  # images: the raw pixels
    mixing_only = identifiability_metrics(flat_tr, z_tr, flat_te, z_te, seed=config.seed)
    check = invertibility_report(g, z_te[:512]) if isinstance(g, InvertibleMLP) else {}
    held_out = _HeldOut(x_fit, z_fit, x_val, z_val, t0)
    history = _train_encoder(config, encoder, g, space, objective, rng, held_out, progress)
    h_tr, h_te = encode_final()
    per_latent: dict[str, Any] = {}
    arrays: dict[str, Any] = {}
    if config.world is not None:
        per_latent = {"names": list(config.latents), **per_latent_metrics(h_tr, z_tr, h_te, z_te)}
        arrays = {
            "z_test": z_te[:1000],
            "z_pred": linear_prediction(h_tr, z_tr, h_te[:1000], z_te[:1000]),
            "pairs": _example_pairs(config, space, g),
        }
    result = IdentifyResult(
        config=config,
        metrics=identifiability_metrics(h_tr, z_tr, h_te, z_te, seed=config.seed),
        untrained=untrained,
        mixing_only=mixing_only,
        history=history,
        seconds=time.perf_counter() - t0,
        cpu_seconds=time.process_time() - c0,
        invertibility=check,
        per_latent=per_latent,
        arrays=arrays,
    )
    if out is not None:
        write_run(result, out)
    return result


@dataclass(frozen=True)
class _HeldOut:
    """The fixed evaluation set of the training curve: ``x = g(z)`` to fit the linear map on,
    ``x`` to score it on, and the run's start time (``perf_counter``)."""

    x_fit: Tensor
    z_fit: Tensor
    x_val: Tensor
    z_val: Tensor
    t0: float

    def curve_point(self, config: IdentifyConfig, encoder: nn.Module) -> dict[str, float]:
        """Held-out linear R² and MCC of the encoder, and the seconds since the start."""
        h_fit, h_val = _encode(config, encoder, self.x_fit), _encode(config, encoder, self.x_val)
        return {
            "r2_linear": linear_r2(h_fit, self.z_fit, h_val, self.z_val),
            "mcc": mcc(h_val, self.z_val),
            "elapsed": time.perf_counter() - self.t0,
        }


def _train_encoder(
    config: IdentifyConfig,
    encoder: nn.Module,
    g: Callable[[Tensor], Tensor],
    space: Space,
    objective: Callable[[Tensor], Tensor],
    rng: np.random.Generator,
    held_out: _HeldOut,
    progress: bool,
) -> list[dict[str, float]]:
    """Train ``encoder`` with :func:`infomax.train.fit`: ``config.steps`` Adam steps (cosine or
    constant learning rate over the steps), each on a fresh batch of pairs
    ``(g(z), g(z̃))`` drawn from ``rng``, scored by :func:`model_scores`; the held-out curve
    every ``eval_every`` steps and at the last. Returns the curve, one row per evaluation
    (``step``, mean training ``loss`` since the previous one, ``r2_linear``, ``mcc``,
    ``seconds``)."""
    every, cond = config.eval_every, config.cond

    def batches(epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        for _ in range(min(every, config.steps - epoch * every)):
            yield space.sample_pairs(config.batch, cond, rng)

    def loss_fn(m: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
        z, z_pos = batch
        # symmetrised by make_objective when config.symmetric
        return objective(model_scores(config, m(g(z)), m(g(z_pos))))

    def evaluate(state: TrainState) -> dict[str, float]:
        point = held_out.curve_point(config, state.model)
        logger.info(
            "step %d: R² %.4f  MCC %.3f", state.global_step, point["r2_linear"], point["mcc"]
        )
        return point

    train_config = TrainConfig(
        epochs=math.ceil(config.steps / every),
        lr=config.lr,
        weight_decay=0.0,  # AdamW without decay: Adam's update
        schedule=config.lr_schedule,
        amp=False,
        device="cpu",
        seed=config.seed,
        progress=False,
    )
    bar = Progress(
        config.label(), enabled=progress, show={"r2_linear": "R²", "mcc": "MCC"}, transient=True
    )
    try:
        result = fit(
            encoder,
            batches,
            loss_fn,
            train_config,
            callbacks=[Evaluate(evaluate), bar],
            total_steps=config.steps,
        )
    except DivergedError as err:
        raise ValueError(
            f"objective {config.objective!r} became non-finite at step {err.global_step}; lower "
            "--lr or use --objective infonce"
        ) from None
    keys = ("loss", "r2_linear", "mcc")
    return [
        {"step": float(r["global_step"]), **{k: r[k] for k in keys}, "seconds": r["elapsed"]}
        for r in result.history
    ]


def write_run(result: IdentifyResult, out: str | Path) -> None:
    """``results.json`` (config, seed, metrics, baselines, timings), ``history.csv`` and
    ``r2_curve.png`` into ``out``."""
    from ..reports import save_figure, write_csv, write_results

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    payload = result.to_dict()
    config = payload.pop("config")
    write_results(out, config=config, results=payload, seed=result.config.seed)
    write_csv(out / "history.csv", result.history)
    save_figure(curve_figure({result.config.label(): result.history}), out / "r2_curve.png")
    if result.arrays:
        names = list(result.config.latents)
        save_figure(pairs_figure(result.arrays["pairs"]), out / "pairs.png")
        fig = scatter_figure(result.arrays["z_test"], result.arrays["z_pred"], names)
        save_figure(fig, out / "latent_scatter.png")


def _example_pairs(
    config: IdentifyConfig, space: Space, g: Callable[[Tensor], Tensor], n: int = 8
) -> tuple[Tensor, Tensor]:
    """``n`` positive pairs ``(g(z), g(z̃))`` drawn with their own seed (for the pairs plot)."""
    z, z_pos = space.sample_pairs(n, config.cond, np.random.default_rng([config.seed, 3]))
    return g(z), g(z_pos)


def pairs_figure(pairs: tuple[Tensor, Tensor]) -> Any:
    """Rendered positive pairs: ``x`` in the top row, its positive ``x̃`` below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, x_pos = pairs
    n = x.shape[0]
    fig, axes = plt.subplots(2, n, figsize=(1.3 * n, 2.9), squeeze=False)
    for row, images, label in ((0, x, "x"), (1, x_pos, "x̃")):
        for i in range(n):
            ax = axes[row, i]
            ax.imshow(images[i].permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[row, 0].set_ylabel(label)
    fig.suptitle("positive pairs (x, x̃ ~ p(x̃ | x))")
    fig.tight_layout()
    return fig


def scatter_figure(z: Tensor, z_pred: np.ndarray, names: list[str]) -> Any:
    """Held-out linear prediction vs the true value, one panel per latent (unit box)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    zz = np.asarray(z)
    d = zz.shape[1]
    fig, axes = plt.subplots(1, d, figsize=(2.6 * d, 2.7), squeeze=False)
    for k, ax in enumerate(axes[0]):
        ax.scatter(zz[:, k], z_pred[:, k], s=3, alpha=0.4)
        lo, hi = float(zz[:, k].min()), float(zz[:, k].max())
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        ax.set_title(names[k] if k < len(names) else f"z{k}")
        ax.set_xlabel("true")
    axes[0, 0].set_ylabel("linear prediction from f(x)")
    fig.tight_layout()
    return fig


def curve_figure(curves: dict[str, list[dict[str, float]]]) -> Any:
    """Held-out linear R² and MCC vs training step, one line per run (``label: history``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for label, hist in curves.items():
        steps = [r["step"] for r in hist]
        axes[0].plot(steps, [r["r2_linear"] for r in hist], label=label)
        axes[1].plot(steps, [r["mcc"] for r in hist], label=label)
    for ax, name in zip(axes, ("linear R² (held-out)", "MCC (held-out)"), strict=True):
        ax.set_xlabel("training step")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    return fig
