"""Linear probe, weighted kNN, alignment and uniformity of frozen features."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _check_features(feats: Tensor, labels: Tensor, name: str) -> None:
    if feats.ndim != 2 or labels.ndim != 1 or feats.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{name}: features must be [n, d] and labels [n], got {tuple(feats.shape)} and "
            f"{tuple(labels.shape)}"
        )
    if not torch.isfinite(feats).all():
        raise ValueError(f"{name}: features contain NaN/Inf")


@torch.no_grad()
def extract_features(
    encoder: nn.Module,
    images: Tensor,
    *,
    transform: Callable[[Tensor], Tensor] | None = None,
    batch_size: int = 1024,
    device: torch.device | str | None = None,
) -> Tensor:
    """``encoder(transform(images))`` for ``images: [N, C, H, W]`` in batches -> ``float [N, d]``.

    ``uint8`` images are scaled to ``[0, 1]`` first; the encoder is put in eval mode and restored.
    """
    dev = torch.device(device) if device is not None else next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    out = []
    for start in range(0, images.shape[0], batch_size):
        x = images[start : start + batch_size].to(dev)
        x = x.float().div(255.0) if x.dtype == torch.uint8 else x.float()
        if transform is not None:
            x = transform(x)
        out.append(encoder(x).float().cpu())
    encoder.train(was_training)
    return torch.cat(out)


def linear_probe(
    train_feats: Tensor,
    train_labels: Tensor,
    test_feats: Tensor,
    test_labels: Tensor,
    *,
    weight_decay: float = 1e-4,
    max_iter: int = 200,
) -> float:
    """Test accuracy of multinomial logistic regression on standardised frozen features.

    Minimises ``mean_i CE(W x_i + b, y_i) + (λ/2)‖W‖²`` (``λ = weight_decay``) with full-batch
    L-BFGS (strong-Wolfe line search, ``max_iter`` iterations) in float32; features are
    standardised with the training mean / std. ``feats: [n, d]``, ``labels: [n]``.
    """
    _check_features(train_feats, train_labels, "train")
    _check_features(test_feats, test_labels, "test")
    xtr, xte = train_feats.float(), test_feats.float()
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    n_classes = int(max(int(train_labels.max()), int(test_labels.max())) + 1)
    with torch.enable_grad():
        w = torch.zeros(xtr.shape[1], n_classes, requires_grad=True)
        b = torch.zeros(n_classes, requires_grad=True)
        opt = torch.optim.LBFGS(
            [w, b], lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe"
        )

        def closure() -> Tensor:
            opt.zero_grad()
            loss = F.cross_entropy(xtr @ w + b, train_labels) + 0.5 * weight_decay * w.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)  # type: ignore[arg-type]
    with torch.no_grad():
        pred = (xte @ w + b).argmax(1)
    return float((pred == test_labels).float().mean())


def few_label_probe(
    train_feats: Tensor,
    train_labels: Tensor,
    test_feats: Tensor,
    test_labels: Tensor,
    *,
    per_class: int,
    draws: int = 10,
    seed: int = 0,
) -> tuple[float, float]:
    """Mean and standard deviation over ``draws`` of the :func:`linear_probe` test accuracy
    when it sees only ``per_class`` labelled training examples of each class (drawn without
    replacement; the draws depend only on ``train_labels`` and ``seed``, so two feature sets
    of the same images are compared on the same labels). ``feats: [n, d]``, ``labels: [n]``.

    >>> x = torch.cat([torch.randn(50, 2) - 4, torch.randn(50, 2) + 4])
    >>> y = torch.arange(2).repeat_interleave(50)
    >>> few_label_probe(x, y, x, y, per_class=1, draws=3)
    (1.0, 0.0)
    """
    _check_features(train_feats, train_labels, "train")
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"per_class must be an integer >= 1, got {per_class!r}")
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ValueError(f"draws must be an integer >= 1, got {draws!r}")
    classes, counts = torch.unique(train_labels, return_counts=True)
    if int(counts.min()) < per_class:
        c = int(classes[counts.argmin()])
        raise ValueError(
            f"class {c} has {int(counts.min())} training examples, fewer than per_class={per_class}"
        )
    members = [torch.nonzero(train_labels == c).flatten() for c in classes]
    gen = torch.Generator().manual_seed(seed)
    accs = []
    for _ in range(draws):
        picks = [m[torch.randperm(len(m), generator=gen)[:per_class]] for m in members]
        idx = torch.cat(picks)
        accs.append(linear_probe(train_feats[idx], train_labels[idx], test_feats, test_labels))
    acc = torch.tensor(accs)
    return float(acc.mean()), float(acc.std()) if draws > 1 else 0.0


@torch.no_grad()
def knn_accuracy(
    train_feats: Tensor,
    train_labels: Tensor,
    test_feats: Tensor,
    test_labels: Tensor,
    *,
    k: int = 200,
    temperature: float = 0.1,
    chunk: int = 1024,
) -> float:
    """Weighted kNN accuracy: class score ``Σ_{j ∈ top-k} exp(cos(x, x_j)/T) [y_j = c]``.

    ``k`` is capped at the number of training samples; test features are processed in chunks
    of ``chunk`` rows, so memory is ``O(chunk · n_train)``.
    """
    _check_features(train_feats, train_labels, "train")
    _check_features(test_feats, test_labels, "test")
    if k < 1 or temperature <= 0:
        raise ValueError(f"need k >= 1 and temperature > 0, got k={k}, T={temperature}")
    k = min(k, train_feats.shape[0])
    n_classes = int(max(int(train_labels.max()), int(test_labels.max())) + 1)
    bank = F.normalize(train_feats.float(), dim=1)
    correct = 0
    for start in range(0, test_feats.shape[0], chunk):
        q = F.normalize(test_feats[start : start + chunk].float(), dim=1)
        sim, idx = (q @ bank.T).topk(k, dim=1)
        weights = (sim / temperature).exp()
        votes = torch.zeros(q.shape[0], n_classes)
        votes.scatter_add_(1, train_labels[idx], weights)
        correct += int((votes.argmax(1) == test_labels[start : start + chunk]).sum())
    return correct / test_feats.shape[0]


def alignment(z1: Tensor, z2: Tensor, alpha: float = 2.0) -> Tensor:
    """``mean_i ‖ẑ1_i − ẑ2_i‖₂^α`` for positive pairs ``z1, z2: [n, d]`` (unit-normalised)."""
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"z1 and z2 must both be [n, d], got {tuple(z1.shape)}, {tuple(z2.shape)}")
    a, b = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    return (a - b).norm(dim=1).pow(alpha).mean()


def uniformity(z: Tensor, t: float = 2.0) -> Tensor:
    """``log mean_{i<j} exp(−t ‖ẑ_i − ẑ_j‖²)`` for ``z: [n, d]`` (unit-normalised), ``n ≥ 2``."""
    if z.ndim != 2 or z.shape[0] < 2:
        raise ValueError(f"z must be [n, d] with n >= 2, got {tuple(z.shape)}")
    sq = torch.pdist(F.normalize(z, dim=1), p=2).pow(2)
    return torch.logsumexp(-t * sq, dim=0) - torch.log(torch.tensor(float(sq.numel())))
