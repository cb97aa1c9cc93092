"""Critics: modules that map a batch of pairs to the score matrix ``S[i, j] = f(x_i, y_j)``.

SPEC §1. Every critic returns ``S: [K, K]`` whose diagonal holds the joint samples and whose
off-diagonal entries are samples of the product of marginals. Separable critics
(``dot``, ``cosine``, ``gaussian``, ``lp``, ``bilinear``) build ``S`` with one matrix product
(or ``cdist``) from embeddings ``g(x): [K, d]`` and ``h(y): [K, d]``; they expose
``embed_x``, ``embed_y`` and ``score`` so that tiled kernels and the distributed gather can work
on embeddings instead of scores. ``joint`` runs an MLP on all ``K²`` concatenated pairs.

>>> import torch
>>> critic = build_critic("dot", dim_x=3, dim_y=2, hidden=16, embed_dim=4)
>>> critic(torch.randn(5, 3), torch.randn(5, 2)).shape
torch.Size([5, 5])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ._checks import check_positive
from .registry import CRITICS

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
}


def mlp(
    dims: list[int] | tuple[int, ...],
    act: str = "relu",
    norm: str | None = None,
    out_act: bool = False,
) -> nn.Sequential:
    """Plain MLP ``dims[0] -> ... -> dims[-1]`` with ``act`` (and optional ``batch``/``layer`` norm)
    between layers; no activation after the last layer unless ``out_act``.

    >>> mlp([4, 8, 2])
    Sequential(
      (0): Linear(in_features=4, out_features=8, bias=True)
      (1): ReLU()
      (2): Linear(in_features=8, out_features=2, bias=True)
    )
    """
    if len(dims) < 2:
        raise ValueError(f"mlp needs at least input and output sizes, got {list(dims)}")
    if act not in _ACTIVATIONS:
        raise ValueError(
            f"unknown activation {act!r}; valid names: {', '.join(sorted(_ACTIVATIONS))}"
        )
    layers: list[nn.Module] = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        layers.append(nn.Linear(d_in, d_out))
        last = i == len(dims) - 2
        if not last or out_act:
            if norm == "batch":
                layers.append(nn.BatchNorm1d(d_out))
            elif norm == "layer":
                layers.append(nn.LayerNorm(d_out))
            elif norm is not None:
                raise ValueError(f"unknown norm {norm!r}; valid: batch, layer, None")
            layers.append(_ACTIVATIONS[act]())
    return nn.Sequential(*layers)


# ----------------------------------------------------------------------------------------------
# Pure score functions of embeddings, and the one value that names a similarity.

SIMILARITIES = ("dot", "cosine", "gaussian", "lp")
#: The similarities that are inner products (the tiled kernels and the symmetric kernel).
INNER_PRODUCTS = ("dot", "cosine", "gaussian")


def dot_scores(a: Tensor, b: Tensor) -> Tensor:
    """``S = a bᵀ`` for ``a: [K, d]``, ``b: [M, d]`` -> ``[K, M]``."""
    return Similarity("dot")(a, b)


def cosine_scores(a: Tensor, b: Tensor, temperature: float | Tensor = 1.0) -> Tensor:
    """``S_ij = âᵢᵀ b̂ⱼ / τ`` with ``â = a / ‖a‖``; ``a: [K, d]``, ``b: [M, d]`` -> ``[K, M]``."""
    return Similarity("cosine", temperature)(a, b)


def gaussian_scores(a: Tensor, b: Tensor, sigma: float | Tensor = 1.0) -> Tensor:
    """f-Gaussian similarity ``S_ij = −‖âᵢ − b̂ⱼ‖² / (2σ²) = (âᵢᵀb̂ⱼ − 1) / σ²`` on unit vectors."""
    return Similarity("gaussian", sigma**2)(a, b)


def lp_scores(
    a: Tensor,
    b: Tensor,
    p: float = 1.0,
    alpha: float | None = None,
    temperature: float | Tensor = 1.0,
) -> Tensor:
    """``S_ij = −‖aᵢ − bⱼ‖_p^α / τ`` (``α`` defaults to ``p``), via ``torch.cdist``."""
    return Similarity("lp", temperature, p=p, exponent=alpha)(a, b)


@dataclass(frozen=True, eq=False)
class Similarity:
    """A critic's score of embeddings ``a: [K, d]``, ``b: [M, d]`` -> ``S: [K, M]``, and the one
    place that reads a similarity's name (SPEC §1, §5):

    ============ ================================================ =========== ===========
    ``kind``     ``S_ij``                                          ``scale``   ``shift``
    ============ ================================================ =========== ===========
    ``dot``      ``aᵢᵀbⱼ / τ`` (raw embeddings)                      ``1/τ``     ``0``
    ``cosine``   ``âᵢᵀb̂ⱼ / τ``                                      ``1/τ``     ``0``
    ``gaussian`` ``−‖âᵢ − b̂ⱼ‖² / (2τ) = (âᵢᵀb̂ⱼ − 1) / τ``            ``1/τ``     ``−1/τ``
    ``lp``       ``−‖aᵢ − bⱼ‖_p^α / τ`` (``α = exponent``, def. p)  —           —
    ============ ================================================ =========== ===========

    ``temperature`` ``τ`` divides the score the same way for every kind, so for the f-Gaussian
    of SPEC §1 (``−‖ĝ − ĥ‖²/(2σ²)``) ``τ = σ²``. It may be a 0-d tensor (a learned temperature).
    The first three are inner products ``S = scale · âᵀb̂ + shift`` (:data:`INNER_PRODUCTS`):
    the tiled kernels see only ``prepare`` (normalised embeddings), ``scale`` and ``shift``.
    Critics, the SSL losses, identifiability, DM, RPM and the kernels all consume this value.

    >>> import torch
    >>> a = torch.tensor([[3.0, 4.0]])
    >>> Similarity("cosine", 0.5)(a, a), Similarity("gaussian", 0.5)(a, -a)
    (tensor([[2.]]), tensor([[-4.]]))
    >>> Similarity("lp", 2.0, p=1.0)(a, -a)  # −(6 + 8) / 2
    tensor([[-7.]])
    """

    kind: str = "cosine"
    temperature: float | Tensor = 1.0
    p: float = 2.0
    exponent: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in SIMILARITIES:
            raise ValueError(f"unknown similarity {self.kind!r}; valid: {', '.join(SIMILARITIES)}")
        if not isinstance(self.temperature, Tensor):
            check_positive("temperature", self.temperature)
        if self.kind == "lp":
            check_positive("p", self.p)

    @property
    def inner_product(self) -> bool:
        """Whether ``S = scale · âᵀb̂ + shift`` (tileable)."""
        return self.kind in INNER_PRODUCTS

    @property
    def scale(self) -> float | Tensor:
        """``1/τ``."""
        return 1.0 / self.temperature

    @property
    def shift(self) -> float:
        """``−1/τ`` for ``gaussian`` (a learned ``τ`` is not supported there), else ``0``."""
        return -1.0 / float(self.temperature) if self.kind == "gaussian" else 0.0

    def prepare(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        """The embeddings the score is taken of: unit vectors for ``cosine`` / ``gaussian``;
        half precision is promoted to float32 (scores and their exponentials need the range)."""
        if a.dtype in (torch.float16, torch.bfloat16):
            a = a.float()
        b = b.to(a.dtype)
        if self.kind in ("dot", "lp"):
            return a, b
        return nn.functional.normalize(a, dim=-1), nn.functional.normalize(b, dim=-1)

    def __call__(self, a: Tensor, b: Tensor) -> Tensor:
        """Score matrix ``[K, M]`` of ``a: [K, d]`` and ``b: [M, d]`` (any leading batch dims)."""
        a, b = self.prepare(a, b)
        if self.kind == "lp":
            alpha = self.p if self.exponent is None else self.exponent
            dist = torch.cdist(a, b, p=self.p)
            if alpha != 1.0:
                dist = dist.clamp_min(1e-12).pow(alpha) if alpha < 1.0 else dist.pow(alpha)
            return -dist / self.temperature
        scores = a @ b.transpose(-1, -2)
        if self.kind == "gaussian":
            scores = scores - 1.0
        return scores / self.temperature


# ----------------------------------------------------------------------------------------------
# Modules


class SeparableCritic(nn.Module):
    """``S[i, j] = score(g(x_i), h(y_j))`` for encoders ``g``, ``h`` (identity when ``None``)."""

    def __init__(self, encoder_x: nn.Module | None = None, encoder_y: nn.Module | None = None):
        super().__init__()
        self.encoder_x = encoder_x if encoder_x is not None else nn.Identity()
        self.encoder_y = encoder_y if encoder_y is not None else self.encoder_x

    def embed_x(self, x: Tensor) -> Tensor:
        """``g(x): [K, d]``."""
        return self.encoder_x(x)

    def embed_y(self, y: Tensor) -> Tensor:
        """``h(y): [K, d]``."""
        return self.encoder_y(y)

    def score(self, gx: Tensor, hy: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def kernel_form(self, gx: Tensor, hy: Tensor) -> tuple[Tensor, Tensor, Similarity] | None:
        """``(a, b, similarity)`` with ``score(gx, hy) = similarity(a, b)``, for the tiled
        kernels of :mod:`infomax.kernels`, or ``None`` when the score is not an inner product
        (``lp``)."""
        return None

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Score matrix ``S: [K, K]`` (``[K, M]`` when ``y`` has ``M`` rows)."""
        return self.score(self.embed_x(x), self.embed_y(y))

    def pair_scores(self, x: Tensor, y: Tensor) -> Tensor:
        """Diagonal only, ``S_ii: [K]``, without building the matrix."""
        gx, hy = self.embed_x(x), self.embed_y(y)
        # one batched call on [K, 1, d] x [K, 1, d] -> [K, 1, 1]
        return self.score(gx.unsqueeze(1), hy.unsqueeze(1)).reshape(-1)


