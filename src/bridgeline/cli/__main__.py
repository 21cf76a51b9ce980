"""`python -m bridgeline.cli`: the same command as the `bridgeline` script."""

import sys

from bridgeline.cli.commands import main

sys.exit(main())
