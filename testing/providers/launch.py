"""What Terraform starts as a STAND-IN provider: the provider, forked from a warm server.

Run as `python -I -S launch.py SOCKET SCRIPT [ARGS...]` by the mirror's executable (mirror.py).
Terraform starts each provider several times per command, and a Python provider's start is
mostly imports (gRPC, protobuf, cryptography, boto3), so a server that has imported them once
(warm.py, listening at SOCKET) forks each start instead. This process hands the server its
argv, environment, working directory and standard streams, then waits and exits with the
provider's status: to Terraform it is the provider process (the same pipes, the same exit).
When nothing listens at SOCKET, it becomes the provider itself, started cold.

Only the standard library, and no site packages (-S): a start costs a bare interpreter.
"""

import json
import os
import signal
import socket
import sys


def main() -> None:
    sock_path, script, *args = sys.argv[1:]
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(sock_path)
    except OSError:
        conn.close()
        python = sys.executable
        os.execv(python, [python, script, *args])
    # A Ctrl-C reaches every process of the terminal's group; Terraform stops its providers
    # itself, and go-plugin servers ignore the interrupt, so this one does not die of it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    umask = os.umask(0)
    os.umask(umask)
    request = json.dumps(
        {
            "script": script,
            "argv": args,
            "env": dict(os.environ),
            "cwd": os.getcwd(),
            "umask": umask,
        }
    ).encode()
    socket.send_fds(conn, [len(request).to_bytes(8, "big")], [0, 1, 2])
    conn.sendall(request)
    status = b""
    while chunk := conn.recv(16):
        status += chunk
    # No status: the provider died without saying (killed); Terraform sees a failed start.
    sys.exit(int(status) if status else 1)


if __name__ == "__main__":
    main()
