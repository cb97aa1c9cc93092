"""MI benchmark: every bound on ground-truth tasks, several seeds, one budget; bias/std tables.

``run(MIBenchmarkConfig(...))`` returns an :class:`MIBenchmarkResult` whose ``write(out)`` puts
``results.csv`` (one row per (task, bound, seed), as in bmi's runner), ``summary.csv`` /
``summary.md`` (:func:`summarize`: bias, std and relative error per (task, setting)),
``settings.csv`` / ``settings.md`` (:func:`rank_settings`: mean absolute error per (bound,
marginals) setting over all tasks and seeds, the never-failing ones first),
``results.json`` and ``staircase.png`` (:func:`plot_staircase`: estimate vs true MI with std
bands, the truth line and the InfoNCE cap ``log K``) into ``out``. :func:`merge_results`
combines runs made in parallel processes.

>>> cfg = MIBenchmarkConfig(tasks="gaussian:dim=2,mi=0.5", bounds=("infonce", "nwj"), seeds=(0,))
>>> [t.id for t in cfg.task_list()], cfg.bound_names()
(['gaussian-d2-mi0.5'], ['infonce', 'nwj'])
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..estimate import EstimateConfig, EstimationFailed, MIEstimator, split_sizes
from ..marginals import MARGINALS
from ..progress import ProgressBar
from ..registry import BOUNDS
from ..reports import (
    atomic_write_text,
    markdown_table,
    print_table,
    save_figure,
    write_csv,
    write_results,
)

#: ``bounds`` value that stands for every registered bound.
ALL_BOUNDS = ("all",)


@dataclass(frozen=True)
class MIBenchmarkConfig:
    """Settings of :func:`run` (validated): ``tasks``, a task spec (``;``-separated; suites such
    as ``staircase:dim=20`` expand, see :func:`infomax.tasks.tasks_from_string`); ``bounds``,
    bound names (``("all",)``: every registered bound); ``seeds``; ``n_samples`` drawn per task
    and seed; ``estimate``, the budget every bound shares (steps, batch size, critic, ...);
    ``marginals``, the marginal transforms tried with every bound (a setting is a (bound,
    marginals) pair); ``fresh``: also score each fitted critic on a fresh sample of
    ``n_samples`` (seed ``FRESH_SEED + seed``) and, where the task has a density ratio, with
    its exact normaliser (:meth:`~infomax.estimate.MIEstimator.exact_normalizer_bound`)."""

    tasks: str = "staircase:dim=20"
    bounds: tuple[str, ...] = ALL_BOUNDS
    marginals: tuple[str, ...] = field(default_factory=lambda: (EstimateConfig().marginals,))
    fresh: bool = False
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    n_samples: int = 20000
    estimate: EstimateConfig = field(default_factory=EstimateConfig)
    progress: bool = True

    def __post_init__(self) -> None:
        if not str(self.tasks).strip():
            raise ValueError("no tasks given")
        if not self.seeds:
            raise ValueError("no seeds given")
        if not self.bounds:
            raise ValueError("no bounds given")
        if not self.marginals:
            raise ValueError("no marginal transforms given")
        self.task_list()  # ValueError naming an unknown task
        self.bound_names()  # ValueError listing the valid names
        for name in self.marginals:
            MARGINALS.get(name)
        split_sizes(self.n_samples, self.estimate)

    def task_list(self) -> list[Any]:
        """The tasks of ``tasks``."""
        from ..tasks import tasks_from_string

        return tasks_from_string(self.tasks)

    def bound_names(self) -> list[str]:
        """The bound names (``("all",)`` expanded)."""
        names = BOUNDS.names() if tuple(self.bounds) == ALL_BOUNDS else list(self.bounds)
        for name in names:
            BOUNDS.get(name)
        return names


@dataclass
class MIBenchmarkResult:
    """Rows (one per task, bound and seed), their :func:`summarize` table, wall seconds, and the
    settings as ``results.json`` records them (``estimate``, ``tasks``, ``bounds``, ``seeds``,
    ``n_samples``)."""

    rows: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    seconds: float
    config: dict[str, Any]

    def write(self, out: str | Path) -> Path:
        """``results.csv``, ``summary.csv``/``.md``, ``settings.csv``/``.md``, ``results.json`` and
        ``staircase.png`` into ``out`` (a ``results.partial.csv`` there is removed)."""
        folder = Path(out)
        write_csv(folder / "results.csv", self.rows)
        (folder / "results.partial.csv").unlink(missing_ok=True)
        write_csv(folder / "summary.csv", self.summary)
        ranked = rank_settings(self.rows)
        write_csv(folder / "settings.csv", ranked)
        atomic_write_text(folder / "settings.md", settings_markdown(ranked))
        results = {
            "rows": self.rows,
            "summary": self.summary,
            "settings": ranked,
            "seconds": self.seconds,
        }
        seed = list(self.config["seeds"])[0]
        write_results(folder, config=self.config, results=results, seed=seed)
        estimate = self.config.get("estimate")  # an EstimateConfig, or a dict (a merge's)
        batch = getattr(estimate, "batch_size", None) or (estimate or {}).get("batch_size")
        plot_staircase(self.summary, folder / "staircase.png", batch_size=batch)
        atomic_write_text(folder / "summary.md", summary_markdown(self.summary))
        return folder


def run(config: MIBenchmarkConfig, *, partial_dir: str | Path | None = None) -> MIBenchmarkResult:
    """Every bound of ``config`` on every task and seed (:func:`run_mi_benchmark`).

    ``partial_dir``: keep the rows done so far in ``partial_dir/results.partial.csv`` while
    running, so that an interrupted run keeps them.
    """
    return run_mi_benchmark(
        config.task_list(),
        config.bound_names(),
        config.seeds,
        n_samples=config.n_samples,
        config=config.estimate,
        marginals=config.marginals,
        fresh=config.fresh,
        progress=config.progress,
        partial_dir=partial_dir,
    )


def run_mi_benchmark(
    tasks: Sequence[Any],
    bounds: Sequence[str],
    seeds: Sequence[int],
    *,
    n_samples: int,
    config: EstimateConfig | None = None,
    marginals: Sequence[str] | None = None,
    fresh: bool = False,
    progress: bool = True,
    partial_dir: str | Path | None = None,
) -> MIBenchmarkResult:
    """Run :func:`estimate_mi` for every (task, bound, seed).

    Each task is sampled with ``task.sample(n_samples, seed)``; every bound gets the same
    :class:`EstimateConfig` (same steps, batch size, critic and learning rate). A diverging
    bound is a row with an ``error``, not an exception. ``partial_dir``: see :func:`run`.
    """
    if not tasks:
        raise ValueError("no tasks given")
    if not seeds:
        raise ValueError("no seeds given")
    if not bounds:
        raise ValueError("no bounds given")
    for name in bounds:
        BOUNDS.get(name)
    cfg = config or EstimateConfig()
    split_sizes(n_samples, cfg)  # before any run
    marginals = tuple(marginals) if marginals is not None else (cfg.marginals,)
    for name in marginals:
        MARGINALS.get(name)
    settings = [(b, m) for b in bounds for m in marginals]
    rows: list[dict[str, Any]] = []
    total = len(tasks) * len(settings) * len(seeds)
    start = time.perf_counter()
    with ProgressBar("MI benchmark", total, enabled=progress) as bar:
        for task in tasks:
            for seed in seeds:
                x, y = task.sample(n_samples, seed=seed)
                for bound, marginal in settings:
                    bar.update(info=f"{task.id} {bound}/{marginal} seed {seed}")
                    run_cfg = dataclasses.replace(cfg, bound=bound, seed=seed, marginals=marginal)
                    row = _one_run(task, seed, x, y, run_cfg, fresh)
                    rows.append(row)
                    if partial_dir is not None:  # partial results survive an interruption
                        write_csv(Path(partial_dir) / "results.partial.csv", rows)
                    bar.update(advance=1)
    meta = {
        "estimate": cfg,
        "tasks": [{"id": t.id, "mi": t.mutual_information} for t in tasks],
        "bounds": list(bounds),
        "marginals": list(marginals),
        "seeds": list(seeds),
        "n_samples": n_samples,
    }
    return MIBenchmarkResult(rows, summarize(rows), time.perf_counter() - start, meta)


#: Fresh samples for ``fresh=True`` are drawn with seed ``FRESH_SEED + seed``.
FRESH_SEED = 1000


def _fresh_scores(estimator: MIEstimator, task: Any, seed: int, n: int) -> dict[str, float]:
    """The fitted critic on a fresh sample, and with its exact normaliser (``nan`` for a task
    without a closed-form density ratio)."""
    fresh = estimator.estimate(*task.sample(n, seed=FRESH_SEED + seed)).mi
    try:
        oracle = estimator.exact_normalizer_bound(task, seed=2 * FRESH_SEED + seed)
    except NotImplementedError:
        oracle = math.nan
    return {"fresh": fresh, "exact_normalizer": oracle}


def _one_run(
    task: Any, seed: int, x: np.ndarray, y: np.ndarray, cfg: EstimateConfig, fresh: bool = False
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "task": task.id,
        "true_mi": float(task.mutual_information),
        "bound": cfg.bound,
        "marginals": cfg.marginals,
        "seed": seed,
    }
    try:
        with warnings.catch_warnings():  # kept in the row's "notes", not printed per run
            warnings.simplefilter("ignore", UserWarning)
            estimator = MIEstimator(cfg)
            est = estimator.fit(x, y, progress=False)
            if fresh:
                row.update(_fresh_scores(estimator, task, seed, len(x)))
        row.update(
            estimate=est.mi,
            stderr=est.stderr,
            ci_low=est.ci[0],
            ci_high=est.ci[1],
            steps=est.steps,
            best_step=est.best_step,
            seconds=est.seconds,
            error="",
            notes="; ".join(est.warnings),
        )
    except EstimationFailed as err:  # a diverging bound is a result; a usage error is not
        row.update(
            estimate=math.nan,
            stderr=math.nan,
            ci_low=math.nan,
            ci_high=math.nan,
            steps=0,
            best_step=0,
            seconds=math.nan,
            error=str(err),
            notes="",
        )
        if fresh:
            row.update(fresh=math.nan, exact_normalizer=math.nan)
    return row


#: Columns every ``results.csv`` of a benchmark run has.
RESULT_COLUMNS = ("task", "true_mi", "bound", "seed", "estimate", "seconds", "error")

#: Settings that runs must share to be merged (seeds, tasks and bounds may differ).
MERGE_KEYS = ("estimate", "n_samples")


def _flatten(prefix: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(f"{prefix}.{k}" if prefix else str(k), v))
        return out
    return {prefix: value}


def _merge_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The :data:`MERGE_KEYS` settings of a run's config, flattened (``"estimate.steps"``)."""
    return _flatten("", {key: config.get(key) for key in MERGE_KEYS})


