"""`python -m hub`: the command line of MCP Hub (see `hub.cli`)."""

import sys

from hub.cli import main

sys.exit(main())
