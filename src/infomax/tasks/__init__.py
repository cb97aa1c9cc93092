"""Ground-truth MI tasks (SPEC §2): samplers of ``(x, y)`` with exactly known MI in nats.

Importing this package fills the ``TASKS`` and ``TRANSFORMS`` registries.

>>> from infomax.tasks import task_from_string
>>> task = task_from_string("cubic(gaussian:dim=5,mi=2)")
>>> x, y = task.sample(8, seed=0)
>>> task.id, x.shape, task.mutual_information
('cubic(gaussian-d5-mi2)', (8, 5), 2.0)
"""

from __future__ import annotations

from infomax.registry import TASKS, TRANSFORMS
from infomax.tasks.base import Task
from infomax.tasks.gaussian import (
    CorrelatedGaussian,
    DenseGaussian,
    GaussianWithCovariance,
    SparseGaussian,
    dense_covariance,
    mi_from_rho,
    rho_from_mi,
    sparse_covariance,
    staircase,
)
from infomax.tasks.spec import SUITES, make_task, task_from_string, tasks_from_string
from infomax.tasks.student import MultivariateStudentT, student_t_mi_correction
from infomax.tasks.transforms import Transform, TransformedTask, spiral, transformed
from infomax.tasks.uniform import AdditiveUniformNoise, additive_uniform_mi

__all__ = [
    "SUITES",
    "TASKS",
    "TRANSFORMS",
    "AdditiveUniformNoise",
    "CorrelatedGaussian",
    "DenseGaussian",
    "GaussianWithCovariance",
    "MultivariateStudentT",
    "SparseGaussian",
    "Task",
    "Transform",
    "TransformedTask",
    "additive_uniform_mi",
    "dense_covariance",
    "make_task",
    "mi_from_rho",
    "rho_from_mi",
    "sparse_covariance",
    "spiral",
    "staircase",
    "student_t_mi_correction",
    "task_from_string",
    "tasks_from_string",
    "transformed",
]
