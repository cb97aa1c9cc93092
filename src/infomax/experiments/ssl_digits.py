"""A short SimCLR run on scikit-learn's bundled digits (the SSL half of ``infomax demo``).

NT-Xent, MLP encoder, 30 epochs: well under a minute on CPU. Next to the linear-probe and kNN
accuracy of :func:`infomax.ssl.train_ssl` it reports the raw-pixel logistic-regression accuracy
for comparison.

``run(SSLDigitsConfig())`` trains into a temporary run folder and returns an
:class:`SSLDigitsResult`; its ``write(out)`` copies the run (``checkpoint.pt``,
``ssl_config.json``, ``results.json``, ``history.csv``, ``curves.png``) into ``out``.
:func:`demo_simclr_digits` trains straight into a folder.

>>> SSLDigitsConfig(seed=3).ssl_config().epochs
30
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._checks import check_int
from ..data import load_dataset
from ..eval import linear_probe
from ..reports import atomic_write_bytes
from ..ssl import SSLConfig, train_ssl


@dataclass(frozen=True)
class SSLDigitsConfig:
    """Settings of :func:`run`: the seed of the run and whether to show its progress."""

    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        check_int("seed", self.seed, 0)

    def ssl_config(self) -> SSLConfig:
        """The :class:`~infomax.ssl.SSLConfig` of the run (SimCLR, NT-Xent, digits)."""
        return SSLConfig(
            method="simclr",
            data="digits",
            epochs=30,
            batch_size=256,
            lr=2e-3,
            temperature=0.5,
            seed=self.seed,
            progress=self.progress,
        )


@dataclass
class SSLDigitsResult:
    """The run's metrics (:func:`demo_simclr_digits`); its files wait in a temporary folder
    for :meth:`write`."""

    config: SSLDigitsConfig
    metrics: dict[str, Any]
    run_dir: tempfile.TemporaryDirectory[str] = field(repr=False, compare=False)

    def write(self, out: str | Path) -> Path:
        """Copy the run's files into ``out`` (replacing those of an earlier run)."""
        folder = Path(out)
        run_dir = Path(self.run_dir.name)
        for path in sorted(p for p in run_dir.iterdir() if p.is_file()):
            atomic_write_bytes(folder / path.name, path.read_bytes())
        return folder


def demo_simclr_digits(out_dir: str | Path, seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Train :meth:`SSLDigitsConfig.ssl_config` into ``out_dir`` (a previous run there is
    replaced: ``overwrite=True``); returns :func:`~infomax.ssl.train_ssl`'s metrics plus
    ``raw_pixel_probe_acc``."""
    config = SSLDigitsConfig(seed=seed, progress=progress).ssl_config()
    metrics = train_ssl(config, out_dir, overwrite=True)
    ds = load_dataset("digits")
    metrics["raw_pixel_probe_acc"] = linear_probe(
        ds.train_x.flatten(1).float(), ds.train_y, ds.test_x.flatten(1).float(), ds.test_y
    )
    return metrics


def run(config: SSLDigitsConfig) -> SSLDigitsResult:
    """:func:`demo_simclr_digits` into a temporary folder (``train_ssl`` needs a run folder)."""
    run_dir = tempfile.TemporaryDirectory(prefix="infomax-simclr-digits-")
    metrics = demo_simclr_digits(run_dir.name, seed=config.seed, progress=config.progress)
    return SSLDigitsResult(config, metrics, run_dir)
