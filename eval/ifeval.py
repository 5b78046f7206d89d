"""IFEval: generate responses and score them offline (see hf_mig.eval.ifeval).

Usage: ``python eval/ifeval.py --help``
"""

import sys

from hf_mig.eval.ifeval import main

if __name__ == "__main__":
    sys.exit(main())
