"""Experiments and benchmark harnesses built on the library (never imported by it).

Each module exposes ``run(config) -> result`` with a small frozen config dataclass, and the
result's ``write(out)`` puts ``results.json``, CSV tables and PNG plots into ``out``:

- :mod:`~infomax.experiments.demo`: ``infomax demo``, the tour of the five capabilities.
- :mod:`~infomax.experiments.mi_benchmark`: ``infomax bench mi``, every bound on ground-truth
  tasks (and ``merge_results`` for ``bench mi-merge``).
- :mod:`~infomax.experiments.loss_bench`: ``infomax bench losses``, NT-Xent time and memory of
  the tiled kernels against the dense reference and peers.
- :mod:`~infomax.experiments.rpm_demo`: ``infomax rpm --demo``, the RPM ELBO demonstrations.
- :mod:`~infomax.experiments.identify_table`: ``infomax identify --table``, the matched vs
  mismatched identifiability grid (Zimmermann et al. 2021).
- :mod:`~infomax.experiments.dm_sweep`: ``infomax dm``, the σ sweep of noise-injected Deep
  InfoMax with its trade-off plots.

Library functions never write into a documentation folder: copying figures there
(``--docs-dir``) is the command line's job.
"""
