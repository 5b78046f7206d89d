"""The MIG paper's comparison table from result files (see hf_mig.eval.compare).

Usage: ``python eval/compare.py --help``
"""

import sys

from hf_mig.eval.compare import main

if __name__ == "__main__":
    sys.exit(main())
