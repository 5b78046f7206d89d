"""Deprecated path: :mod:`hf_mig.eval.tasks` (lm-eval's objective benchmarks) and
:mod:`hf_mig.eval.ifeval` (IFEval's offline checkers). Importing it warns; it goes away in the
next release."""

import sys
import warnings

from hf_mig.eval.ifeval import *  # noqa: F403
from hf_mig.eval.ifeval import __all__ as _ifeval_all
from hf_mig.eval.tasks import *  # noqa: F403
from hf_mig.eval.tasks import __all__ as _tasks_all

warnings.warn(
    "hf_mig.eval.objective moved to hf_mig.eval.tasks (lm-eval) and hf_mig.eval.ifeval "
    "(IFEval offline); the old path goes away in the next release",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = sorted(set(_ifeval_all) | set(_tasks_all))

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())  # noqa: F405