@CRITICS.register("dot")
class DotCritic(SeparableCritic):
    """``S = g(x) h(y)ᵀ``: one GEMM for the whole matrix."""

    def score(self, gx: Tensor, hy: Tensor) -> Tensor:
        return dot_scores(gx, hy)

    def kernel_form(self, gx: Tensor, hy: Tensor) -> tuple[Tensor, Tensor, Similarity]:
        return gx, hy, Similarity("dot")


@CRITICS.register("cosine")
class CosineCritic(SeparableCritic):
    """``S = ĝ(x) ĥ(y)ᵀ / τ``; ``τ`` optionally learnable (stored as ``log τ``)."""

    def __init__(
        self,
        encoder_x: nn.Module | None = None,
        encoder_y: nn.Module | None = None,
        temperature: float = 0.5,
        learn_temperature: bool = False,
    ) -> None:
        super().__init__(encoder_x, encoder_y)
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        log_t = torch.tensor(math.log(temperature))
        if learn_temperature:
            self.log_temperature = nn.Parameter(log_t)
        else:
            self.register_buffer("log_temperature", log_t)

    @property
    def temperature(self) -> Tensor:
        return self.log_temperature.exp()

    @property
    def similarity(self) -> Similarity:
        return Similarity("cosine", self.temperature)

    def score(self, gx: Tensor, hy: Tensor) -> Tensor:
        return self.similarity(gx, hy)

    def kernel_form(self, gx: Tensor, hy: Tensor) -> tuple[Tensor, Tensor, Similarity]:
        return gx, hy, self.similarity


