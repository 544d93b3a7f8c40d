"""backbench agent: the headless daemon that runs jobs and streams telemetry (issue 4)."""

from __future__ import annotations
