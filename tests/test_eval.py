"""Linear probe, weighted kNN, alignment and uniformity against brute-force references."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from infomax.eval import alignment, extract_features, knn_accuracy, linear_probe, uniformity


def _knn_reference(ftr, ytr, fte, k, t, n_classes):
    ftr = torch.nn.functional.normalize(ftr, dim=1)
    fte = torch.nn.functional.normalize(fte, dim=1)
    preds = []
    for q in fte:
        sims = [(float(q @ f), int(y)) for f, y in zip(ftr, ytr, strict=True)]
        sims.sort(key=lambda p: -p[0])
        votes = [0.0] * n_classes
        for s, y in sims[:k]:
            votes[y] += math.exp(s / t)
        preds.append(max(range(n_classes), key=lambda c: votes[c]))
    return torch.tensor(preds)


def test_knn_matches_loop_reference():
    torch.manual_seed(0)
    ftr, ytr = torch.randn(60, 5), torch.randint(0, 3, (60,))
    fte, yte = torch.randn(17, 5), torch.randint(0, 3, (17,))
    for k in (1, 7, 200):
        pred = _knn_reference(ftr, ytr, fte, min(k, 60), 0.1, 3)
        expected = float((pred == yte).float().mean())
        assert knn_accuracy(ftr, ytr, fte, yte, k=k, temperature=0.1, chunk=5) == pytest.approx(
            expected
        )


def test_alignment_and_uniformity_match_formulas():
    torch.manual_seed(0)
    z1, z2 = torch.randn(20, 4, dtype=torch.float64), torch.randn(20, 4, dtype=torch.float64)
    a, b = z1 / z1.norm(dim=1, keepdim=True), z2 / z2.norm(dim=1, keepdim=True)
    ref_align = sum(float((a[i] - b[i]).norm() ** 2) for i in range(20)) / 20
    assert float(alignment(z1, z2)) == pytest.approx(ref_align)
    pairs = [
        math.exp(-2 * float((a[i] - a[j]).norm() ** 2)) for i in range(20) for j in range(i + 1, 20)
    ]
    assert float(uniformity(z1)) == pytest.approx(math.log(sum(pairs) / len(pairs)))
    # identical points: uniformity 0 (worst); alignment of a set with itself is 0
    assert float(uniformity(torch.ones(5, 3))) == pytest.approx(0.0, abs=1e-6)


def test_linear_probe_agrees_with_sklearn():
    from sklearn.linear_model import LogisticRegression

    torch.manual_seed(0)
    centers = torch.randn(4, 8) * 1.5
    y = torch.randint(0, 4, (600,))
    x = centers[y] + torch.randn(600, 8)
    acc = linear_probe(x[:400], y[:400], x[400:], y[400:])
    ref = LogisticRegression(max_iter=2000).fit(x[:400].numpy(), y[:400].numpy())
    ref_acc = float((ref.predict(x[400:].numpy()) == y[400:].numpy()).mean())
    assert abs(acc - ref_acc) <= 0.02
    sep = torch.cat([torch.zeros(50, 2), torch.ones(50, 2) * 5]) + 0.1 * torch.randn(100, 2)
    lab = torch.cat([torch.zeros(50), torch.ones(50)]).long()
    assert linear_probe(sep, lab, sep, lab) == 1.0


def test_extract_features_and_errors():
    enc = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    enc.train()
    imgs = torch.randint(0, 256, (10, 1, 2, 2), dtype=torch.uint8)
    feats = extract_features(enc, imgs, batch_size=3)
    torch.testing.assert_close(feats, enc(imgs.float() / 255).detach())
    assert enc.training
    with pytest.raises(ValueError):
        knn_accuracy(
            torch.randn(5, 2), torch.zeros(4).long(), torch.randn(3, 2), torch.zeros(3).long()
        )
    with pytest.raises(ValueError):
        linear_probe(
            torch.full((4, 2), float("nan")),
            torch.zeros(4).long(),
            torch.randn(2, 2),
            torch.zeros(2).long(),
        )
    with pytest.raises(ValueError):
        uniformity(torch.randn(1, 3))
