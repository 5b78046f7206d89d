"""The MIG paper's experiments as runnable plans (``hf-mig reproduce``).

:func:`build_plan` expands an experiment (``table1``, ``pools``, ``labels``, ``threshold``,
``prop-weight``, ``scaling``) at a scale (``paper`` or ``tiny``) into steps: annotate, vocabulary
and label graph, select with each method, train with the matching recipe, evaluate, compare
(ours beside the paper's published numbers) and report. :func:`run_plan` runs them, skipping
finished steps.
"""

from .experiments import EXPERIMENTS, SCALES, Experiment, Run
from .plan import STAGES, Plan, Step
from .planner import PlanOptions, build_plan
from .runner import RunSummary, run_plan

__all__ = [
    "EXPERIMENTS",
    "SCALES",
    "STAGES",
    "Experiment",
    "Plan",
    "PlanOptions",
    "Run",
    "RunSummary",
    "Step",
    "build_plan",
    "run_plan",
]