def _read_run(folder: Path) -> tuple[Any, dict[str, Any]]:
    """``(results frame, config)`` of one finished benchmark folder; ``ValueError`` naming the
    file for a missing, unreadable or foreign file."""
    import json

    import pandas as pd

    path, meta = folder / "results.csv", folder / "results.json"
    if not path.exists():
        raise ValueError(f"{folder} has no results.csv (is the run finished?)")
    try:
        frame = pd.read_csv(path, dtype={"error": str, "notes": str})
    except (ValueError, OSError, UnicodeDecodeError) as err:  # pandas' parser errors
        raise ValueError(f"cannot read {path}: {err}") from None
    missing = [c for c in RESULT_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path} is not a benchmark results file: it lacks columns {missing}")
    frame["error"] = frame["error"].fillna("")
    frame["notes"] = frame["notes"].fillna("") if "notes" in frame else ""
    try:
        config = json.loads(meta.read_text())["config"]
        if not isinstance(config, dict):
            raise TypeError("config is not an object")
    except FileNotFoundError:
        raise ValueError(f"{folder} has no results.json (is the run finished?)") from None
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise ValueError(f"{meta} is not a benchmark results.json ({err})") from None
    return frame, config


def merge_results(folders: Sequence[str | Path]) -> MIBenchmarkResult:
    """Combine the ``results.csv`` of several benchmark runs (e.g. seeds split over processes)
    into one result (its ``write(out)`` gives the combined tables and plot; ``seconds`` is NaN).

    The runs must share their estimation settings and sample count (:data:`MERGE_KEYS`) and
    must not repeat a (task, bound, seed) run: ``ValueError`` naming the difference otherwise.
    """
    import pandas as pd

    if not folders:
        raise ValueError("no folders given")
    resolved = [Path(f).resolve() for f in folders]
    repeated = sorted({str(f) for f in folders if resolved.count(Path(f).resolve()) > 1})
    if repeated:
        raise ValueError(f"folder(s) {repeated} given more than once: merging would double-count")
    frames, configs = [], []
    for folder in folders:
        frame, config = _read_run(Path(folder))
        frame["_folder"] = str(folder)
        frames.append(frame)
        configs.append(config)
    ref = _merge_settings(configs[0])
    for folder, config in zip(folders[1:], configs[1:], strict=True):
        got = _merge_settings(config)
        diff = [
            f"{k} {ref.get(k)!r} vs {got.get(k)!r}"
            for k in sorted(set(ref) | set(got))
            if ref.get(k) != got.get(k)
        ]
        if diff:
            raise ValueError(
                f"cannot merge {folders[0]} and {folder}: different settings ({'; '.join(diff)})"
            )
    both = pd.concat(frames, ignore_index=True)
    if "marginals" not in both:  # runs from before the marginals axis
        both["marginals"] = "standardize"
    both["marginals"] = both["marginals"].fillna("standardize")
    key = ["task", "bound", "marginals", "seed"]
    dup = both[both.duplicated(key, keep=False)]
    if len(dup):
        first = dup.iloc[0]
        same = (dup[key] == first[key]).all(axis=1)
        where = sorted(set(dup[same]._folder))
        raise ValueError(
            f"task {first.task} / bound {first.bound} / marginals {first.marginals} / seed "
            f"{first.seed} appears in {where}: the runs overlap, merging would double-count seeds"
        )
    rows = both.drop(columns="_folder").to_dict("records")
    seeds = sorted({int(r["seed"]) for r in rows})
    config = dict(configs[0], seeds=seeds, merged_from=[str(f) for f in folders])
    return MIBenchmarkResult(rows, summarize(rows), math.nan, config)


