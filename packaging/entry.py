"""The frozen app's entry script: what `claude-tray` runs, with nothing else in it.

PyInstaller needs a script outside the package (freezing `tray_app/__main__.py` would put
`tray_app/` itself on the import path, so its modules could load twice under two names).
"""

import sys

from tray_app.app import main

if __name__ == "__main__":
    sys.exit(main())
