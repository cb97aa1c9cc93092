"""The generic loop: config validation, schedule, LARS, bitwise resume, divergence handling,
and the SSL front door / CLI end to end on the bundled digits."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from infomax.augment import Normalize, build_augment, to_float
from infomax.data import load_dataset
from infomax.models import build_encoder
from infomax.ssl import SimCLR
from infomax.ssl.trainer import EpochBatches
from infomax.train import (
    LARS,
    DivergedError,
    TrainConfig,
    fit,
    load_checkpoint,
    lr_factor,
)


def test_config_validation():
    for bad in (
        {"epochs": 0},
        {"lr": -1.0},
        {"optimizer": "adam"},
        {"schedule": "step"},
        {"warmup_epochs": 20.0},
        {"grad_clip": 0.0},
        {"device": "tpu"},
        {"seed": -1},
    ):
        with pytest.raises(ValueError):
            TrainConfig(**bad)


def test_lr_schedule_warmup_then_cosine():
    cfg = TrainConfig(epochs=10, warmup_epochs=2.0)
    assert lr_factor(1.0, cfg) == pytest.approx(0.5)
    assert lr_factor(2.0, cfg) == pytest.approx(1.0)
    assert lr_factor(6.0, cfg) == pytest.approx(0.5)
    assert lr_factor(10.0, cfg) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(5.0, TrainConfig(epochs=10, schedule="constant")) == 1.0


def test_lars_step_matches_hand_computation():
    w = nn.Parameter(torch.tensor([[3.0, 4.0]]))
    b = nn.Parameter(torch.tensor([1.0]))
    opt = LARS([w, b], lr=0.1, momentum=0.0, weight_decay=0.0, eta=0.01)
    w.grad, b.grad = torch.tensor([[0.0, 2.0]]), torch.tensor([0.5])
    opt.step()
    trust = 0.01 * 5.0 / 2.0
    torch.testing.assert_close(w.detach(), torch.tensor([[3.0, 4.0 - 0.1 * trust * 2.0]]))
    torch.testing.assert_close(b.detach(), torch.tensor([1.0 - 0.05]))  # 1-d: no adaptation


def _simclr_setup():
    torch.manual_seed(0)
    ds = load_dataset("digits")
    images = ds.train_x[:96]
    enc = build_encoder("mlp", 1, 8, width=16)
    model = SimCLR(enc, proj_dim=8, proj_hidden=16)
    aug, norm = build_augment("digits"), Normalize(ds.mean, ds.std)

    def loss_fn(m, batch):
        x = to_float(batch)
        return m(norm(aug(x)), norm(aug(x)))

    return model, (lambda e: EpochBatches(images, 32, 0, e)), loss_fn


def test_resume_is_bitwise_identical(tmp_path):
    cfg = TrainConfig(epochs=2, lr=1e-2, warmup_epochs=0.5, progress=False)
    model, batches, loss_fn = _simclr_setup()
    fit(model, batches, loss_fn, cfg, out_dir=tmp_path / "full")
    full = {k: v.clone() for k, v in model.state_dict().items()}

    model2, batches2, loss_fn2 = _simclr_setup()

    class Crash(RuntimeError):
        pass

    def crash_in_epoch_two(m, step):
        if step == 4:  # 3 steps per epoch: first step of epoch 2
            raise Crash

    with pytest.raises(Crash):
        fit(
            model2,
            batches2,
            loss_fn2,
            cfg,
            out_dir=tmp_path / "split",
            after_step=crash_in_epoch_two,
        )
    assert load_checkpoint(tmp_path / "split" / "checkpoint.pt")["epoch"] == 1
    torch.manual_seed(1234)  # disturb the global RNG: resume must restore it
    model3, batches3, loss_fn3 = _simclr_setup()
    res = fit(model3, batches3, loss_fn3, cfg, out_dir=tmp_path / "split", resume=True)
    assert res.epochs_done == 2 and [h["epoch"] for h in res.history] == [1, 2]
    for k, v in model3.state_dict().items():
        assert torch.equal(v, full[k]), k


def test_nonfinite_loss_stops_and_keeps_checkpoint(tmp_path):
    net = nn.Linear(2, 1)
    data = [torch.randn(4, 2)]

    def loss_fn(m, x):
        loss = m(x).pow(2).mean()
        return loss * math.nan if m.bad else loss

    net.bad = False

    def on_epoch_end(epoch, m):
        m.bad = True
        return {}

    cfg = TrainConfig(epochs=3, progress=False)
    with pytest.raises(DivergedError, match=r"epoch 2, step 1.*checkpoint.*epoch 1.*kept"):
        fit(net, lambda e: data, loss_fn, cfg, out_dir=tmp_path, on_epoch_end=on_epoch_end)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1 and all(torch.isfinite(v).all() for v in state["model"].values())
    with pytest.raises(ValueError, match="no checkpoint"):
        fit(nn.Linear(2, 1), lambda e: data, loss_fn, cfg, out_dir=tmp_path / "none", resume=True)


def test_fit_reduces_a_simple_loss():
    torch.manual_seed(0)
    x = torch.randn(64, 3)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]])
    net = nn.Linear(3, 1)
    res = fit(
        net,
        lambda e: [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)],
        lambda m, b: (m(b[0]) - b[1]).pow(2).mean(),
        TrainConfig(epochs=30, lr=0.05, optimizer="sgd", progress=False),
    )
    assert res.history[-1]["loss"] < 0.01 * res.history[0]["loss"]
    assert res.history[0]["images_per_s"] > 0


def test_train_ssl_cli_and_eval(tmp_path):
    from typer.testing import CliRunner

    from infomax.cli import app

    runner = CliRunner()
    out = tmp_path / "run"
    args = ["train", "mocov2", "--data", "digits", "--objective", "js", "--similarity", "gaussian"]
    args += ["--epochs", "1", "--batch-size", "64", "--train-subset", "256", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "results.json").read_text())
    assert saved["config"]["method"] == "mocov2" and saved["seed"] == 0
    assert saved["config"]["objective"] == "js"
    assert "torch" in saved["versions"] and len(saved["curves"]) == 1
    assert (out / "history.csv").is_file() and (out / "curves.png").is_file()
    ev = runner.invoke(app, ["eval", str(out / "checkpoint.pt"), "--json"])
    assert ev.exit_code == 0, ev.output
    metrics = json.loads(ev.output)
    assert metrics["linear_probe_acc"] == pytest.approx(saved["results"]["linear_probe_acc"])
    assert metrics["knn_acc"] == pytest.approx(saved["results"]["knn_acc"])
    bad = runner.invoke(
        app, ["train", "simclr", "--divergence", "nope", "--out", str(tmp_path / "x")]
    )  # the option's earlier name still works
    assert bad.exit_code == 2 and "valid" in bad.output and "'nope'" in bad.output
    missing = runner.invoke(
        app, ["train", "simclr", "--data", "mnist", "--data-dir", str(tmp_path)]
    )
    assert missing.exit_code == 2 and "train-images-idx3-ubyte.gz" in missing.output


def test_config_rejects_non_finite_weight_decay():
    for bad in (math.nan, math.inf, -1e-6):
        with pytest.raises(ValueError, match="weight_decay"):
            TrainConfig(weight_decay=bad)


def test_resume_into_another_model_is_a_one_line_value_error(tmp_path):
    data = [torch.randn(4, 2)]

    def loss_fn(m, x):
        return m(x[:, : m.in_features] if hasattr(m, "in_features") else x).pow(2).mean()

    cfg = TrainConfig(epochs=1, progress=False)
    fit(nn.Linear(2, 1), lambda e: data, loss_fn, cfg, out_dir=tmp_path)
    with pytest.raises(ValueError) as err:
        fit(nn.Linear(3, 1), lambda e: data, loss_fn, cfg, out_dir=tmp_path, resume=True)
    msg = str(err.value)
    assert "does not match the model: 0 missing, 0 unexpected, 1 shape mismatches" in msg
    assert "weight saved [1, 2] vs model [1, 3]" in msg and "\n" not in msg
    with pytest.raises(ValueError, match="2 missing, 2 unexpected, 0 shape mismatches"):
        fit(
            nn.Sequential(nn.Linear(2, 1)),
            lambda e: data,
            loss_fn,
            cfg,
            out_dir=tmp_path,
            resume=True,
        )
    torch.save({"model": {}}, tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match="not a training checkpoint"):
        fit(nn.Linear(2, 1), lambda e: data, loss_fn, cfg, out_dir=tmp_path, resume=True)


# --- callbacks ----------------------------------------------------------------------------------


def _toy(seed: int = 0):
    """A linear regression, 4 batches per epoch (deterministic in the epoch)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 3, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.1 * torch.randn(64, 1, generator=g)

    def batches(epoch):
        perm = torch.randperm(64, generator=torch.Generator().manual_seed(epoch))
        return [(x[perm[i : i + 16]], y[perm[i : i + 16]]) for i in range(0, 64, 16)]

    def loss_fn(m, b):
        return (m(b[0]) - b[1]).pow(2).mean()

    torch.manual_seed(seed)
    return nn.Linear(3, 1), batches, loss_fn


