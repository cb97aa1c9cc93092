"""Experiments and benchmark harnesses built on the library (never imported by it).

Each module exposes ``run(config) -> result`` with a small frozen config dataclass, and the
result's ``write(out)`` puts ``results.json``, CSV tables and PNG plots into ``out``:

- :mod:`~infomax.experiments.demo`: ``infomax demo``, the quick tour (MI staircase + SimCLR).
- :mod:`~infomax.experiments.mi_benchmark`: ``infomax bench mi``, every bound on ground-truth
  tasks (and ``merge_results`` for ``bench mi-merge``).
- :mod:`~infomax.experiments.loss_bench`: ``infomax bench losses``, NT-Xent time and memory of
  the tiled kernels against the dense reference and peers.
- :mod:`~infomax.experiments.rpm_demo`: ``infomax rpm --demo``, the RPM ELBO demonstrations.
"""
