"""MT-Bench: generate / judge / score / all (see hf_mig.eval.mt_bench).

Usage: ``python eval/mt_bench.py --help``
"""

import sys

from hf_mig.eval.mt_bench import main

if __name__ == "__main__":
    sys.exit(main())
