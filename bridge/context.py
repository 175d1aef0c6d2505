"""What a workflow works with: one catalog in one repository, the AWS clients, the settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import git

    from bridge.aws.clients import AwsClients
    from bridge.catalog import Catalog
    from bridge.settings import Settings


@dataclass(frozen=True)
class Context:
    """The inputs every workflow (resolve, revoke, channels, gc) shares; built once by the CLI."""

    repo: git.Repo
    catalog: Catalog
    clients: AwsClients
    settings: Settings
