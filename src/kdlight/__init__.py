"""kdlight: distil a seq2seq teacher's gradient x input rationales into a small T5 student."""

import os as _os
import sys as _sys

__version__ = "0.1.0"

# `python -m kdlight.<command>` puts the current folder first on sys.path, so a module file in it (say an
# export folder someone shared, holding a `json.py`) would be imported in place of the real one. While
# runpy imports this package, argv[0] is "-m": drop that entry before anything else is imported. Plugins
# the user names are still found in the current folder (kdlight.utils.plugins looks there on purpose).
if _sys.argv[:1] == ["-m"] and _sys.path and _sys.path[0] in ("", _os.getcwd()):
    del _sys.path[0]
