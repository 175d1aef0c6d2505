"""Running Packer and reading its machine-readable output.

Packer's `-machine-readable` lines are `timestamp,target,type,data...`, with commas inside data
written as `%!(PACKER_COMMA)` and newlines as a literal `\\n`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from bridge.errors import BuildError, Cancelled
from bridge.masking import mask, secrets_of
from bridge.observe import Tracer

log = logging.getLogger(__name__)

_ARTIFACT = re.compile(r"^([a-z]{2}(?:-[a-z]+)+-\d):(ami-[0-9a-f]+)$")


@dataclass(frozen=True)
class Line:
    """One machine-readable output line."""

    target: str
    type: str
    data: tuple[str, ...]


@dataclass(frozen=True)
class Plugin:
    """A plugin an HCL2 template requires (`packer { required_plugins { NAME = {...} } }`)."""

    source: str  # e.g. github.com/hashicorp/amazon
    version: str  # the constraint as written, e.g. ">= 1.2.0"; "" when none is given

    def __str__(self) -> str:
        return f"{self.source} {self.version or '(any version)'}"


@dataclass(frozen=True)
class BuildResult:
    """What a Packer build produced."""

    amis: dict[str, str]  # region -> AMI ID


def parse_line(raw: str) -> Line | None:
    """Parse one machine-readable line; None for anything else."""
    fields = raw.rstrip("\r\n").split(",")
    if len(fields) < 3 or not fields[0].isdigit():
        return None
    data = tuple(
        f.replace("%!(PACKER_COMMA)", ",").replace("\\n", "\n").replace("\\r", "\r")
        for f in fields[3:]
    )
    return Line(fields[1], fields[2], data)


def artifacts(lines: Iterable[Line]) -> dict[str, str]:
    """Region -> AMI from the `artifact ... id` lines (`us-east-1:ami-1,eu-west-1:ami-2`)."""
    amis: dict[str, str] = {}
    for line in lines:
        if line.type == "artifact" and len(line.data) >= 3 and line.data[1] == "id":
            for part in line.data[2].split(","):
                match = _ARTIFACT.match(part.strip())
                if match:
                    amis[match.group(1)] = match.group(2)
    return amis


def manifest_artifacts(path: Path) -> dict[str, str]:
    """Region -> AMI of the last build in a Packer manifest post-processor file.

    This is how the seed pipeline handed a just-built parent to the next job.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        builds = data["builds"]
        last_run = data.get("last_run_uuid")
        chosen = [b for b in builds if b.get("packer_run_uuid") == last_run] or builds
        ids = chosen[-1]["artifact_id"]
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise BuildError(
            f"The Packer manifest {path} cannot be read ({exc}). It must be the JSON written by "
            "Packer's manifest post-processor, with builds[].artifact_id."
        ) from None
    amis: dict[str, str] = {}
    for part in str(ids).split(","):
        match = _ARTIFACT.match(part.strip())
        if match:
            amis[match.group(1)] = match.group(2)
    return amis


# Packer reads a variable's value from PKR_VAR_<name> in its environment (HCL2 templates).
VARIABLE_ENV_PREFIX = "PKR_VAR_"


