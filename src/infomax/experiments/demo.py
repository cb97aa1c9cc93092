"""``infomax demo``: a tour of the five capabilities on embedded data, in about two minutes on
2 CPU cores. Each part is a small honest run with its headline number and a reference beside it:

1. ``mi`` — MI estimation: the default estimator (its bound and marginal transform) beside
   InfoNCE, NWJ, JS and FLO on a correlated-Gaussian staircase (dim 10, true MI 1, 2, 4, 6
   nats, K = 64): InfoNCE stays below its ``log K`` cap.
2. ``ssl`` — contrastive learning: SimCLR with an f-MICL objective (JS) on scikit-learn's
   bundled digits; linear probe with one labelled image per class against the same probe on
   raw pixels (and the full probe / kNN).
3. ``identifiability`` — a short run on the sphere (vMF conditional, invertible MLP mixing):
   held-out linear R² of the true latents against the untrained encoder.
4. ``rpm`` — InfoNCE as variational inference: InfoNCE(K) with the true-ratio critic
   approaching its ELBO (= the true MI) as K grows.
5. ``dm`` — noise-injected Deep InfoMax on a 10-class Gaussian mixture, σ = 0, 0.5, 1: the
   sliced-Wasserstein distance and energy test of the clean test representation against
   N(0, I) at n = 1000, next to a true N(0, I) sample's, and the probe accuracy.

``run(DemoConfig(), out)`` writes each part into ``out/<part>`` as it finishes (a later failure
keeps the earlier parts), then ``out/results.json`` (one section per part with its headline
``value``) and ``out/report.md``, which links every plot; it returns a :class:`DemoResult`.

>>> DemoConfig().estimate.batch_size
64
>>> DemoConfig(parts=("rpm", "mi")).parts
('mi', 'rpm')
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from .._checks import check_int
from ..dm import DMConfig
from ..estimate import EstimateConfig
from ..identifiability.experiment import IdentifyConfig
from ..reports import atomic_write_text, cell, markdown_table, write_results
from ..ssl import SSLConfig
from . import rpm_demo

#: The parts of the tour, in order (``DemoConfig.parts``, ``infomax demo --parts``).
CAPABILITIES = ("mi", "ssl", "identifiability", "rpm", "dm")
#: What each part shows (the summary table's first column).
TITLES = {
    "mi": "MI estimation",
    "ssl": "contrastive learning",
    "identifiability": "identifiability",
    "rpm": "InfoNCE as inference (RPM)",
    "dm": "distribution matching",
}

#: The default estimator's bound first (``EstimateConfig``: chosen by ``bench mi`` on
#: ``mi-suite``, docs/estimate.md), then peers; InfoNCE shows the ``log K`` cap.
DEMO_BOUNDS = tuple(dict.fromkeys((EstimateConfig().bound, "infonce", "nwj", "js", "flo")))


def _demo_budget() -> EstimateConfig:
    return EstimateConfig(batch_size=64, steps=600, eval_every=50, hidden=128)


def _demo_ssl() -> SSLConfig:
    return SSLConfig(data="digits", objective="js", epochs=30, lr=2e-3, temperature=0.5)


def _demo_identify() -> IdentifyConfig:
    return IdentifyConfig(dim=5, steps=1500, batch=256, eval_every=300)


def _demo_rpm() -> rpm_demo.DemoConfig:
    return rpm_demo.DemoConfig(ks=(8, 32, 128, 512, 2048), n_rows=2**13, n_fit=20_000, n_pool=4096)


def _demo_dm() -> DMConfig:
    return DMConfig(  # pinned: the demo's documented numbers predate the #16 recipe defaults
        sigma=0.5,
        data="synthetic",
        views="augment",
        dim=8,
        epochs=40,
        lr=1e-3,
        dm_sizes=(1000,),
        normalization="batch",
        denominator="with-positive",
    )


@dataclass(frozen=True)
class DemoConfig:
    """Settings of :func:`run`: which ``parts`` (:data:`CAPABILITIES`) and each part's own
    settings; ``seed`` replaces the seed of every part.

    ``mi``: ``bounds`` on a ``dim``-dimensional Gaussian staircase at true MI ``mis`` (nats),
    ``n_samples`` per task, one ``estimate`` budget. ``ssl``: the :class:`~infomax.ssl.SSLConfig`
    of the run, probed with ``labels_per_class`` labelled images per class (mean over
    ``label_draws`` draws). ``identify``, ``rpm``: the configs of those runs. ``dm``: the
    :class:`~infomax.dm.DMConfig` trained at every ``dm_sigmas`` (the headline is at its own
    ``sigma``, fixed before the run).
    """

    seed: int = 0
    parts: tuple[str, ...] = CAPABILITIES
    bounds: tuple[str, ...] = DEMO_BOUNDS
    dim: int = 10
    mis: tuple[float, ...] = (1.0, 2.0, 4.0, 6.0)
    n_samples: int = 8000
    estimate: EstimateConfig = field(default_factory=_demo_budget)
    ssl: SSLConfig = field(default_factory=_demo_ssl)
    labels_per_class: int = 1
    label_draws: int = 10
    identify: IdentifyConfig = field(default_factory=_demo_identify)
    rpm: rpm_demo.DemoConfig = field(default_factory=_demo_rpm)
    dm: DMConfig = field(default_factory=_demo_dm)
    dm_sigmas: tuple[float, ...] = (0.0, 0.5, 1.0)
    progress: bool = True

    def __post_init__(self) -> None:
        check_int("seed", self.seed, 0)
        check_int("dim", self.dim, 1)
        check_int("labels_per_class", self.labels_per_class, 1)
        check_int("label_draws", self.label_draws, 1)
        unknown = [p for p in self.parts if p not in CAPABILITIES]
        if unknown or not self.parts:
            raise ValueError(
                f"unknown demo part(s) {unknown}; choose from {', '.join(CAPABILITIES)}"
                if unknown
                else f"no demo parts given; choose from {', '.join(CAPABILITIES)}"
            )
        object.__setattr__(self, "parts", tuple(p for p in CAPABILITIES if p in self.parts))
        if not self.bounds:
            raise ValueError("no bounds given")
        if not self.mis:
            raise ValueError("mis must name at least one true MI value")
        if not self.dm_sigmas:
            raise ValueError("dm_sigmas must name at least one noise level")


@dataclass
class DemoSection:
    """One part's outcome: its headline (``measure``: what was measured, ``value``), the
    ``reference`` beside it, the plots it wrote (paths relative to the demo folder), its
    detailed ``results`` and its wall seconds."""

    part: str
    measure: str
    value: float
    reference: str
    plots: list[str]
    results: dict[str, Any]
    seconds: float = 0.0

    @property
    def title(self) -> str:
        return TITLES[self.part]

    def to_dict(self) -> dict[str, Any]:
        return {
            "measure": self.measure,
            "value": self.value,
            "reference": self.reference,
            "plots": self.plots,
            "seconds": self.seconds,
            **self.results,
        }


@dataclass
class DemoResult:
    """The sections of the parts that ran (by part name, in tour order) and the wall seconds."""

    config: DemoConfig
    sections: dict[str, DemoSection]
    seconds: float
    out: Path

    def summary_rows(self) -> list[list[Any]]:
        """``[capability, measure, value, reference, plot]`` per part: the closing table."""
        return [
            [s.title, s.measure, s.value, s.reference, ", ".join(s.plots) or "—"]
            for s in self.sections.values()
        ]


# --- the parts ---------------------------------------------------------------------------------


def _plots(out: Path, folder: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in folder.rglob("*.png"))


def _mi(config: DemoConfig, out: Path) -> DemoSection:
    from ..tasks import staircase
    from .mi_benchmark import run_mi_benchmark

    estimate = replace(config.estimate, seed=config.seed)
    result = run_mi_benchmark(
        staircase(dim=config.dim, mis=config.mis),
        config.bounds,
        [config.seed],
        n_samples=config.n_samples,
        config=estimate,
        progress=config.progress,
    )
    result.write(out / "mi")
    table = mi_table(result.summary, config.bounds)
    top = table[-1]
    default, k = config.bounds[0], estimate.batch_size
    log_k = math.log(k)
    reference = f"truth {top['true_mi']:g}"
    if "infonce" in top and default != "infonce":
        reference += f"; InfoNCE {cell(top['infonce'])} ≤ log K = {log_k:.2f}"
    return DemoSection(
        "mi",
        f"{default} at true MI {top['true_mi']:g} (K = {k})",
        top[default],
        reference,
        _plots(out, out / "mi"),
        {"table": table, "log_k": log_k, "batch_size": k, "bounds": list(config.bounds)},
    )


def mi_table(summary: list[dict[str, Any]], bounds: tuple[str, ...]) -> list[dict[str, Any]]:
    """One row per true MI: ``{"true_mi": I, <bound>: mean estimate, ...}`` (test split)."""
    rows: dict[float, dict[str, Any]] = {}
    for s in summary:
        rows.setdefault(s["true_mi"], {"true_mi": s["true_mi"]})[s["bound"]] = s["mean"]
    return [
        {"true_mi": r["true_mi"], **{b: r.get(b, math.nan) for b in bounds}}
        for _, r in sorted(rows.items())
    ]


def _ssl(config: DemoConfig, out: Path) -> DemoSection:
    import torch

    from ..data import load_dataset
    from ..eval import few_label_probe, linear_probe
    from ..ssl import build_model, train_ssl
    from ..ssl.trainer import eval_features
    from ..train import CHECKPOINT_NAME, load_checkpoint, load_model_state

    cfg = replace(config.ssl, seed=config.seed, progress=config.progress)
    folder = out / "ssl"
    metrics = train_ssl(cfg, folder, overwrite=True)
    model = build_model(cfg)
    load_model_state(model, load_checkpoint(folder / CHECKPOINT_NAME)["model"])
    ds = load_dataset(cfg.data, cfg.data_dir)
    f_train, y_train, f_test = eval_features(model, ds, cfg, torch.device("cpu"))
    raw_train, raw_test = ds.train_x.flatten(1).float(), ds.test_x.flatten(1).float()
    k, draws = config.labels_per_class, config.label_draws
    few = few_label_probe(
        f_train, y_train, f_test, ds.test_y, per_class=k, draws=draws, seed=config.seed
    )
    raw_few = few_label_probe(
        raw_train, y_train, raw_test, ds.test_y, per_class=k, draws=draws, seed=config.seed
    )
    raw_probe = linear_probe(raw_train, ds.train_y, raw_test, ds.test_y)
    results = {
        "objective": cfg.objective,
        "few_label_probe_acc": few[0],
        "few_label_probe_std": few[1],
        "raw_pixel_few_label_probe_acc": raw_few[0],
        "raw_pixel_few_label_probe_std": raw_few[1],
        "labels_per_class": k,
        "label_draws": draws,
        "linear_probe_acc": metrics["linear_probe_acc"],
        "raw_pixel_probe_acc": raw_probe,
        "knn_acc": metrics["knn_acc"],
        "train_seconds": metrics["train_seconds"],
    }
    label = "label" if k == 1 else "labels"
    return DemoSection(
        "ssl",
        f"{cfg.method} + f-MICL {cfg.objective}, {cfg.data}: probe, {k} {label}/class",
        few[0],
        f"raw pixels {raw_few[0]:.3f}; all labels {metrics['linear_probe_acc']:.3f} "
        f"(raw {raw_probe:.3f})",
        _plots(out, folder),
        results,
    )


def _identifiability(config: DemoConfig, out: Path) -> DemoSection:
    from ..identifiability.experiment import run_identify

    cfg = replace(config.identify, seed=config.seed)
    folder = out / "identifiability"
    result = run_identify(cfg, out=folder, progress=config.progress)
    r2, untrained, mixed = (
        result.metrics["r2_linear"],
        result.untrained["r2_linear"],
        result.mixing_only["r2_linear"],
    )
    return DemoSection(
        "identifiability",
        f"linear R² of the latents ({cfg.space}, dim {cfg.dim})",
        r2,
        f"untrained encoder {untrained:.3f}; observations {mixed:.3f}",
        _plots(out, folder),
        {
            "metrics": result.metrics,
            "untrained": result.untrained,
            "mixing_only": result.mixing_only,
            "steps": cfg.steps,
        },
    )


def _rpm(config: DemoConfig, out: Path) -> DemoSection:
    result = rpm_demo.run(replace(config.rpm, seed=config.seed))
    folder = out / "rpm"
    result.write(folder)
    rows = result.infonce_true_critic
    first, last = rows[0], rows[-1]
    curve = [{"K": r["K"], "infonce": r["infonce"], "gap": r["gap"]} for r in rows]
    return DemoSection(
        "rpm",
        f"InfoNCE(K = {last['K']}), true-ratio critic",
        last["infonce"],
        f"ELBO = true MI {result.mutual_information:.3f}; K = {first['K']}: {first['infonce']:.3f}",
        _plots(out, folder),
        {"mutual_information": result.mutual_information, "infonce_true_critic": curve},
    )


def _dm(config: DemoConfig, out: Path) -> DemoSection:
    from . import dm_sweep

    base = replace(config.dm, seed=config.seed, progress=config.progress)
    result = dm_sweep.run(dm_sweep.DMSweepConfig(base, config.dm_sigmas))
    folder = out / "dm"
    result.write(folder)
    n = base.dm_sizes[0]
    keys = ("sigma", "linear_probe_acc", "energy_p", "ks_p_min", "ks_pass", "sliced_w2")
    rows = [{k: r[k] for k in keys} for r in result.rows]
    clean = rows[0]
    shown = next((r for r in rows if r["sigma"] == base.sigma), rows[-1])
    ref = result.reference[0]
    return DemoSection(
        "dm",
        f"SW₂ to N(0, I), σ = {shown['sigma']:g}, n = {n} (energy p "
        f"{shown['energy_p']:.3f}, probe {shown['linear_probe_acc']:.3f})",
        shown["sliced_w2"],
        f"σ = {clean['sigma']:g}: {clean['sliced_w2']:.3f} (p {clean['energy_p']:.3f}, probe "
        f"{clean['linear_probe_acc']:.3f}); true sample {ref['sliced_w2']:.3f}",
        _plots(out, folder),
        {"rows": rows, "reference": ref, "target": base.target, "dim": base.dim},
    )


#: The runner of each part: ``(config, out) -> DemoSection``, writing into ``out/<part>``.
RUNNERS: dict[str, Callable[[DemoConfig, Path], DemoSection]] = {
    "mi": _mi,
    "ssl": _ssl,
    "identifiability": _identifiability,
    "rpm": _rpm,
    "dm": _dm,
}


# --- the tour ----------------------------------------------------------------------------------


def run(
    config: DemoConfig,
    out: str | Path,
    on_section: Callable[[DemoSection], None] | None = None,
) -> DemoResult:
    """Run ``config.parts`` in tour order, each into ``out/<part>``; after each one
    ``results.json`` and ``report.md`` are rewritten (a later failure keeps the parts done)
    and ``on_section(section)`` is called (the CLI prints it)."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    sections: dict[str, DemoSection] = {}
    result = DemoResult(config, sections, 0.0, folder)
    for part in config.parts:
        t0 = time.perf_counter()
        section = RUNNERS[part](config, folder)
        section.seconds = time.perf_counter() - t0
        sections[part] = section
        result.seconds = time.perf_counter() - start
        write(result)
        if on_section is not None:
            on_section(section)
    return result


