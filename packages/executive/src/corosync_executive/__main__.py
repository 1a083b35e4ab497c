"""``python -m corosync_executive``: the daemon, as the ``pycorosync`` command."""

from __future__ import annotations

from corosync_executive._main import main

if __name__ == "__main__":
    raise SystemExit(main())
