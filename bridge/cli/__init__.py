"""The command line and Terraform's protocol: `main` (`dispatch.py`), the argument parser, one
module per command (`commands/`), what commands print (`render.py`, `graph.py`, `report.py`),
the external protocol (`protocol.py`), and from flags or a query to a workflow's context
(`workspace.py`)."""

from __future__ import annotations

from bridge.cli.dispatch import main

__all__ = ["main"]
