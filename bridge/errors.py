"""The error hierarchy. Every error the bridge expects ends up as one of these."""

from __future__ import annotations


class BridgeError(Exception):
    """Root of every expected failure; its message is shown to the user as is."""


class QueryError(BridgeError):
    """The external-protocol query (or CLI arguments) is malformed."""


class CatalogError(BridgeError):
    """The catalog file is missing, invalid, or inconsistent."""


class FingerprintError(BridgeError):
    """An input of a definition cannot be fingerprinted from git."""


class AwsError(BridgeError):
    """An AWS call failed in a way retries cannot fix."""


class NotFoundError(BridgeError):
    """No usable image exists and the caller asked not to build one."""


class BuildError(BridgeError):
    """Packer failed, or its output could not be understood."""


class ManifestError(BridgeError):
    """A manifest could not be written, read, or validated."""


class LeaseError(BridgeError):
    """Another process holds the build of an image and did not finish in time."""


class Cancelled(BridgeError):
    """Stopped because the run was cancelled: Ctrl-C, or --fail-fast after another failure."""


class RetentionError(BridgeError):
    """gc could not check whether an image is in use, so it deleted nothing unchecked."""


# Exit statuses (README "Exit status").
EXIT_OK = 0
EXIT_ERROR = 1  # bad input (usage, query, catalog) or a failed operation; one paragraph on stderr
EXIT_MISSING = 3  # a definition has no usable image and the caller asked not to build it
EXIT_INTERNAL = 70  # a bug in ami-bridge (EX_SOFTWARE); the traceback is in a crash log
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports a process it ended