def _frame(rows: Sequence[dict[str, Any]]) -> Any:
    import pandas as pd

    frame = pd.DataFrame(list(rows))
    if "marginals" not in frame:
        frame["marginals"] = "standardize"
    frame["marginals"] = frame["marginals"].fillna("standardize")
    return frame


def setting_name(bound: str, marginals: str) -> str:
    """A setting's label: ``bound`` with the default marginals, else ``bound/marginals``."""
    default = EstimateConfig().marginals
    return bound if marginals == default else f"{bound}/{marginals}"


def summarize(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (task, bound, marginals): mean estimate over seeds, bias, std, relative error,
    failures; ``setting`` labels the (bound, marginals) pair."""
    frame = _frame(rows)
    out = []
    for (task, bound, marginals), group in frame.groupby(
        ["task", "bound", "marginals"], sort=False
    ):
        true = float(group["true_mi"].iloc[0])
        est = group["estimate"].astype(float)
        ok = est[np.isfinite(est)]
        mean = float(ok.mean()) if len(ok) else math.nan
        out.append(
            {
                "task": task,
                "true_mi": true,
                "bound": bound,
                "marginals": marginals,
                "setting": setting_name(bound, marginals),
                "mean": mean,
                "bias": mean - true,
                "std": float(ok.std(ddof=1)) if len(ok) > 1 else math.nan,
                "rel_error": (mean - true) / true if true else math.nan,
                "seeds": int(len(ok)),
                "failed": int(len(est) - len(ok)),
                "seconds": float(group["seconds"].astype(float).mean()),
                **_fresh_summary(group),
            }
        )
    return out


def _fresh_summary(group: Any) -> dict[str, float]:
    """Means of the fresh-sample and exact-normaliser columns (when the run has them) and of
    the fresh − test difference, over the finite runs."""
    if "fresh" not in group:
        return {}
    fresh = group["fresh"].astype(float)
    test = group["estimate"].astype(float)
    ok = np.isfinite(fresh) & np.isfinite(test)
    oracle = group["exact_normalizer"].astype(float)
    return {
        "fresh_mean": float(fresh[ok].mean()) if ok.any() else math.nan,
        "fresh_min": float(fresh[ok].min()) if ok.any() else math.nan,
        "fresh_minus_test": float((fresh - test)[ok].mean()) if ok.any() else math.nan,
        "exact_normalizer_mean": float(oracle[np.isfinite(oracle)].mean())
        if np.isfinite(oracle).any()
        else math.nan,
    }


def rank_settings(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (bound, marginals) setting, over every (task, seed) run: mean absolute error of the
    finite estimates (nats), runs, failures; sorted so that settings that never fail come first,
    by mean absolute error (the first row is the evidence-based default)."""
    frame = _frame(rows)
    out = []
    for (bound, marginals), group in frame.groupby(["bound", "marginals"], sort=False):
        est = group["estimate"].astype(float)
        err = (est - group["true_mi"].astype(float)).abs()
        ok = np.isfinite(est)
        out.append(
            {
                "setting": setting_name(bound, marginals),
                "bound": bound,
                "marginals": marginals,
                "mae": float(err[ok].mean()) if ok.any() else math.nan,
                "runs": int(len(est)),
                "failed": int((~ok).sum()),
            }
        )
    return sorted(out, key=lambda r: (r["failed"] > 0, np.nan_to_num(r["mae"], nan=np.inf)))


def settings_markdown(ranked: Sequence[dict[str, Any]]) -> str:
    """The :func:`rank_settings` table as Markdown."""
    columns = ["setting", "mean abs. error (nats)", "runs", "failed"]
    return markdown_table(
        columns, [(r["setting"], r["mae"], r["runs"], r["failed"]) for r in ranked]
    )


def summary_markdown(summary: Sequence[dict[str, Any]]) -> str:
    """The bias / std table as Markdown."""
    return markdown_table(_SUMMARY_COLUMNS, _summary_rows(summary))


_SUMMARY_COLUMNS = ["task", "true MI", "setting", "mean", "bias", "std", "rel. error", "failed"]


def _summary_rows(summary: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
    keys = ("task", "true_mi", "setting", "mean", "bias", "std")
    return [(*(s[k] for k in keys), f"{100 * s['rel_error']:+.1f}%", s["failed"]) for s in summary]


def print_summary(summary: Sequence[dict[str, Any]], title: str = "MI benchmark") -> None:
    """Print the bias / std table with rich."""
    print_table(title, _SUMMARY_COLUMNS, _summary_rows(summary))


def _label(summary_row: dict[str, Any]) -> str:
    return str(summary_row.get("setting", summary_row["bound"]))


def plot_staircase(
    summary: Sequence[dict[str, Any]], path: str | Path, batch_size: int | None = None
) -> Path:
    """Estimate vs true MI, one line per bound with a ±1 std band, truth and ``log K`` lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    labels = list(dict.fromkeys(_label(s) for s in summary))
    truths = sorted({s["true_mi"] for s in summary})
    for bound in labels:
        pts = sorted((s["true_mi"], s["mean"], s["std"]) for s in summary if _label(s) == bound)
        t = np.array([p[0] for p in pts])
        m = np.array([p[1] for p in pts])
        sd = np.nan_to_num(np.array([p[2] for p in pts]))
        (line,) = ax.plot(t, m, marker="o", label=bound)
        ax.fill_between(t, m - sd, m + sd, color=line.get_color(), alpha=0.2)
    ax.plot(truths, truths, "k--", label="true MI")
    if batch_size:
        ax.axhline(
            math.log(batch_size), color="grey", ls=":", label=f"log K = {math.log(batch_size):.2f}"
        )
    ax.set_xlabel("true MI (nats)")
    ax.set_ylabel("test-split estimate (nats)")
    ax.set_title("MI estimates vs truth (mean ± std over seeds)")
    ax.legend(fontsize=8, ncol=2)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)