def test_early_stopping_restores_the_best_state():
    from infomax.train import BestState, EarlyStopping, Evaluate

    net, batches, loss_fn = _toy()
    scores = iter([1.0, 3.0, 2.0, float("nan"), 2.5, 9.0])  # best at epoch 2, then 3 misses
    seen = {}

    def evaluate(state):
        seen[state.epoch] = {k: v.clone() for k, v in state.model.state_dict().items()}
        return {"score": next(scores)}

    best = BestState("score")
    cfg = TrainConfig(epochs=6, lr=0.05, progress=False)
    callbacks = [Evaluate(evaluate), best, EarlyStopping("score", patience=3)]
    res = fit(net, batches, loss_fn, cfg, callbacks=callbacks)
    assert res.epochs_done == 5 and res.steps == 20  # stopped after epoch 5 (3 without a gain)
    assert best.value == 3.0 and best.step == 8 and best.record["epoch"] == 2
    for k, v in net.state_dict().items():
        assert torch.equal(v, seen[2][k]), k


def test_ema_callback_is_the_running_average_of_the_weights():
    from infomax.train import EMA, AfterStep

    net, batches, loss_fn = _toy()
    decay = 0.8
    avg = {k: v.detach().clone() for k, v in net.named_parameters()}

    def track(m, step):
        for k, p in m.named_parameters():
            avg[k] = decay * avg[k] + (1 - decay) * p.detach()

    ema = EMA(decay)
    fit(
        net,
        batches,
        loss_fn,
        TrainConfig(epochs=2, progress=False),
        callbacks=[AfterStep(track), ema],
    )
    for k, p in net.named_parameters():  # restored into the model at the end
        torch.testing.assert_close(p.detach(), avg[k])


