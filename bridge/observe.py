"""Watching a build read: every file a process tree opens, lists or executes, as `strace -ff`
reports it.

A build (`packer build`, its plugins, shell-local, Ansible, the scripts they run) runs under
strace, one trace file per process. `accesses` reads them back into what each process read
(a file opened for reading), listed (a directory's entries) or ran, with the command line of the
process that did it. pipeline/referee.py then judges the reads against the build's identity.

The environment is read from memory, not through the file system: strace does not see it, and
the static rules (templates/environment.py) stay the only judge of it.
"""

from __future__ import annotations

import functools
import logging
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from bridge.errors import BuildError, QueryError

log = logging.getLogger(__name__)

Observe = Literal["required", "auto", "off"]
OBSERVE_MODES: tuple[str, ...] = get_args(Observe)
DEFAULT_OBSERVE: Observe = "auto"

# What strace records: opens (the path as the kernel resolved it, through -y), directory
# listings, program runs, and the forks that say which process a child came from.
_SYSCALLS = (
    "open,openat,openat2,creat,mkdir,mkdirat,execve,execveat,getdents,getdents64,"
    "clone,clone3,fork,vfork"
)
# Longer arguments are cut by strace (a command line in a message needs no more).
_STRING_LIMIT = 4096


@dataclass(frozen=True)
class Access:
    """One file system access of a traced process."""

    kind: Literal["read", "write", "list", "exec", "mkdir"]
    path: str  # absolute, as the kernel resolved it
    pid: int
    command: tuple[str, ...]  # the command line of the process (its last program run)

    @property
    def who(self) -> str:
        """The process as a message names it: its command line, and its pid."""
        shown = " ".join(self.command) if self.command else "a process"
        if len(shown) > 160:
            shown = shown[:157] + "..."
        return f"`{shown}` (pid {self.pid})"


@dataclass(frozen=True)
class Tracer:
    """strace, checked to work here: wraps a command so that its process tree is traced."""

    executable: str
    # Whether the kernel stops a traced process only at the calls traced (seccomp-bpf, strace
    # 5.3 and later): a build then runs at nearly full speed between them.
    filtered: bool = True

    def argv(self, command: Sequence[str], out_dir: Path) -> list[str]:
        """`command` run under strace, each process's trace written to `out_dir`/trace.<pid>."""
        return [
            self.executable,
            *(["--seccomp-bpf"] if self.filtered else []),
            "-ff",
            "-qq",
            "-y",
            "-s",
            str(_STRING_LIMIT),
            "-e",
            "signal=none",
            "-e",
            f"trace={_SYSCALLS}",
            "-o",
            str(out_dir / "trace"),
            "--",
            *command,
        ]


def mode(value: str | None, where: str) -> Observe:
    """An `observe` setting checked: one of required, auto, off (None: the default)."""
    if value is None or value == "":
        return DEFAULT_OBSERVE
    if value not in OBSERVE_MODES:
        raise QueryError(
            f"{where} is {value!r}; it must be one of {', '.join(OBSERVE_MODES)} (whether builds "
            "run under strace so that a read outside the image's identity fails the build)."
        )
    return value  # type: ignore[return-value]


def find(env: Mapping[str, str]) -> tuple[Tracer | None, str]:
    """strace, when it can trace here (on `env`'s PATH); else None and why not."""
    found = shutil.which("strace", path=env.get("PATH"))
    if found is None:
        return None, "strace is not on PATH"
    if _cannot_trace(found, filtered=True) is None:
        return Tracer(found, filtered=True), ""
    problem = _cannot_trace(found, filtered=False)
    if problem is None:
        return Tracer(found, filtered=False), ""
    return None, problem


def unobservable(why: str) -> BuildError:
    """The error of a build that must be observed (observe = required) and cannot be."""
    return BuildError(
        f"Builds must be observed (observe = required), and {why}, so nothing was built. "
        "Install strace (Debian: apt-get install strace; `make setup` does) and run where "
        "processes may be traced (a container needs the SYS_PTRACE capability, or a seccomp "
        "profile that allows ptrace), or set observe (the catalog's, or AMI_BRIDGE_OBSERVE) to "
        "auto or off."
    )


