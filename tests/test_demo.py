"""``infomax demo``: every part runs, results.json has one section per capability with its
headline number, report.md links every plot, no figure has an empty panel, and the console
output has no ``nan`` and no raw dict. The full-size tour (its numbers) is a slow test."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path

import matplotlib
import pytest
from typer.testing import CliRunner

from infomax.cli import app
from infomax.dm import DMConfig
from infomax.estimate import EstimateConfig
from infomax.experiments import demo, rpm_demo
from infomax.identifiability.experiment import IdentifyConfig
from infomax.reports import empty_panels

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402

runner = CliRunner()


def tiny(**changes: object) -> demo.DemoConfig:
    """Every part at a size of seconds (the structure of the tour, not its numbers)."""
    cfg = demo.DemoConfig(
        bounds=("smile", "infonce"),
        mis=(1.0, 4.0),
        n_samples=600,
        estimate=EstimateConfig(batch_size=32, steps=20, eval_every=10, hidden=16),
        ssl=replace(demo._demo_ssl(), epochs=1, proj_hidden=32, proj_dim=16),
        label_draws=2,
        identify=IdentifyConfig(
            dim=3, steps=20, batch=64, eval_every=10, eval_samples=200, final_samples=300
        ),
        rpm=rpm_demo.DemoConfig(**rpm_demo.QUICK),
        dm=DMConfig(sigma=0.5, data="synthetic", dim=4, epochs=1, dm_sizes=(200,), permutations=19),
        dm_sigmas=(0.0, 0.5),
        progress=False,
    )
    return replace(cfg, **changes)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def tour(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Figure]]:
    """The tiny tour, run once; the figures it saved (``Figure.savefig`` spied on)."""
    out = tmp_path_factory.mktemp("demo")
    figures: list[Figure] = []
    original = Figure.savefig

    def spy(self: Figure, *args: object, **kwargs: object) -> None:
        figures.append(self)
        original(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Figure, "savefig", spy)
        demo.run(tiny(), out)
    return out, figures


def test_results_json_has_one_section_per_capability_with_its_headline(tour) -> None:
    out, _ = tour
    results = json.loads((out / "results.json").read_text())["results"]
    assert set(demo.CAPABILITIES) <= set(results)
    for part in demo.CAPABILITIES:
        section = results[part]
        assert math.isfinite(section["value"]), part
        assert section["measure"] and section["reference"], part
        assert section["plots"], f"{part} wrote no plot"
    assert results["mi"]["value"] == results["mi"]["table"][-1]["smile"]
    assert results["ssl"]["value"] == results["ssl"]["few_label_probe_acc"]


def test_report_links_every_png_in_the_folder(tour) -> None:
    out, _ = tour
    report = (out / "report.md").read_text()
    links = set(re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report))
    pngs = {str(p.relative_to(out)) for p in out.rglob("*.png")}
    assert pngs and pngs <= links
    assert all((out / link).is_file() for link in links)


def test_every_figure_has_data_in_every_panel(tour) -> None:
    out, figures = tour
    assert len(figures) == len(list(out.rglob("*.png")))
    for fig in figures:
        assert empty_panels(fig) == [], fig.get_suptitle() or fig.axes[0].get_title()


def test_empty_panels_finds_a_panel_without_data() -> None:
    import matplotlib.pyplot as plt

    fig, (a, b, c) = plt.subplots(1, 3)
    a.plot([0, 1], [0, 1])
    b.hist([1, 2, 2, 3])
    c.set_title("test kNN accuracy")  # the panel the issue found empty
    assert empty_panels(fig) == ["test kNN accuracy"]
    c.plot([], [])
    assert empty_panels(fig) == ["test kNN accuracy"]
    plt.close(fig)


def test_a_later_failure_keeps_the_parts_done(tmp_path: Path, monkeypatch) -> None:
    def broken(config: demo.DemoConfig, out: Path) -> demo.DemoSection:
        raise RuntimeError("boom")

    monkeypatch.setitem(demo.RUNNERS, "dm", broken)
    with pytest.raises(RuntimeError, match="boom"):
        demo.run(tiny(parts=("rpm", "dm")), tmp_path)
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    assert "rpm" in results and "dm" not in results
    assert "rpm/rpm_convergence.png" in (tmp_path / "report.md").read_text()


def test_cli_output_has_no_nan_and_no_raw_dict(tmp_path: Path, monkeypatch) -> None:
    import infomax.cli.demo as cli_demo

    monkeypatch.setattr(cli_demo, "DemoConfig", lambda **kw: tiny(**kw))
    result = runner.invoke(app, ["demo", "--out", str(tmp_path / "d"), "--seed", "1"])
    assert result.exit_code == 0, result.output
    text = result.output
    assert not re.search(r"\bnan\b", text, re.IGNORECASE) and "{'" not in text
    for title in demo.TITLES.values():
        assert title in text
    assert "log K" in text and "demo done" in text
    assert json.loads((tmp_path / "d" / "results.json").read_text())["seed"] == 1


def test_unknown_part_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown demo part.*'mri'.*identifiability"):
        demo.DemoConfig(parts=("mi", "mri"))
    result = runner.invoke(app, ["demo", "--parts", "mi,mri"])
    assert result.exit_code == 2 and "unknown demo part" in result.output


@pytest.mark.slow
def test_full_tour_numbers(tmp_path: Path) -> None:
    """The default tour: each headline beats its reference (about a minute on 2 cores)."""
    result = demo.run(replace(demo.DemoConfig(), progress=False), tmp_path)
    s = result.sections
    mi = s["mi"].results["table"][-1]  # true MI 6 nats, K = 64
    assert abs(mi["smile"] - 6.0) < 0.5 and mi["infonce"] <= math.log(64) + 0.05
    ssl = s["ssl"].results
    assert ssl["few_label_probe_acc"] > ssl["raw_pixel_few_label_probe_acc"] + 0.05
    ident = s["identifiability"].results
    assert ident["metrics"]["r2_linear"] > 0.95 > ident["untrained"]["r2_linear"]
    rpm = s["rpm"].results
    gaps = [abs(r["gap"]) for r in rpm["infonce_true_critic"]]
    assert gaps == sorted(gaps, reverse=True) and gaps[-1] < 0.01
    dm = s["dm"].results["rows"]
    assert dm[1]["sliced_w2"] < dm[0]["sliced_w2"]  # σ = 0.5 closer to N(0, I) than σ = 0
