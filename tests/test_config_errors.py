"""Bad settings fail at construction with one ``ValueError`` naming the option (the CLI prints
it as one red line, exit status 2), never later with an ``IndexError`` / ``RuntimeError`` from
inside torch. Fast: configs are only constructed, nothing is trained."""

from __future__ import annotations

import math
from typing import Any

import pytest

from infomax.dm import DMConfig
from infomax.experiments.rpm_demo import DemoConfig
from infomax.identifiability import IdentifyConfig
from infomax.rpm.train import DigitsConfig, IdentConfig

NAN, INF = math.nan, math.inf

# (config class, bad field values, text the message must contain)
CASES: list[tuple[type, dict[str, Any], str]] = [
    # identify (issue: --threads 0 raised RuntimeError from torch.set_num_threads)
    (IdentifyConfig, {"threads": 0}, "threads"),
    (IdentifyConfig, {"threads": -2}, "threads"),
    (IdentifyConfig, {"dim": 1}, "dim"),
    (IdentifyConfig, {"dim": 0}, "dim"),
    (IdentifyConfig, {"steps": 0}, "steps"),
    (IdentifyConfig, {"batch": 1}, "batch"),
    (IdentifyConfig, {"eval_every": 0}, "eval_every"),
    (IdentifyConfig, {"eval_samples": 2}, "eval_samples"),
    (IdentifyConfig, {"final_samples": 0}, "final_samples"),
    (IdentifyConfig, {"hidden": (64, 0)}, "hidden"),
    (IdentifyConfig, {"hidden": ()}, "hidden"),
    (IdentifyConfig, {"mixing_layers": 0}, "mixing_layers"),
    (IdentifyConfig, {"mixing_condition": 1.0}, "mixing_condition"),
    (IdentifyConfig, {"kappa": 0.0}, "kappa"),
    (IdentifyConfig, {"kappa": INF}, "kappa"),
    (IdentifyConfig, {"scale": -0.1, "space": "box", "conditional": "laplace"}, "scale"),
    (IdentifyConfig, {"p": 0.0, "space": "box", "conditional": "gnormal"}, "p must"),
    (IdentifyConfig, {"lr": 0.0}, "lr"),
    (IdentifyConfig, {"lr": NAN}, "lr"),
    (IdentifyConfig, {"temperature": 0.0}, "temperature"),
    (IdentifyConfig, {"model_p": -1.0}, "model_p"),
    (IdentifyConfig, {"seed": -1}, "seed"),
    # dm (issue: --width 0 raised IndexError inside torch)
    (DMConfig, {"width": 0}, "width"),
    (DMConfig, {"width": -3}, "width"),
    (DMConfig, {"dim": 0}, "dim"),
    (DMConfig, {"epochs": 0}, "epochs"),
    (DMConfig, {"batch_size": 1}, "batch_size"),
    (DMConfig, {"train_subset": 0}, "train_subset"),
    (DMConfig, {"probe_subset": 5}, "probe_subset"),
    (DMConfig, {"test_subset": -1}, "test_subset"),
    (DMConfig, {"sigma": -0.1}, "sigma"),
    (DMConfig, {"sigma": INF}, "sigma"),
    (DMConfig, {"sigma_warmup": 1.5}, "sigma_warmup"),
    (DMConfig, {"sigma_warmup": -0.1}, "sigma_warmup"),
    (DMConfig, {"permutations": 0}, "permutations"),
    (DMConfig, {"dm_sizes": ()}, "dm_sizes"),
    (DMConfig, {"dm_sizes": (500, 5)}, "dm_sizes"),
    (DMConfig, {"lr": 0.0}, "lr"),
    (DMConfig, {"encoder": "vit"}, "encoder"),
    (DMConfig, {"train_subset": 100}, "--batch-size"),
    # rpm --demo
    (DemoConfig, {"dim": 0}, "dim"),
    (DemoConfig, {"rho": 1.0}, "rho"),
    (DemoConfig, {"rho": -1.2}, "rho"),
    (DemoConfig, {"rho": NAN}, "rho"),
    (DemoConfig, {"sigma": 0.0}, "sigma"),
    (DemoConfig, {"sigma": INF}, "sigma"),
    (DemoConfig, {"ks": ()}, "ks"),
    (DemoConfig, {"ks": (8, 1)}, "K"),
    (DemoConfig, {"n_rows": 100}, "n_rows"),
    (DemoConfig, {"n_fit": 0}, "n_fit"),
    (DemoConfig, {"n_pool": 1}, "n_pool"),
    (DemoConfig, {"mixing_condition": 0.5}, "mixing_condition"),
    (DemoConfig, {"mixing_condition": INF}, "mixing_condition"),
    # rpm --digits
    (DigitsConfig, {"epochs": 0}, "epochs"),
    (DigitsConfig, {"batch_size": 1}, "batch_size"),
    (DigitsConfig, {"hidden": 0}, "hidden"),
    (DigitsConfig, {"latent_dim": 0}, "latent_dim"),
    (DigitsConfig, {"lr": -1.0}, "lr"),
    (DigitsConfig, {"lr": INF}, "lr"),
    (DigitsConfig, {"temperature": 0.0}, "temperature"),
    (DigitsConfig, {"init_std": 0.0}, "init_std"),
    (DigitsConfig, {"noise": -0.1}, "noise"),
    (DigitsConfig, {"dropout": 1.0}, "dropout"),
    (DigitsConfig, {"test_fraction": 0.001}, "test_fraction"),
    (DigitsConfig, {"test_fraction": 1.0}, "test_fraction"),
    # rpm --identify
    (IdentConfig, {"dim": 0}, "dim"),
    (IdentConfig, {"steps": 0}, "steps"),
    (IdentConfig, {"batch_size": 1}, "batch_size"),
    (IdentConfig, {"hidden": 0}, "hidden"),
    (IdentConfig, {"mixing_layers": 0}, "mixing_layers"),
    (IdentConfig, {"n_eval": 5}, "n_eval"),
    (IdentConfig, {"rho": 1.0}, "rho"),
    (IdentConfig, {"rho": NAN}, "rho"),
    (IdentConfig, {"lr": 0.0}, "lr"),
    (IdentConfig, {"lr": INF}, "lr"),
]


