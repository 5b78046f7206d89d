"""``python -m hf_mig`` runs the ``hf-mig`` command line."""

import sys

from .cli import main

sys.exit(main())
