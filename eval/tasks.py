"""Objective benchmarks through lm-eval (optional) and their scoring (see hf_mig.eval.tasks).

Usage: ``python eval/tasks.py --help``
"""

import sys

from hf_mig.eval.tasks import main

if __name__ == "__main__":
    sys.exit(main())
