"""``python -m totem.testing``: the same as ``pycorosync-sim``."""

from __future__ import annotations

import sys

from totem.testing._cli import main

sys.exit(main())
