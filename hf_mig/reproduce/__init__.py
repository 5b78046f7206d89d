"""The MIG paper's experiments as runnable plans (``hf-mig reproduce``).

:func:`build_plan` expands an experiment (``table1``, ``pools``, ``labels``, ``threshold``,
``prop-weight``, ``scaling``) at a scale (``paper`` or ``tiny``) into steps: annotate, vocabulary
and label graph, select with each method, train with the matching recipe, evaluate, compare
(ours beside the paper's published numbers) and report. :func:`run_plan` runs them, skipping
finished steps.
"""

from hf_mig.reproduce.experiments import EXPERIMENTS, SCALES, Experiment, Run
from hf_mig.reproduce.outputs import OutputCheck, inspect_output
from hf_mig.reproduce.plan import STAGES, Plan, Step, StepCheck
from hf_mig.reproduce.planner import PlanOptions, build_plan
from hf_mig.reproduce.runner import RunSummary, run_plan

__all__ = [
    "EXPERIMENTS",
    "SCALES",
    "STAGES",
    "Experiment",
    "OutputCheck",
    "Plan",
    "PlanOptions",
    "Run",
    "RunSummary",
    "Step",
    "StepCheck",
    "build_plan",
    "inspect_output",
    "run_plan",
]
