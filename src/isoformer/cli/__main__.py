"""`python -m isoformer.cli ...`: the `isoformer` command."""

import sys

from isoformer.cli import main

sys.exit(main())
