"""``python -m longrvos_data.cli``: the ``longrvos`` command."""
import sys

from . import main

sys.exit(main())