@CRITICS.register("gaussian")
class GaussianCritic(SeparableCritic):
    """f-Gaussian similarity ``S = (ĝᵀĥ − 1)/σ²`` (SPEC §1, f-MICL): ``Similarity("gaussian",
    σ²)``."""

    def __init__(
        self,
        encoder_x: nn.Module | None = None,
        encoder_y: nn.Module | None = None,
        sigma: float = 1.0,
    ) -> None:
        super().__init__(encoder_x, encoder_y)
        if sigma <= 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        self.sigma = float(sigma)
        self.similarity = Similarity("gaussian", self.sigma**2)

    def score(self, gx: Tensor, hy: Tensor) -> Tensor:
        return self.similarity(gx, hy)

    def kernel_form(self, gx: Tensor, hy: Tensor) -> tuple[Tensor, Tensor, Similarity]:
        return gx, hy, self.similarity


@CRITICS.register("lp")
class LpCritic(SeparableCritic):
    """``S = −‖g(x) − h(y)‖_p^α / τ`` for box / Laplace latents (SPEC §5)."""

    def __init__(
        self,
        encoder_x: nn.Module | None = None,
        encoder_y: nn.Module | None = None,
        p: float = 1.0,
        alpha: float | None = None,
        temperature: float = 1.0,
    ) -> None:
        super().__init__(encoder_x, encoder_y)
        if p <= 0 or temperature <= 0:
            raise ValueError(f"p and temperature must be > 0, got p={p}, temperature={temperature}")
        self.p, self.alpha, self.temperature = float(p), alpha, float(temperature)

    def score(self, gx: Tensor, hy: Tensor) -> Tensor:
        return Similarity("lp", self.temperature, p=self.p, exponent=self.alpha)(gx, hy)


