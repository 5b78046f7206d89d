"""WildBench v2: generate / judge / score / all (see hf_mig.eval.wildbench).

Usage: ``python eval/wildbench.py --help``
"""

import sys

from hf_mig.eval.wildbench import main

if __name__ == "__main__":
    sys.exit(main())