@functools.cache
def _cannot_trace(executable: str, *, filtered: bool) -> str | None:
    """Why strace cannot trace a child here (no ptrace in a locked-down container; with
    `filtered`, no seccomp-bpf in this kernel or strace), or None."""
    try:
        done = subprocess.run(
            [
                executable,
                *(["--seccomp-bpf"] if filtered else []),
                "-f",
                "-qq",
                "-e",
                "trace=openat",
                "-o",
                "/dev/null",
                "--",
                "true",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"strace could not run ({exc})"
    if done.returncode != 0:
        said = " ".join(done.stderr.split())[:200]
        return f"strace cannot trace a process here ({said or f'exit status {done.returncode}'})"
    return None


# One line of a trace: `name(arguments) = result`; an exec's arguments hold its command line.
_CALL = re.compile(r"^(?P<name>\w+)\((?P<args>.*)\)\s+=\s+(?P<result>.*)$")
_RESOLVED = re.compile(r"^(?P<number>\d+)<(?P<path>.*)>$")
_FD = re.compile(r"^\d+<(?P<path>[^>]*)>")
_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')


def accesses(out_dir: Path) -> list[Access]:
    """Every access recorded in `out_dir`'s trace files, each with its process's command line,
    ordered by process and then as it happened."""
    events: dict[int, list[tuple[str, str, str]]] = {}
    for path in sorted(out_dir.glob("trace.*")):
        pid = int(path.suffix.lstrip(".") or 0)
        with path.open(encoding="utf-8", errors="replace") as lines:
            events[pid] = [
                (m["name"], m["args"], m["result"].strip())
                for line in lines
                if (m := _CALL.match(line.rstrip("\n"))) is not None
            ]
    parents = {
        int(result): pid
        for pid, calls in events.items()
        for name, _, result in calls
        if name in {"clone", "clone3", "fork", "vfork"} and result.isdigit()
    }
    first = _commands_at_fork(events, parents)
    found: list[Access] = []
    for pid, calls in sorted(events.items()):
        command = first(pid)
        for name, args, result in calls:
            if name in {"execve", "execveat"} and result == "0":
                command = _command(args)
                program = _strings(args)
                found.append(Access("exec", program[0] if program else "", pid, command))
            elif name in {"open", "openat", "openat2", "creat"}:
                resolved = _RESOLVED.match(result)
                if resolved is None:
                    continue  # failed: nothing was read
                kind = _open_kind(name, args)
                if kind is not None:
                    found.append(Access(kind, _unescape(resolved["path"]), pid, command))
            elif name in {"mkdir", "mkdirat"} and result == "0":
                made = _made_path(name, args)
                if made:
                    found.append(Access("mkdir", made, pid, command))
            elif name in {"getdents", "getdents64"}:
                fd = _FD.match(args)
                if fd is not None:
                    found.append(Access("list", _unescape(fd["path"]), pid, command))
    return found


def _commands_at_fork(
    events: Mapping[int, Sequence[tuple[str, str, str]]], parents: Mapping[int, int]
) -> Callable[[int], tuple[str, ...]]:
    """The command line a process starts with: its parent's at the fork that made it."""

    @functools.cache
    def first(pid: int) -> tuple[str, ...]:
        parent = parents.get(pid)
        if parent is None or parent == pid:
            return ()
        command = first(parent)
        for name, args, result in events.get(parent, ()):
            if name in {"execve", "execveat"} and result == "0":
                command = _command(args)
            elif name in {"clone", "clone3", "fork", "vfork"} and result == str(pid):
                break
        return command

    return first


def _made_path(name: str, args: str) -> str:
    """The absolute path of a directory made ("" when it cannot be told: a relative mkdir)."""
    strings = _strings(args)
    if not strings:
        return ""
    path = strings[0]
    if path.startswith("/"):
        return path
    if name == "mkdirat":
        fd = _FD.match(args) or re.match(r"^AT_FDCWD<(?P<path>[^>]*)>", args)
        if fd is not None:
            return f"{_unescape(fd['path']).rstrip('/')}/{path}"
    return ""


def _open_kind(name: str, args: str) -> Literal["read", "write"] | None:
    """Whether an open read or wrote its file; None for a directory opened to be listed."""
    if "O_DIRECTORY" in args:
        return None
    if name == "creat" or "O_WRONLY" in args or "O_CREAT" in args or "O_TRUNC" in args:
        return "write"
    return "read"


def _command(args: str) -> tuple[str, ...]:
    """An exec's command line: the strings of its argv array."""
    start, end = args.find("["), args.find("]")
    if start < 0 or end < start:
        return ()
    return tuple(_strings(args[start:end]))


def _strings(text: str) -> list[str]:
    return [_unescape(s) for s in _STRING.findall(text)]


def _unescape(text: str) -> str:
    """A string as strace escaped it (C escapes, octal for other bytes), decoded."""
    if "\\" not in text:
        return text
    try:
        raw = text.encode("latin-1", "backslashreplace").decode("unicode_escape")
        return raw.encode("latin-1").decode("utf-8", "replace")
    except (UnicodeDecodeError, UnicodeEncodeError):
        return text


def reads(found: Iterable[Access]) -> list[Access]:
    """The reads and listings among `found` of files the traced processes did not make
    themselves: a file they wrote (a script Packer wrote to /tmp, an output read back), or
    anything in a directory they made (Ansible's temporary directories)."""
    found = list(found)
    written = {a.path for a in found if a.kind == "write"}
    made = tuple(sorted({a.path.rstrip("/") + "/" for a in found if a.kind == "mkdir"}))
    return [
        a
        for a in found
        if a.kind in {"read", "list"}
        and a.path not in written
        and not (a.path + "/").startswith(made)
    ]
