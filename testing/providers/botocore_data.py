"""One botocore Loader per process for the aws stand-in (terraform_provider_aws.py).

A Loader keeps what it parsed: the service models, endpoint rules and partitions, all static
data of the installed botocore. The warm server (warm.py) makes the stand-in's clients once in
its `warm_up`, so each provider it forks starts with them parsed; a cold start parses them
itself. It is a module of its own because a script's globals are not shared: the warm server
runs the script's code again as `__main__` in each child, while imported modules stay as the
server left them.
"""

from __future__ import annotations

from typing import Any

_LOADER: Any = None


def loader() -> Any:
    """This process's Loader."""
    global _LOADER
    if _LOADER is None:
        from botocore.loaders import Loader

        _LOADER = Loader()
    return _LOADER


def session() -> Any:
    """A new botocore session on this process's Loader. A session reads the environment
    (endpoint, credentials, region) when it makes a client, so one made in a forked provider
    reads that start's."""
    import botocore.session

    made = botocore.session.get_session()
    made.register_component("data_loader", loader())
    return made