def test_step_based_training_metrics_and_progress_callback():
    """``total_steps`` ends training mid-epoch and drives the schedule; ``loss_fn``'s metrics
    are averaged per epoch; the progress callback is called once per step, with the epoch's
    metric on its last step."""
    from infomax.train import Evaluate, Progress

    net, batches, loss_fn = _toy()
    calls = []
    values = iter(range(100))

    def loss_with_metric(m, b):
        return loss_fn(m, b), {"twice": 2 * loss_fn(m, b).detach()}

    cfg = TrainConfig(epochs=3, lr=0.05, schedule="cosine", progress=False)
    res = fit(
        net,
        batches,
        loss_with_metric,
        cfg,
        callbacks=[
            Evaluate(lambda s: {"m": float(next(values))}),
            Progress(enabled=False, fn=lambda s, v: calls.append((s, v)), metric="m"),
        ],
        total_steps=10,
    )
    assert res.steps == 10 and [h["global_step"] for h in res.history] == [4, 8, 10]
    assert [h["steps"] for h in res.history] == [4, 4, 2]
    for h in res.history:
        assert h["twice"] == pytest.approx(2 * h["loss"])
    assert calls == [(s, {4: 0.0, 8: 1.0, 10: 2.0}.get(s)) for s in range(1, 11)]
    # the learning rate of step s (0-based) is the cosine at s / total_steps
    assert res.history[-1]["lr"] == pytest.approx(0.05 * 0.5 * (1 + math.cos(math.pi * 9 / 10)))


def test_grad_clip_per_module_clips_each_child_on_its_own():
    from infomax.train import GradClip, TrainState

    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    for p, scale in zip(model.parameters(), (100.0, 100.0, 0.01, 0.01), strict=True):
        p.grad = torch.full_like(p, scale)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    state = TrainState(
        model, opt, torch.amp.GradScaler("cuda", enabled=False), TrainConfig(), torch.device("cpu")
    )
    small = [p.grad.clone() for p in model[1].parameters()]
    GradClip(1.0, per_module=True).on_after_backward(state)
    big = torch.cat([p.grad.flatten() for p in model[0].parameters()])
    assert big.norm() == pytest.approx(1.0, rel=1e-5)
    for p, before in zip(model[1].parameters(), small, strict=True):
        assert torch.equal(p.grad, before)  # under the threshold: untouched


def test_resume_with_stateful_callbacks_is_bitwise_exact(tmp_path):
    """EMA, best state and early stopping are checkpointed: an interrupted run resumed gives
    the same weights, the same average and the same selection as an uninterrupted one."""
    from infomax.train import EMA, AfterStep, BestState, EarlyStopping, Evaluate

    def run(out, crash_at=None, resume=False):
        net, batches, loss_fn = _toy()

        def score(state):
            w = state.model.weight.detach()
            return {"score": -float((w - torch.tensor([[1.0, -2.0, 0.5]])).norm())}

        def crash(m, step):
            if step == crash_at:
                raise RuntimeError("crash")

        ema, best = EMA(0.9, restore=False), BestState("score")
        callbacks = [AfterStep(crash), Evaluate(score), best, EarlyStopping("score", 2), ema]
        cfg = TrainConfig(epochs=4, lr=0.05, progress=False)
        fit(net, batches, loss_fn, cfg, out_dir=out, resume=resume, callbacks=callbacks)
        return net, ema, best

    full, ema_full, best_full = run(tmp_path / "full")
    with pytest.raises(RuntimeError, match="crash"):
        run(tmp_path / "split", crash_at=10)  # in epoch 3
    torch.manual_seed(99)
    resumed, ema_res, best_res = run(tmp_path / "split", resume=True)
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    for k, v in ema_full.shadow.items():
        assert torch.equal(v, ema_res.shadow[k]), k
    assert best_full.step == best_res.step and best_full.value == best_res.value
    saved = load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    assert set(saved["callbacks"]) == {"ema", "best_state", "early_stopping"}
