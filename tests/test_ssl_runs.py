"""SSL run folders end to end on digits: settings validation, one kNN code path for the curve
and the final score, resume / overwrite protection and checkpoint-vs-config mismatches."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from infomax.data import ImageDataset, load_dataset
from infomax.ssl import SSLConfig, evaluate_checkpoint, train_ssl, trainer
from infomax.train import load_checkpoint


def _cfg(**kw: object) -> SSLConfig:
    base: dict[str, object] = {
        "method": "simclr",
        "width": 16,
        "proj_dim": 8,
        "proj_hidden": 16,
        "epochs": 1,
        "batch_size": 64,
        "train_subset": 128,
        "knn_k": 20,
        "progress": False,
        "device": "cpu",
    }
    base.update(kw)
    return SSLConfig(**base)  # type: ignore[arg-type]


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file of ``folder`` with its bytes and modification time."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


# --- settings validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"threads": 0},
        {"threads": -2},
        {"threads": 1.5},
        {"width": 0},
        {"width": -8},
        {"batch_size": 0},
        {"batch_size": -64},
        {"epochs": 0},
        {"epochs": -1},
        {"train_subset": 0},
        {"train_subset": -5},
        {"probe_subset": 0},
        {"proj_dim": 0},
        {"proj_hidden": -1},
        {"queue_size": 0},
        {"knn_k": 0},
        {"eval_every": -1},
        {"eval_every": 1.5},
        {"eval_every": True},
        {"knn_temperature": 0.0},
        {"knn_temperature": math.nan},
        {"knn_temperature": math.inf},
        {"temperature": math.inf},
        {"weight_decay": math.nan},
        {"weight_decay": math.inf},
        {"lr": 0.0},
        {"warmup_epochs": math.nan},
        {"momentum": 1.0},
        {"seed": -1},
        {"amp": "yes"},
        {"augment": 0},
        {"progress": None},
        {"memory_efficient": "x"},
        {"data_dir": 3},
    ],
)
def test_config_rejects_bad_values_with_a_value_error(bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name):
        SSLConfig(**bad)


def test_config_accepts_the_edges():
    cfg = SSLConfig(threads=1, width=2, batch_size=2, train_subset=2, epochs=1, eval_every=0)
    assert cfg.threads == 1
    assert SSLConfig(data_dir=Path("x")).data_dir == "x"


# --- one kNN code path --------------------------------------------------------------------------


def test_tracked_knn_is_the_final_knn(tmp_path, monkeypatch):
    """The ``eval_every`` curve and the final ``knn_acc`` use the same features (the whole
    probe bank, here > 10 000 images), ``k`` and temperature: the last point equals the score."""
    ds = load_dataset("digits")
    big = ImageDataset(
        "digits", ds.train_x.repeat(8, 1, 1, 1), ds.train_y.repeat(8), ds.test_x, ds.test_y
    )
    assert big.train_x.shape[0] > 10_000
    monkeypatch.setattr(trainer, "load_dataset", lambda name, data_dir=None: big)
    calls = []
    real = trainer.knn_accuracy

    def spy(f_bank, bank_y, f_test, test_y, **kw):
        calls.append((f_bank.shape[0], kw))
        return real(f_bank, bank_y, f_test, test_y, **kw)

    monkeypatch.setattr(trainer, "knn_accuracy", spy)
    cfg = _cfg(epochs=2, eval_every=1, knn_k=15, knn_temperature=0.05)
    metrics = train_ssl(cfg, tmp_path / "run")
    curve = json.loads((tmp_path / "run" / "results.json").read_text())["curves"]
    assert [h["epoch"] for h in curve if "knn_acc" in h] == [1, 2]
    assert curve[-1]["knn_acc"] == metrics["knn_acc"]
    assert calls == [(big.train_x.shape[0], {"k": 15, "temperature": 0.05})] * 3


# --- resume -------------------------------------------------------------------------------------


def test_refused_resume_leaves_the_run_untouched(tmp_path):
    run = tmp_path / "run"
    saved = train_ssl(_cfg(), run)
    before = _snapshot(run)
    expected = (
        "cannot resume: settings differ from the saved run: width 16 -> 32; "
        "use the saved settings or a new --out"
    )
    with pytest.raises(ValueError) as err:
        train_ssl(_cfg(width=32), run, resume=True)
    assert str(err.value) == expected
    assert _snapshot(run) == before
    with pytest.raises(ValueError, match="no checkpoint"):
        train_ssl(_cfg(), tmp_path / "none", resume=True)
    assert not (tmp_path / "none").exists()
    again = evaluate_checkpoint(run, device="cpu")  # the run is still readable
    assert again["knn_acc"] == pytest.approx(saved["knn_acc"])


def test_resume_with_other_settings_names_every_difference(tmp_path):
    run = tmp_path / "run"
    train_ssl(_cfg(), run)
    before = _snapshot(run)
    with pytest.raises(ValueError) as err:
        train_ssl(_cfg(objective="js", lr=0.002), run, resume=True)
    assert str(err.value) == (
        "cannot resume: settings differ from the saved run: objective 'infonce' -> 'js', "
        "lr 0.001 -> 0.002; use the saved settings or a new --out"
    )
    with pytest.raises(ValueError, match="knn_temperature 0.1 -> 0.2"):  # the curve's settings
        train_ssl(_cfg(knn_temperature=0.2), run, resume=True)
    assert _snapshot(run) == before
    # allowed: extend the run, change eval_every / progress / device / threads / data_dir
    threads = torch.get_num_threads()
    metrics = train_ssl(_cfg(epochs=2, eval_every=1, threads=threads), run, resume=True)
    assert metrics["epochs"] == 2
    state = load_checkpoint(run / "checkpoint.pt")
    assert state["epoch"] == 2 and state["ssl_config"]["epochs"] == 2
    with pytest.raises(ValueError, match="already trained 2 epochs"):
        train_ssl(_cfg(epochs=1), run, resume=True)


def test_resume_through_train_ssl_is_bitwise_exact(tmp_path, monkeypatch):
    train_ssl(_cfg(epochs=2), tmp_path / "full")
    full = load_checkpoint(tmp_path / "full" / "checkpoint.pt")["model"]

    class Crash(Exception):
        pass

    real, calls = trainer.evaluate_knn, []

    def crash_in_epoch_two(*args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise Crash
        return real(*args, **kw)

    monkeypatch.setattr(trainer, "evaluate_knn", crash_in_epoch_two)
    with pytest.raises(Crash):
        train_ssl(_cfg(epochs=2, eval_every=1), tmp_path / "split")
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "split" / "checkpoint.pt")["epoch"] == 1
    torch.manual_seed(4321)  # disturb the global generator: resume restores it
    train_ssl(_cfg(epochs=2, eval_every=1), tmp_path / "split", resume=True)
    resumed = load_checkpoint(tmp_path / "split" / "checkpoint.pt")["model"]
    assert resumed.keys() == full.keys()
    for k, v in full.items():
        assert torch.equal(v, resumed[k]), k


def test_resume_with_a_checkpoint_that_does_not_fit_is_one_line(tmp_path):
    run = tmp_path / "run"
    train_ssl(_cfg(), run)
    ckpt = run / "checkpoint.pt"
    state = load_checkpoint(ckpt)
    del state["model"][next(iter(state["model"]))]  # same settings, but a key is gone
    torch.save(state, ckpt)
    before = _snapshot(run)
    with pytest.raises(ValueError) as err:
        train_ssl(_cfg(), run, resume=True)
    msg = str(err.value)
    assert msg.startswith("cannot resume: checkpoint") and "\n" not in msg
    assert "1 missing, 0 unexpected, 0 shape mismatches" in msg
    assert _snapshot(run) == before


# --- overwrite ----------------------------------------------------------------------------------


def test_training_into_an_existing_run_needs_resume_or_overwrite(tmp_path):
    run = tmp_path / "run"
    train_ssl(_cfg(), run)
    before = _snapshot(run)
    with pytest.raises(ValueError, match=r"already holds a training run \(checkpoint.pt\)"):
        train_ssl(_cfg(seed=1), run)
    assert _snapshot(run) == before
    with pytest.raises(ValueError, match="exclude"):
        train_ssl(_cfg(), run, resume=True, overwrite=True)
    train_ssl(_cfg(seed=1), run, overwrite=True)
    assert load_checkpoint(run / "checkpoint.pt")["ssl_config"]["seed"] == 1
    assert json.loads((run / "ssl_config.json").read_text())["seed"] == 1


def test_a_run_saved_before_the_objective_rename_evaluates_and_resumes(tmp_path):
    """``SSLConfig.divergence`` became ``objective``: a run whose checkpoint and
    ``ssl_config.json`` still say ``divergence`` reads it as ``objective``."""
    run = tmp_path / "run"
    train_ssl(_cfg(objective="js"), run)
    ckpt, cfg_path = run / "checkpoint.pt", run / "ssl_config.json"
    state = load_checkpoint(ckpt)
    state["ssl_config"]["divergence"] = state["ssl_config"].pop("objective")
    torch.save(state, ckpt)
    values = json.loads(cfg_path.read_text())
    values["divergence"] = values.pop("objective")
    cfg_path.write_text(json.dumps(values))
    assert SSLConfig.from_dict(values).objective == "js"
    assert evaluate_checkpoint(run, device="cpu")["epochs"] == 1
    before = _snapshot(run)
    with pytest.raises(ValueError, match="objective 'js' -> 'infonce'"):  # the saved record
        train_ssl(_cfg(), run, resume=True)
    assert _snapshot(run) == before
    del state["ssl_config"]  # older still: the settings only in ssl_config.json
    torch.save(state, ckpt)
    before = _snapshot(run)
    with pytest.raises(ValueError, match="objective 'js' -> 'infonce'"):
        train_ssl(_cfg(), run, resume=True)
    assert _snapshot(run) == before
    assert train_ssl(_cfg(objective="js", epochs=2), run, resume=True)["epochs"] == 2
    assert load_checkpoint(ckpt)["ssl_config"]["objective"] == "js"
    assert json.loads(cfg_path.read_text())["objective"] == "js"


# --- evaluate_checkpoint ------------------------------------------------------------------------


def test_eval_names_the_settings_that_differ(tmp_path):
    run = tmp_path / "run"
    train_ssl(_cfg(), run)
    cfg_path = run / "ssl_config.json"
    values = json.loads(cfg_path.read_text())
    values["width"] = 32
    cfg_path.write_text(json.dumps(values))
    with pytest.raises(ValueError) as err:
        evaluate_checkpoint(run, device="cpu")
    msg = str(err.value)
    assert "width 16 -> 32" in msg and "\n" not in msg
    # a checkpoint that does not record its settings: the structural difference
    ckpt = run / "checkpoint.pt"
    state = load_checkpoint(ckpt)
    del state["ssl_config"]
    torch.save(state, ckpt)
    with pytest.raises(ValueError) as err:
        evaluate_checkpoint(ckpt, device="cpu")
    msg = str(err.value)
    assert "does not match the model built from ssl_config.json" in msg and "\n" not in msg
    assert "0 missing, 0 unexpected" in msg and "shape mismatches" in msg
    torch.save({"weights": 1}, ckpt)
    with pytest.raises(ValueError, match="not a training checkpoint"):
        evaluate_checkpoint(ckpt, device="cpu")


# --- presets ----------------------------------------------------------------------------------


def test_preset_values_are_the_base_and_options_override_them() -> None:
    from infomax.ssl import SSL_PRESETS

    mnist = SSLConfig.from_preset(data="mnist")
    assert mnist.preset == "mnist"
    for name, value in SSL_PRESETS.get("mnist").items():
        assert getattr(mnist, name) == value
    assert SSLConfig.from_preset(data="mnist", epochs=10).epochs == 10  # = the plain default
    assert SSLConfig.from_preset(data="digits") == SSLConfig(preset="digits")
    assert SSLConfig.from_preset(data="cifar10").preset is None  # no preset: the defaults
    assert SSLConfig.from_preset(None, data="mnist") == SSLConfig(data="mnist")
    recipe = SSLConfig.from_preset(
        "mnist", data="fashion-mnist"
    )  # one data set's recipe on another
    assert (recipe.data, recipe.epochs, recipe.preset) == ("fashion-mnist", 8, "mnist")
    with pytest.raises(ValueError, match="unknown SSL preset 'imagenet'.*mnist"):
        SSLConfig.from_preset("imagenet")
    with pytest.raises(ValueError, match=r"unknown SSL setting\(s\) \['epoch'\]"):
        SSLConfig.from_preset(epoch=3)


def test_results_json_records_the_preset_and_its_values(tmp_path) -> None:
    values = {k: v for k, v in vars(_cfg(data="digits")).items() if k != "preset"}
    cfg = SSLConfig.from_preset("digits", **values)
    train_ssl(cfg, tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["preset"] == {"name": "digits", "values": {}}
    assert saved["config"]["preset"] == "digits"


def test_cli_train_preset_given_options_win_even_at_their_default(monkeypatch, tmp_path) -> None:
    from typer.testing import CliRunner

    import infomax.ssl as ssl
    from infomax.cli import app

    seen: list[SSLConfig] = []
    metrics = {
        "linear_probe_acc": 0.5,
        "knn_acc": 0.5,
        "alignment": 0.1,
        "uniformity": -1.0,
        "epochs": 1,
        "train_seconds": 1.0,
    }
    monkeypatch.setattr(ssl, "train_ssl", lambda cfg, out, **kw: seen.append(cfg) or metrics)
    runner = CliRunner()
    base = ["train", "simclr", "--data", "mnist", "--data-dir", str(tmp_path)]
    for extra in ([], ["--epochs", "10"], ["--preset", "none"], ["--preset", "fashion-mnist"]):
        out = ["--out", str(tmp_path / f"run{len(seen)}")]
        result = runner.invoke(app, [*base, *extra, *out])
        assert result.exit_code == 0, result.output
    default, given, none, other = seen
    assert (default.preset, default.epochs, default.encoder, default.objective) == (
        "mnist",
        8,
        "cnn",
        "js",
    )
    assert (
        "preset mnist: encoder=cnn"
        in runner.invoke(app, [*base, "--out", str(tmp_path / "x")]).output
    )
    assert (given.preset, given.epochs, given.width) == ("mnist", 10, 16)  # 10 = the default
    assert (none.preset, none.epochs, none.encoder) == (None, 10, "auto")
    assert (other.preset, other.epochs, other.data) == ("fashion-mnist", 6, "mnist")
    bad = runner.invoke(app, [*base, "--preset", "imagenet"])
    assert bad.exit_code == 2 and "--preset" in bad.output and "mnist" in bad.output
    help_text = runner.invoke(app, ["train", "--help"]).output
    assert "mnist: encoder=cnn" in " ".join(help_text.split())
