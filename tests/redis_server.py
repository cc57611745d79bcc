"""A real ``redis-server`` on a loopback port, for the tests of several workers sharing Redis.

`RedisServer` starts one in a child process (no persistence, loopback only), and can kill it
(``kill -9``) and start it again on the same port, as an outage and a restart would. Where the
system has no ``redis-server`` (the README's test block installs it from the system's packages
where it can), `require_redis_server` skips the test and says why.
"""

from __future__ import annotations

import gc
import shutil
import socket
import subprocess
import time
import warnings
from typing import Final

import pytest

START_SECONDS: Final = 10.0


def require_redis_server() -> str:
    """The path of ``redis-server``; the test is skipped, with the reason, where there is none."""
    found = shutil.which("redis-server")
    if found is None:
        pytest.skip(
            "redis-server is not installed: these tests run a real Redis (the README's test "
            "block installs it with `apt-get install redis-server` where it can)"
        )
    return found


def collect_coredis_leftovers() -> None:
    """Collect what coredis leaves behind when a connection attempt fails, quietly.

    coredis 6.9 does not close the memory streams of a connection that never connected; the
    garbage collector finds them later and warns (``ResourceWarning: Unclosed
    <MemoryObjectSendStream ...>``), which this suite makes an error wherever it happens to
    land. Tests that make Redis unreachable on purpose collect them right away instead.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"Unclosed <MemoryObject", ResourceWarning)
        gc.collect()


def free_port() -> int:
    """A TCP port nothing listens on now, on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """One ``redis-server`` child process on ``127.0.0.1:port``."""

    def __init__(self, executable: str, port: int | None = None) -> None:
        self.executable = executable
        self.port = port if port is not None else free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it and wait until it answers PING."""
        arguments = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        arguments += ["--appendonly", "no", "--protected-mode", "yes"]
        self.process = subprocess.Popen(  # noqa: S603 - our own arguments
            [self.executable, *arguments],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited at once ({self.process.returncode})")
            if self.answers():
                return
            time.sleep(0.02)
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def answers(self) -> bool:
        """Whether it answers PING now (a plain socket: no client needed)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as connection:
                connection.sendall(b"PING\r\n")
                return connection.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """``kill -9`` it, as a crash would, and wait until it is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def command(self, *words: str) -> bytes:
        """Send one command (any bytes in its words) and return the first line of the answer."""
        encoded = [word.encode() for word in words]
        request = b"*%d\r\n" % len(encoded) + b"".join(
            b"$%d\r\n%s\r\n" % (len(word), word) for word in encoded
        )
        with socket.create_connection(("127.0.0.1", self.port), timeout=2.0) as connection:
            connection.sendall(request)
            return connection.recv(65536).split(b"\r\n", 1)[0]
