"""``python -m hf_mig`` runs the ``hf-mig`` command line."""

import sys

from hf_mig.cli.main import main

sys.exit(main())
