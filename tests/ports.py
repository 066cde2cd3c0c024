"""Local TCP ports for tests that start real servers (or need one nobody listens on)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bound, then released).

    The port is closed on return: start a server on it, or use it as a port nobody listens on.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
