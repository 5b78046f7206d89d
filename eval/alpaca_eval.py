"""AlpacaEval 2: generate / judge / score / all (see hf_mig.eval.alpaca_eval).

Usage: ``python eval/alpaca_eval.py --help``
"""

import sys

from hf_mig.eval.alpaca_eval import main

if __name__ == "__main__":
    sys.exit(main())