@pytest.mark.parametrize(
    "cls,kwargs,text",
    CASES,
    ids=[f"{c.__name__}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for c, kw, _ in CASES],
)
def test_bad_setting_is_one_value_error(cls: type, kwargs: dict[str, Any], text: str) -> None:
    with pytest.raises(ValueError, match=text) as info:
        cls(**kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("cls", [IdentifyConfig, DMConfig, DemoConfig, DigitsConfig, IdentConfig])
def test_defaults_are_valid(cls: type) -> None:
    cls()


def test_boundary_values_are_accepted() -> None:
    IdentifyConfig(threads=1, steps=1, eval_every=1, mixing_layers=1, batch=2)
    DMConfig(width=1, epochs=1, permutations=1, sigma=0.0, sigma_warmup=1.0, dm_sizes=(20,))
    DemoConfig(rho=-0.99, ks=(2,), n_rows=2)
    IdentConfig(rho=-0.5, steps=1)


def test_cli_bad_settings_are_one_red_line() -> None:
    from typer.testing import CliRunner

    from infomax.cli import app

    runner = CliRunner()
    for args, text in [
        (["identify", "--threads", "0"], "threads"),
        (["dm", "--width", "0"], "width"),
        (["dm", "--sigma-warmup", "2"], "sigma_warmup"),
        (["dm", "--permutations", "0"], "permutations"),
        (["rpm", "--demo", "--rho", "1.0"], "rho"),
    ]:
        res = runner.invoke(app, args)
        assert res.exit_code == 2, (args, res.output)
        assert text in res.output and "Traceback" not in res.output, (args, res.output)
