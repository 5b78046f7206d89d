"""``python -m hf_mig.train --config RECIPE.yaml`` (also under ``torchrun`` and ``accelerate``)."""

import sys

from hf_mig.train import main

if __name__ == "__main__":
    sys.exit(main())