class WithMarginalTerm(nn.Module):
    """``[g(x), t(x), 1]`` (``side="x"``) or ``[h(y), 1, t(y)]`` (``side="y"``): an embedding
    whose inner product with the other side's adds the marginal terms ``a(x) + b(y)``."""

    def __init__(self, encoder: nn.Module, term: nn.Module, side: str) -> None:
        super().__init__()
        if side not in ("x", "y"):
            raise ValueError(f"side must be 'x' or 'y', got {side!r}")
        self.encoder, self.term, self.side = encoder, term, side

    def forward(self, v: Tensor) -> Tensor:
        emb, term = self.encoder(v), self.term(v)
        one = torch.ones_like(term)
        return torch.cat([emb, term, one] if self.side == "x" else [emb, one, term], dim=-1)


@CRITICS.register("dot-additive")
class AdditiveDotCritic(DotCritic):
    """``S = g(x) h(y)ᵀ + a(x) + b(y)``: a dot critic plus one MLP term per side, so the
    marginal parts of ``log p(x, y) / (p(x) p(y))`` (e.g. ``−x²``-type terms of a Gaussian)
    need not be squeezed into the product. Still one GEMM: the encoders return ``[g, a, 1]``
    and ``[h, 1, b]`` (:class:`WithMarginalTerm`), so the tiled kernels apply unchanged."""


@CRITICS.register("bilinear")
class BilinearCritic(SeparableCritic):
    """``S = g(x) W h(y)ᵀ`` with a learned ``W: [d, d]`` (initialised to the identity)."""

    def __init__(
        self,
        encoder_x: nn.Module | None = None,
        encoder_y: nn.Module | None = None,
        embed_dim: int = 32,
    ) -> None:
        super().__init__(encoder_x, encoder_y)
        self.weight = nn.Parameter(torch.eye(embed_dim))

    def score(self, gx: Tensor, hy: Tensor) -> Tensor:
        return gx @ self.weight @ hy.transpose(-1, -2)

    def kernel_form(self, gx: Tensor, hy: Tensor) -> tuple[Tensor, Tensor, Similarity]:
        return gx @ self.weight, hy, Similarity("dot")


@CRITICS.register("joint")
class JointCritic(nn.Module):
    """``S[i, j] = MLP([x_i, y_j])`` on all ``K²`` pairs: most expressive, ``O(K²)`` calls."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        k, m = x.shape[0], y.shape[0]
        pairs = torch.cat(
            [x.unsqueeze(1).expand(k, m, x.shape[1]), y.unsqueeze(0).expand(k, m, y.shape[1])],
            dim=-1,
        )
        return self.net(pairs).reshape(k, m)

    def pair_scores(self, x: Tensor, y: Tensor) -> Tensor:
        """Diagonal only, ``S_ii: [K]``."""
        return self.net(torch.cat([x, y], dim=-1)).reshape(-1)


def build_critic(
    name: str,
    dim_x: int,
    dim_y: int,
    *,
    hidden: int = 256,
    layers: int = 2,
    embed_dim: int = 32,
    act: str = "relu",
    **options: float | bool,
) -> nn.Module:
    """Critic ``name`` (see ``CRITICS.names()``) with MLP encoders of ``layers`` hidden layers.

    Separable critics get ``g: dim_x -> embed_dim`` and ``h: dim_y -> embed_dim``; ``joint`` gets
    one MLP ``dim_x + dim_y -> 1``. ``options`` go to the critic (``temperature``, ``sigma``,
    ``p``, ``alpha``, ``learn_temperature``); an unknown option is a ``ValueError``.
    """
    cls = CRITICS.get(name)
    if dim_x < 1 or dim_y < 1:
        raise ValueError(f"dimensions must be >= 1, got dim_x={dim_x}, dim_y={dim_y}")
    if cls is JointCritic:
        if options:
            raise ValueError(f"critic 'joint' takes no options, got {sorted(options)}")
        return JointCritic(mlp([dim_x + dim_y, *[hidden] * layers, 1], act=act))
    enc_x: nn.Module = mlp([dim_x, *[hidden] * layers, embed_dim], act=act)
    enc_y: nn.Module = mlp([dim_y, *[hidden] * layers, embed_dim], act=act)
    if cls is AdditiveDotCritic:
        enc_x = WithMarginalTerm(enc_x, mlp([dim_x, *[hidden] * layers, 1], act=act), "x")
        enc_y = WithMarginalTerm(enc_y, mlp([dim_y, *[hidden] * layers, 1], act=act), "y")
    extra: dict[str, object] = dict(options)
    if cls is BilinearCritic:
        extra["embed_dim"] = embed_dim
    try:
        return cls(enc_x, enc_y, **extra)
    except TypeError as err:
        raise ValueError(
            f"critic {name!r} does not take options {sorted(options)}: {err}"
        ) from None