class PackerRunner:
    """Runs the `packer` program with argv lists, never a shell."""

    def __init__(
        self,
        executable: str = "packer",
        *,
        env: Mapping[str, str],
        echo: TextIO | None = None,
        cache: Path | None = None,
        verbose: bool = False,
    ) -> None:
        """`echo` gets progress lines (Packer's steps, errors and the artifacts); with `verbose`,
        every line Packer shows, provisioner output included."""
        self._executable = executable
        self._verbose = verbose
        self._cache = cache
        # Packer's update check would reach out to the internet on every run. A variable's value
        # from the environment (PKR_VAR_*) reaches a build only where its definition's `env`
        # lists it, so that its value is in the fingerprint (templates/environment.py).
        self._env = {
            **{k: v for k, v in env.items() if not k.startswith(VARIABLE_ENV_PREFIX)},
            "CHECKPOINT_DISABLE": "1",
        }
        self._variables = {k: v for k, v in env.items() if k.startswith(VARIABLE_ENV_PREFIX)}
        # Masked in all it writes: a provisioner may print its environment.
        self._secrets = secrets_of(self._env)
        self._echo = echo
        self._version: str | None = None
        # Builds running now (several, with --jobs), and whether the run was interrupted.
        self._running: set[subprocess.Popen[str]] = set()
        self._lock = threading.Lock()
        self._interrupted = False

    @property
    def environment(self) -> Mapping[str, str]:
        """The environment Packer runs in (the bridge's, without the PKR_VAR_* a definition does
        not list); the image tests run in it too (gates.py)."""
        return self._env

    def interrupt(self) -> None:
        """Ask every running build to cancel and clean up (Packer's own Ctrl-C handling); builds
        not started yet are refused."""
        with self._lock:
            self._interrupted = True
            running = list(self._running)
        for proc in running:
            log.warning("interrupted: asking Packer (pid %d) to cancel and clean up", proc.pid)
            try:
                # The whole group: Packer re-executes itself under a wrapper process.
                os.killpg(proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass

    def _argv(self, *args: str) -> list[str]:
        found = shutil.which(self._executable, path=self._env.get("PATH"))
        if found is None:
            raise BuildError(
                f"Packer ({self._executable!r}) is not on PATH, so the missing image cannot be "
                "built. Install Packer (Debian: apt-get install packer; or `make setup`), or set "
                "on_missing=fail/report to resolve without building."
            )
        return [found, *args]

    def _run(self, args: Sequence[str], cwd: Path) -> list[Line]:
        proc = subprocess.run(
            self._argv(*args),
            cwd=cwd,
            env=self._env,
            capture_output=True,
            stdin=subprocess.DEVNULL,
            text=True,
            check=False,
        )
        out = mask(proc.stdout, self._secrets)
        lines = [ln for ln in map(parse_line, out.splitlines()) if ln is not None]
        if proc.returncode != 0:
            errors = _errors(lines) or [
                mask(proc.stderr, self._secrets).strip() or f"exit status {proc.returncode}"
            ]
            raise BuildError(
                f"`packer {' '.join(args)}` failed: {' | '.join(errors)}. Fix the template and "
                "run again."
            )
        return lines

    def version(self, cwd: Path) -> str:
        """Packer's version, e.g. "1.6.6", cached per binary in `cache_dir` when given."""
        if self._version is None:
            key = self._binary_key()
            cached = self._read_cache(key)
            if cached is None:
                lines = self._run(["version", "-machine-readable"], cwd)
                found = [ln.data[0] for ln in lines if ln.type == "version" and ln.data]
                cached = found[0] if found else "unknown"
                self._write_cache(key, cached)
            self._version = cached
        return self._version

    def _binary_key(self) -> str:
        path = self._argv()[0]
        stat = os.stat(path)
        return f"{path}:{stat.st_size}:{stat.st_mtime_ns}"

    def _read_cache(self, key: str) -> str | None:
        if self._cache is None:
            return None
        try:
            data = json.loads(self._cache.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        value = data.get(key) if isinstance(data, dict) else None
        return value if isinstance(value, str) else None

    def _write_cache(self, key: str, version: str) -> None:
        if self._cache is None:
            return
        try:
            self._cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._cache.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({key: version}), encoding="utf-8")
            os.replace(tmp, self._cache)
        except OSError as exc:
            log.debug("cannot cache the Packer version: %s", exc)

    def init(self, template: str, cwd: Path, plugins: Mapping[str, Plugin]) -> None:
        """Run `packer init TEMPLATE` in `cwd`, installing the `plugins` the template requires
        into Packer's plugin directory (the user's: PACKER_PLUGIN_PATH and the rest of the
        environment are passed as they are)."""
        with self._lock:
            if self._interrupted:
                raise Cancelled(f"Cancelled before `packer init {template}` started.")
        argv = self._argv("init", template)
        log.info("packer init %s: it requires %s", template, _described(plugins))
        proc = subprocess.run(
            argv,
            cwd=cwd,
            env=self._env,
            capture_output=True,
            stdin=subprocess.DEVNULL,
            text=True,
            check=False,
        )
        for line in proc.stdout.splitlines():
            if line.strip():
                log.info("packer init: %s", line.strip())
        if proc.returncode == 0:
            return
        if proc.returncode == _NO_SUCH_COMMAND:
            raise BuildError(
                f"`packer init {template}` failed, so nothing is built from {template}: this "
                "Packer has no `init` command (it is older than 1.7), and the template "
                f"requires plugins, {_described(plugins)}, which only Packer 1.7 or later "
                "installs and builds with. Install Packer 1.7 or later (AMI_BRIDGE_PACKER "
                "names the program)."
            )
        said = [
            " ".join(ln.split())
            for ln in mask(proc.stderr, self._secrets).splitlines()
            if ln.strip()
        ]
        quoted = " | ".join(said[-_INIT_ERROR_LINES:]) or f"exit status {proc.returncode}"
        raise BuildError(
            f"`packer init {template}` failed, so nothing is built from {template}: it could "
            f"not install the plugins the template requires, {_described(plugins)}. Packer "
            f"said: {quoted}. Check that each version constraint matches a released version "
            "of its plugin and that this machine reaches the plugin sources (for github.com "
            "sources, github.com and api.github.com), or install the plugins beforehand into "
            "Packer's plugin directory, the one PACKER_PLUGIN_PATH names (`packer init` where "
            "they can be reached)."
        )

    def build(
        self,
        template: str,
        variables: Mapping[str, str],
        cwd: Path,
        log_path: Path,
        *,
        label: str = "",
        only: str | None = None,
        var_files: Sequence[str] = (),
        listed: Collection[str] = (),
        traced: tuple[Tracer, Path] | None = None,
    ) -> BuildResult:
        """Run `packer build` (of the build `only` names, with `var_files` in order, then
        `variables`, which win), streaming its output to `log_path` (and progress to echo, each
        line prefixed with `label`, so concurrent builds read apart). The PKR_VAR_* variables
        among `listed` (the definition's `env`) are passed on; no others. With `traced` (a tracer
        and a directory), Packer and every process it starts run under the tracer, which writes
        its traces there (observe.py)."""
        args = ["build", "-machine-readable", "-color=false"]
        if only is not None:
            args.append(f"-only={only}")
        for path in var_files:
            args += ["-var-file", path]
        for name, value in sorted(variables.items()):
            args += ["-var", f"{name}={value}"]
        # By its absolute path: Packer's `path.root` and the base of a relative path in an HCL2
        # file function are then the template's directory (as with `packer build .` there),
        # while the paths its blocks name stay relative to the repository root (the cwd).
        args.append(str(cwd / template))
        log_path.parent.mkdir(parents=True, exist_ok=True)
        lines: list[Line] = []
        argv = self._argv(*args)
        if traced is not None:
            argv = traced[0].argv(argv, traced[1])
        started = time.monotonic()
        with log_path.open("w", encoding="utf-8") as logfile:
            with self._lock:
                if self._interrupted:
                    raise Cancelled(f"Cancelled before Packer started building {template}.")
                proc = subprocess.Popen(
                    argv,
                    cwd=cwd,
                    env={**self._env, **{k: v for k, v in self._variables.items() if k in listed}},
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    text=True,
                    # Its own session: a Ctrl-C reaches Packer once, forwarded by interrupt(), so
                    # it cancels and cleans up (instance, key pair, security group) instead of
                    # being killed twice.
                    start_new_session=True,
                )
                self._running.add(proc)
            assert proc.stdout is not None
            try:
                # To the end, cancellation and clean-up included.
                for raw in proc.stdout:
                    raw = mask(raw, self._secrets)
                    logfile.write(raw)
                    logfile.flush()
                    line = parse_line(raw)
                    if line is None:
                        continue
                    lines.append(line)
                    self._progress(line, label, time.monotonic() - started)
            finally:
                code = proc.wait()
                with self._lock:
                    self._running.discard(proc)
        if self._interrupted and code != 0:
            raise Cancelled(f"Packer cancelled the build of {template} (log: {log_path}).")
        if code != 0:
            # Packer names files by the exported tree's path; the repository's is the one to fix.
            quoted = (" | ".join(_errors(lines)) or f"exit status {code}").replace(f"{cwd}/", "")
            raise BuildError(
                f"Packer failed to build {template}: {quoted}. The full output is in {log_path}. "
                "Fix the template or its provisioners and run again; nothing was tagged or "
                "published."
            )
        return BuildResult(amis=artifacts(lines))

    def _progress(self, line: Line, label: str, elapsed: float) -> None:
        """One line per Packer step (`==>`), error and artifact (`-->`), each with the build's
        elapsed time and label, so concurrent builds read apart; every line when verbose."""
        if self._echo is None or line.type != "ui" or len(line.data) < 2:
            return
        kind, text = line.data[0], line.data[1].rstrip()
        shown = text.strip()
        if "artifacts of successful builds are:" in shown:
            return  # the `-->` lines that follow are the artifacts themselves
        if not (kind == "error" or shown.startswith(("==>", "-->")) or self._verbose):
            return
        prefix = f"[{label}] " if label else ""
        if self._verbose:
            parts = text.splitlines() or [""]
        elif shown.startswith("-->"):  # an artifact: "AMIs were created:", then one per region
            parts = [" ".join(p.strip() for p in shown.splitlines())]
        else:
            parts = [shown.splitlines()[0]]
        for part in parts:
            print(f"  {elapsed:5.0f}s {prefix}packer: {part}", file=self._echo)
        self._echo.flush()


# Packer's exit status for a command it does not have (`init` before Packer 1.7).
_NO_SUCH_COMMAND = 127
# At most this many of `packer init`'s last stderr lines go into a message.
_INIT_ERROR_LINES = 6


def _described(plugins: Mapping[str, Plugin]) -> str:
    """`amazon (github.com/hashicorp/amazon >= 1.2.0), ...`: as an error names them."""
    return ", ".join(f"{name} ({plugin})" for name, plugin in sorted(plugins.items()))


# Packer's own summaries of a failure, which repeat the error lines they follow.
_SUMMARY = re.compile(r"^(Build '.*' errored after |==> Some builds didn't complete|--> )")
# At most this many error lines go into a message (the last ones; the log has them all).
MAX_ERROR_LINES = 12


def _errors(lines: Iterable[Line]) -> list[str]:
    """What went wrong, as Packer said it: the `ui,error` lines (a provisioner's stderr, a
    builder's failure), then each build's `error` line; whitespace folded, repeats dropped."""
    causes: list[str] = []
    final: list[str] = []
    for line in lines:
        if line.type == "ui" and len(line.data) >= 2 and line.data[0] == "error":
            text = " ".join(line.data[1].split())
            if text and not _SUMMARY.match(text):
                causes.append(text.removeprefix("==> "))
        elif line.type == "error" and line.data:
            final.append(" ".join(line.data[0].split()))
    seen = list(dict.fromkeys([*causes, *final]))
    if len(seen) > MAX_ERROR_LINES:
        seen = [f"({len(seen) - MAX_ERROR_LINES} earlier lines)", *seen[-MAX_ERROR_LINES:]]
    return seen