def write(result: DemoResult) -> None:
    """``results.json`` (one section per part, its headline ``value`` first) and
    ``report.md`` into the demo folder."""
    cfg = result.config
    config = {
        "parts": list(cfg.parts),
        "seed": cfg.seed,
        "mi": {
            "bounds": list(cfg.bounds),
            "dim": cfg.dim,
            "mis": list(cfg.mis),
            "n_samples": cfg.n_samples,
            "estimate": asdict(replace(cfg.estimate, seed=cfg.seed)),
        },
        "ssl": asdict(cfg.ssl),
        "identifiability": asdict(cfg.identify),
        "rpm": asdict(cfg.rpm),
        "dm": {**asdict(cfg.dm), "sigmas": list(cfg.dm_sigmas)},
    }
    results: dict[str, Any] = {name: s.to_dict() for name, s in result.sections.items()}
    results["seconds"] = result.seconds
    write_results(result.out, config=config, results=results, seed=cfg.seed)
    atomic_write_text(result.out / "report.md", report_markdown(result))


def report_markdown(result: DemoResult) -> str:
    """The demo's report: the summary table, then each part with its plots; PNGs in the
    folder that no part claims (an earlier run's) are linked at the end."""
    lines = [
        "# infomax demo",
        "",
        f"Seed {result.config.seed}, {result.seconds:.0f} s. Every number is measured on data "
        "the run did not train or select on.",
        "",
        markdown_table(["capability", "measured", "value", "reference"], _rows(result)),
    ]
    linked: set[str] = set()
    for s in result.sections.values():
        lines += [f"## {s.title}", "", f"{s.measure}: **{cell(s.value)}** ({s.reference}).", ""]
        for plot in s.plots:
            lines += [f"![{plot}]({plot})", ""]
            linked.add(plot)
    others = [p for p in _plots(result.out, result.out) if p not in linked]
    if others:
        lines += ["## Other plots in this folder", ""]
        lines += [f"![{p}]({p})\n" for p in others]
    return "\n".join(lines).rstrip() + "\n"


def _rows(result: DemoResult) -> list[list[Any]]:
    return [row[:4] for row in result.summary_rows()]
