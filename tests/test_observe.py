"""Reading strace's traces (observe.py) and judging a build's reads (pipeline/referee.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bridge import observe
from bridge.fingerprint import InputEntry
from bridge.observe import Access
from bridge.pipeline import referee

ROOT = "/state/trees/abc"
PACKER = ("/usr/bin/packer", "build", "t.json")


def write_traces(directory: Path, traces: dict[int, str]) -> Path:
    for pid, text in traces.items():
        (directory / f"trace.{pid}").write_text(text.lstrip("\n"))
    return directory


def test_each_access_carries_the_command_line_of_its_process(tmp_path):
    found = observe.accesses(
        write_traces(
            tmp_path,
            {
                100: f"""
execve("/usr/bin/packer", ["packer", "build", "t.json"], 0x7ffd /* 30 vars */) = 0
openat(AT_FDCWD<{ROOT}>, "t.json", O_RDONLY|O_CLOEXEC) = 3<{ROOT}/t.json>
openat(AT_FDCWD<{ROOT}>, "missing.json", O_RDONLY|O_CLOEXEC) = -1 ENOENT (No such file or directory)
openat(AT_FDCWD<{ROOT}>, "/tmp/packer-shell1", O_RDWR|O_CREAT|O_TRUNC|O_CLOEXEC, 0600) = 4</tmp/packer-shell1>
clone(child_stack=NULL, flags=CLONE_VM|CLONE_VFORK|SIGCHLD) = 101
""",
                101: f"""
execve("/bin/sh", ["/bin/sh", "-c", "/tmp/packer-shell1"], 0x7ffd /* 30 vars */) = 0
openat(AT_FDCWD<{ROOT}>, "/tmp/packer-shell1", O_RDONLY) = 3</tmp/packer-shell1>
clone(child_stack=NULL, flags=SIGCHLD) = 102
clone(child_stack=NULL, flags=SIGCHLD) = 103
""",
                102: f"""
execve("/usr/bin/cat", ["cat", "with \\"quotes\\"\\n"], 0x55 /* 30 vars */) = 0
openat(AT_FDCWD<{ROOT}>, "shared/motd.txt", O_RDONLY) = 3<{ROOT}/shared/motd.txt>
""",
                103: f"""
openat(AT_FDCWD<{ROOT}>, "lib", O_RDONLY|O_NONBLOCK|O_CLOEXEC|O_DIRECTORY) = 3<{ROOT}/lib>
getdents64(3<{ROOT}/lib>, 0x5 /* 4 entries */, 32768) = 112
""",
            },
        )
    )
    assert Access("read", f"{ROOT}/t.json", 100, ("packer", "build", "t.json")) in found
    assert Access("write", "/tmp/packer-shell1", 100, ("packer", "build", "t.json")) in found
    assert Access("read", f"{ROOT}/shared/motd.txt", 102, ("cat", 'with "quotes"\n')) in found
    # A child that runs no program of its own is its parent's command at the fork.
    sh = ("/bin/sh", "-c", "/tmp/packer-shell1")
    assert Access("list", f"{ROOT}/lib", 103, sh) in found
    assert not any(a.path.endswith("missing.json") for a in found)  # a failed open read nothing
    assert not any(a.kind == "read" and a.path == f"{ROOT}/lib" for a in found)  # O_DIRECTORY
    # The script Packer wrote is no read of anyone's.
    assert [a.path for a in observe.reads(found) if "packer-shell" in a.path] == []


def test_strace_traces_a_real_process_tree(tmp_path):
    tracer, why = observe.find({"PATH": "/usr/bin:/bin"})
    assert tracer is not None, f"strace cannot trace here: {why} (make setup installs strace)"
    (tmp_path / "data.txt").write_text("x")
    (tmp_path / "traces").mkdir()
    argv = tracer.argv(
        ["/bin/sh", "-c", "cat data.txt > /dev/null; ls > /dev/null"], tmp_path / "traces"
    )
    subprocess.run(argv, cwd=tmp_path, check=True)
    found = observe.accesses(tmp_path / "traces")
    data = str((tmp_path / "data.txt").resolve())
    assert any(a.kind == "read" and a.path == data and a.command[0] == "cat" for a in found)
    assert any(a.kind == "list" and a.path == str(tmp_path.resolve()) for a in found)


def entries(*paths: str) -> tuple[InputEntry, ...]:
    return tuple(
        InputEntry(p.rstrip("/"), "040000" if p.endswith("/") else "100644",
                   "tree" if p.endswith("/") else "blob", "0" * 40)
        for p in paths
    )  # fmt: skip


def blobs(path: str) -> str | None:
    """Every path is the commit's except what the build wrote (under out/)."""
    return None if path.startswith("out/") else "b" * 40


