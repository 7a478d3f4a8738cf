"""``python -m neuronwidgets``: install the offline default models, build the course pages."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
