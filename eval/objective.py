"""Objective benchmarks (lm-eval, optional) and IFEval scoring (see hf_mig.eval.objective).

Usage: ``python eval/objective.py --help``
"""

import sys

from hf_mig.eval.objective import main

if __name__ == "__main__":
    sys.exit(main())