def read(path: str, command=("cat", "x"), kind="read") -> Access:
    return Access(kind, path, 7, command)


@pytest.mark.parametrize(
    ("access", "inputs", "uncovered"),
    [
        (read(f"{ROOT}/base/base.json"), entries("base/base.json"), []),
        (read(f"{ROOT}/base/tasks/a.sh"), entries("base/"), []),
        (read(f"{ROOT}/shared/motd.txt"), entries("base/"), ["shared/motd.txt"]),
        (read(f"{ROOT}/based/x.sh"), entries("base/"), ["based/x.sh"]),  # a prefix is no parent
        (read(f"{ROOT}/out/built.txt"), entries("base/"), []),  # the build's own output
        (read(f"{ROOT}/shared", kind="list"), entries("shared/motd.txt"), []),
        (read(f"{ROOT}", kind="list"), entries("base/"), []),
        (read(f"{ROOT}/other", kind="list"), entries("base/"), ["other"]),
        (read(f"{ROOT}/base/sub", kind="list"), entries("base/"), []),
    ],
)
def test_a_read_counts_when_the_identity_covers_it(access, inputs, uncovered):
    verdict = referee.judge([access], root=Path(ROOT), inputs=inputs, blob=blobs)
    assert [path for path, _ in verdict.uncovered] == uncovered


def test_reads_are_recorded_with_their_blob_and_outside_reads_of_the_builds_processes():
    found = [
        read(f"{ROOT}/base/base.json", PACKER),
        read("/etc/hostname"),
        read("/etc/hostname", PACKER),  # Packer's own
        read("/usr/lib/x86_64-linux-gnu/libc.so.6"),
        read("/etc/ld.so.cache"),
        read("/home/ci/secrets/banner.txt"),
        read("/tmp/upload/banner.txt"),
        read("/tmp/packer-shell1"),
        read("/tmp/packer-shell1", kind="write"),
        # A program's own installation (a virtualenv's Ansible) is the program, not content.
        read("/venv/bin/ansible-playbook", ("ansible-playbook",), kind="exec"),
        read("/venv/lib/python3/site-packages/ansible/__init__.py", ("ansible-playbook",)),
        read("/etc/ansible/ansible.cfg", ("ansible-playbook",)),
    ]
    verdict = referee.judge(found, root=Path(ROOT), inputs=entries("base/"), blob=blobs)
    assert verdict.uncovered == ()
    assert [r.to_dict() for r in verdict.observed.reads] == [
        {"path": "base/base.json", "blob": "b" * 40}
    ]
    assert verdict.observed.outside == (
        "/etc/hostname",
        "/home/ci/secrets/banner.txt",
        "/tmp/upload/banner.txt",
    )


def test_the_refusal_names_the_file_the_process_and_the_fix():
    verdict = referee.judge(
        [read(f"{ROOT}/shared/motd.txt", ("cat", "shared/motd.txt"))],
        root=Path(ROOT),
        inputs=entries("base/"),
        blob=blobs,
    )
    text = referee.refusal("base", verdict, fate="deregistered")
    assert "shared/motd.txt, read by `cat shared/motd.txt` (pid 7)" in text
    assert "`inputs`" in text and "deregistered" in text and "\n" not in text


@pytest.mark.parametrize("value", ["required", "auto", "off", None])
def test_observe_settings(value):
    assert observe.mode(value, "x") == (value or "auto")
