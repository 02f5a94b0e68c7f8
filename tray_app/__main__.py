"""`python -m tray_app`: the same entry point as the `claude-tray` command."""

import sys

from tray_app.app import main

sys.exit(main())
