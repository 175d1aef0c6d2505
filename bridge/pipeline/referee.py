"""Packer is the referee: what a build actually read, judged against the image's identity.

The fingerprint is computed from a static reading of the template (templates/); a build runs
under strace (observe.py), and every repository file it read must be among the fingerprint's
inputs. A read the identity does not cover fails the build before the image is published: a
change to that file would not have rebuilt the image, so a stale image would be handed out.

Reads outside the repository by the build's own processes (a provisioner uploading a file from
the build machine's home or /etc) can change the image too, but are not the repository's to
fingerprint: they are warned about and recorded. The build's tooling (Packer, its plugins, the
programs and libraries a provisioner runs, the system's configuration) is not.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from bridge.fingerprint import InputEntry
from bridge.observe import Access, reads
from bridge.record import Observed, ObservedRead

# Outside the repository: the system's programs, libraries, data and configuration, and the
# kernel's files. What a build reads there is its tooling, not its content.
SYSTEM_PREFIXES = (
    "/usr/",
    "/lib/",
    "/lib32/",
    "/lib64/",
    "/libx32/",
    "/bin/",
    "/sbin/",
    "/opt/",
    "/proc/",
    "/sys/",
    "/dev/",
    "/run/",
    "/var/lib/",
    "/var/cache/",
    "/snap/",
    "/nix/store/",
    "/etc/",
)
# /etc is the system's configuration, except what names this machine or holds a person's or a
# service's own files: a provisioner that uploads one of these puts it in the image.
ETC_CONTENT = ("/etc/hostname", "/etc/machine-id", "/etc/ssh/")
# Under a home directory: caches and configuration of the tools (Ansible's temporary files,
# Packer's plugins and cache, pip's and Python's).
HOME_TOOLING = (".ansible/", ".packer.d/", ".config/packer/", ".cache/", ".local/lib/", ".aws/")


@dataclass(frozen=True)
class Verdict:
    """The judgement of one build's reads."""

    observed: Observed
    # Repository files or directories read that the identity does not cover, with who read them.
    uncovered: tuple[tuple[str, Access], ...]


def judge(
    found: Iterable[Access],
    *,
    root: Path,
    inputs: Sequence[InputEntry],
    blob: Callable[[str], str | None],
) -> Verdict:
    """Judge a traced build run in the exported tree `root` against its identity's `inputs`.

    `blob` gives the git blob of a repository path (None for a path the commit does not have,
    such as a file the build wrote)."""
    found = list(found)
    base = os.path.realpath(root)
    tooling = _installations(found)
    files = {e.path for e in inputs if e.kind == "blob"}
    trees = tuple(e.path.rstrip("/") + "/" for e in inputs if e.kind != "blob")
    everything = any(e.path in {"", "."} for e in inputs if e.kind != "blob")
    repo_reads: dict[str, ObservedRead] = {}
    uncovered: dict[str, Access] = {}
    outside: dict[str, Access] = {}
    for access in reads(found):
        path = access.path
        if path == base or path.startswith(base + os.sep):
            rel = PurePosixPath(os.path.relpath(path, base)).as_posix()
            rel = "" if rel == "." else rel
            if access.kind == "list":
                # A listing shows names: covered when something listed there is an input.
                if not everything and not _holds_input(rel, files, trees):
                    uncovered.setdefault(rel or ".", access)
                continue
            sha = blob(rel)
            if sha is None:
                continue  # not the commit's: written by the build
            covered = everything or rel in files or rel.startswith(trees)
            repo_reads.setdefault(rel, ObservedRead(rel, sha, covered))
            if not covered:
                uncovered.setdefault(rel, access)
        elif access.kind == "read" and not path.startswith(tooling) and _content(path, access):
            outside.setdefault(path, access)
    return Verdict(
        Observed(
            traced=True,
            reads=tuple(sorted(repo_reads.values(), key=lambda r: r.path)),
            outside=tuple(sorted(outside)),
        ),
        tuple(sorted(uncovered.items())),
    )


def _installations(found: Sequence[Access]) -> tuple[str, ...]:
    """The installations of the programs the build ran (a virtualenv's Ansible and the Python
    it runs on, a tool under /opt/x/bin): what a program reads from its own prefix is the
    program, not content. A program is followed through its symlinks and its `#!` line."""
    programs = {a.path for a in found if a.kind == "exec" and a.path.startswith("/")}
    for program in list(programs):
        interpreter = _interpreter(program)
        if interpreter:
            programs.add(interpreter)
    prefixes = set()
    for program in programs:
        for path in {program, os.path.realpath(program)}:
            bin_dir = os.path.dirname(path)
            if os.path.basename(bin_dir) in {"bin", "sbin"}:
                prefixes.add(os.path.dirname(bin_dir).rstrip("/") + "/")
    return tuple(sorted(p for p in prefixes if p != "/"))


def _interpreter(program: str) -> str:
    """The interpreter a script's `#!` line names ("" for none, or a program not readable)."""
    try:
        with open(program, "rb") as f:
            head = f.read(256)
    except OSError:
        return ""
    if not head.startswith(b"#!"):
        return ""
    words = head[2:].split(b"\n", 1)[0].decode("utf-8", "replace").split()
    return words[0] if words and words[0].startswith("/") else ""


def _holds_input(directory: str, files: set[str], trees: tuple[str, ...]) -> bool:
    """Whether `directory` (repository-relative, "" for the root) is or holds an input."""
    if not directory:
        return bool(files or trees)
    head = directory + "/"
    return (
        head.startswith(trees)
        or any(f.startswith(head) for f in files)
        or any(t.startswith(head) for t in trees)
    )


def _content(path: str, access: Access) -> bool:
    """Whether a read outside the repository can be content of the image: a file the build's
    own processes read (not Packer's, whose reads are its configuration and plugins) that is not
    the system's or a tool's."""
    program = os.path.basename(access.command[0]) if access.command else ""
    if program.startswith("packer"):
        return False
    if path.startswith(ETC_CONTENT):
        return True
    if path.startswith(SYSTEM_PREFIXES):
        return False
    home = os.path.expanduser("~")
    if home and path.startswith(home + os.sep):
        return not path[len(home) + 1 :].startswith(HOME_TOOLING)
    # Temporary files the tools make (Packer's scripts, Ansible's modules) are written by the
    # build and dropped by reads(); what is left in /tmp was put there by someone else.
    return True


def refusal(definition: str, verdict: Verdict, *, fate: str) -> str:
    """The one-paragraph error for a build that read outside its identity."""
    shown = verdict.uncovered[:5]
    named = "; ".join(
        f"{'the directory listing of ' if access.kind == 'list' else ''}{path}, read by "
        f"{access.who}"
        for path, access in shown
    )
    more = len(verdict.uncovered) - len(shown)
    if more > 0:
        named += f"; and {more} more"
    return (
        f"The build of {definition!r} read repository files that its identity does not cover: "
        f"{named}. A change to them would not rebuild the image, so a stale image would be "
        f"handed out; the new image was not published ({fate}). List them (or their directory) "
        f"in the definition's `inputs` in the catalog, or make the read visible in the template "
        "(name the file in a provisioner's `script`, `scripts` or `source`, or read it with "
        "`file()`), and build again."
    )
