"""``python -m service``: the agent (same as ``backbench-agent``)."""

from __future__ import annotations

import sys

from service.agent import main

if __name__ == "__main__":
    sys.exit(main())
