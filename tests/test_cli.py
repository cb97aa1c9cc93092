"""CLI smoke tests: outputs written, bad input -> one line and exit status 2, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from infomax.cli import app
from infomax.tasks import CorrelatedGaussian

runner = CliRunner()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    x, y = CorrelatedGaussian(dim=2, mi=1.0).sample(1200, seed=0)
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", y)
    np.savez(folder / "xy.npz", x=x, y=y)
    np.savetxt(folder / "x.csv", x, delimiter=",", header="a,b", comments="")
    np.savetxt(folder / "y.csv", y, delimiter=",")
    (folder / "empty.npy").write_bytes(b"")
    (folder / "garbage.npy").write_bytes(b"not an array at all")
    np.save(folder / "short.npy", y[:1000])
    np.save(folder / "nan.npy", np.where(np.arange(1200)[:, None] == 5, np.nan, x))
    return folder


def _ok(args: list[str]):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result


def _fails(args: list[str], match: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert match in " ".join(result.output.split()), result.output


def test_estimate_npy_json_and_out(data: Path, tmp_path: Path) -> None:
    common = ["--bound", "infonce", "--steps", "100", "--batch-size", "64"]
    res = _ok(
        [
            "estimate",
            str(data / "x.npy"),
            str(data / "y.npy"),
            *common,
            "--json",
            "--out",
            str(tmp_path / "run"),
        ]
    )
    payload, _ = json.JSONDecoder().raw_decode(res.output)  # notes may follow as lines
    assert payload["bound"] == "infonce" and payload["config"]["steps"] == 100
    for name in ("results.json", "curve.csv", "curve.png"):
        assert (tmp_path / "run" / name).stat().st_size > 0
    _ok(["estimate", str(data / "xy.npz"), *common])
    res = _ok(["estimate", str(data / "x.csv"), str(data / "y.csv"), *common])
    assert "infonce" in res.output


def test_estimate_bad_input(data: Path) -> None:
    x = str(data / "x.npy")
    _fails(["estimate", x, str(data / "missing.npy")], "file not found")
    _fails(["estimate", x, str(data / "empty.npy")], "is empty")
    _fails(["estimate", x, str(data / "garbage.npy")], "cannot read")
    _fails(["estimate", x, str(data / "short.npy")], "same number of samples, got 1200 and 1000")
    _fails(["estimate", x, str(data / "nan.npy")], "y contains 2 NaN/Inf")
    _fails(["estimate", x, x, "--bound", "mine2"], "valid names: dv, flo, infonce")
    _fails(["estimate", x, x, "--critic", "rbf"], "valid names: bilinear, cosine")
    _fails(["estimate", x, x, "--batch-size", "1024"], "too few for batch_size=1024")
    _fails(["estimate", x], "one .npz")


def test_bench_mi_writes_tables_and_plot(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    _ok(
        [
            "bench",
            "mi",
            "--tasks",
            "gaussian:dim=2,mi=0.5;cubic(gaussian:dim=2,mi=0.5)",
            "--bounds",
            "infonce,js",
            "--seeds",
            "2",
            "--steps",
            "60",
            "--batch-size",
            "32",
            "--n-samples",
            "800",
            "--out",
            str(out),
        ]
    )
    res = json.loads((out / "results.json").read_text())
    assert len(res["results"]["rows"]) == 2 * 2 * 2
    assert len(res["results"]["summary"]) == 4
    assert "versions" in res and res["config"]["seeds"] == [0, 1]
    for name in ("results.csv", "summary.csv", "summary.md", "staircase.png"):
        assert (out / name).stat().st_size > 0
    # a second run with other seeds, merged with the first: 4 seeds per (task, bound)
    _ok(
        [
            "bench",
            "mi",
            "--tasks",
            "gaussian:dim=2,mi=0.5;cubic(gaussian:dim=2,mi=0.5)",
            "--bounds",
            "infonce,js",
            "--seeds",
            "5,6",
            "--steps",
            "60",
            "--batch-size",
            "32",
            "--n-samples",
            "800",
            "--out",
            str(tmp_path / "b2"),
        ]
    )
    _ok(["bench", "mi-merge", str(out), str(tmp_path / "b2"), "--out", str(tmp_path / "m")])
    merged = json.loads((tmp_path / "m" / "results.json").read_text())
    assert merged["config"]["seeds"] == [0, 1, 5, 6]
    # 4 seeds per (task, bound): estimates, or failed runs (JS on the cubic task reports
    # absurd held-out values at 60 steps, which are errors, not numbers)
    assert all(s["seeds"] + s["failed"] == 4 for s in merged["results"]["summary"])
    assert sum(s["seeds"] for s in merged["results"]["summary"]) >= 12
    assert (tmp_path / "m" / "staircase.png").stat().st_size > 0
    _fails(
        ["bench", "mi-merge", str(tmp_path / "nothing"), "--out", str(tmp_path / "m")],
        "has no results.csv",
    )
    _fails(["bench", "mi", "--tasks", "gauss:dim=2", "--out", str(out)], "unknown task")
    _fails(["bench", "mi", "--bounds", "flo,xx", "--out", str(out)], "valid names")
    _fails(["bench", "mi", "--seeds", "x", "--out", str(out)], "--seeds")


def test_list_names() -> None:
    res = _ok(["list"])
    assert "flo" in res.output and "gaussian" in res.output


def test_renamed_options_keep_their_earlier_names_as_hidden_aliases(tmp_path: Path) -> None:
    """``--objective`` was ``--divergence`` (train) and ``--loss`` (identify): the old spellings
    still work (tests/test_cli_errors.py, tests/test_train.py, tests/test_identifiability.py)
    but ``--help`` shows only the new one, and giving both with different values is refused."""
    for command, old in (("train", "--divergence"), ("identify", "--loss")):
        res = _ok([command, "--help"])
        assert "--objective" in res.output and old not in res.output, res.output
    out = str(tmp_path / "id")
    _fails(
        ["identify", "--objective", "nwj", "--loss", "js", "--steps", "2", "--out", out],
        "--loss is an earlier name of --objective: give one of them",
    )
    _fails(
        ["train", "simclr", "--objective", "kl", "--divergence", "js", "--out", out],
        "--divergence is an earlier name of --objective",
    )
    assert not (tmp_path / "id").exists()


def test_core_packages_import_nothing_from_the_cli_or_the_experiments() -> None:
    """Layers: ``cli`` and ``experiments`` sit on top; nothing below them imports them."""
    import ast

    import infomax

    src = Path(infomax.__file__).parent
    top = {"infomax.cli", "infomax.experiments"}
    for path in sorted(src.rglob("*.py")):
        rel = path.relative_to(src)
        if rel.parts[0] in ("cli", "experiments") or rel.name == "__main__.py":
            continue
        package = ["infomax", *rel.parts[:-1]]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                module = ".".join([*base, *([node.module] if node.module else [])])
                names = [f"{module}.{a.name}" for a in node.names] + [module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            bad = [n for n in names if any(n == t or n.startswith(t + ".") for t in top)]
            assert not bad, f"{rel} imports {bad}"


def test_estimate_preset_and_marginals_reach_the_config(data: Path, tmp_path: Path) -> None:
    """``--preset`` fills the options left at their defaults; options given override it;
    ``--marginals`` picks the transform; the result records both."""
    args = ["estimate", str(data / "x.npy"), str(data / "y.npy"), "--json"]
    res = _ok(
        [
            *args,
            "--preset",
            "high-mi",
            "--steps",
            "20",
            "--batch-size",
            "32",
            "--eval-batch-size",
            "64",
            "--marginals",
            "none",
        ]
    )
    payload, _ = json.JSONDecoder().raw_decode(res.output)
    cfg = payload["config"]
    assert cfg["preset"] == "high-mi" and cfg["critic"] == "dot-additive"  # from the preset
    assert cfg["steps"] == 20 and cfg["marginals"] == "none"  # given: override
    assert payload["n_val"] == 180 and payload["splits"]["mi"] == "test"
    _fails([*args, "--preset", "fast"], "valid names: high-mi")
    _fails([*args, "--marginals", "rank"], "valid names: none, normal-scores, standardize")
    # an option given on the command line wins even when it equals the plain default
    # (normal-scores; the preset says standardize)
    short = ["--steps", "20", "--batch-size", "32", "--eval-batch-size", "64"]
    res = _ok([*args, "--preset", "high-mi", *short, "--marginals", "normal-scores"])
    cfg = json.JSONDecoder().raw_decode(res.output)[0]["config"]
    assert cfg["marginals"] == "normal-scores" and cfg["critic"] == "dot-additive"
    res = _ok([*args, "--preset", "high-mi", *short])
    assert json.JSONDecoder().raw_decode(res.output)[0]["config"]["marginals"] == "standardize"


def test_list_names_marginals_and_presets() -> None:
    res = _ok(["list"])
    assert "normal-scores" in res.output and "high-mi" in res.output
