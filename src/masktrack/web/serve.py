"""Serve the page with uvicorn until Ctrl-C."""

from __future__ import annotations

import socket
import sys

from masktrack.errors import InputError
from masktrack.web.server import LOCAL_HOSTS, create_app
from masktrack.web.state import Workspace

ANY_ADDRESS = ("0.0.0.0", "::", "")


def allowed_hosts(host: str) -> list[str]:
    """Host header values to accept: this machine's names, the address listened on; any when on every interface."""
    if host in ANY_ADDRESS:
        return ["*"]
    return sorted(set(LOCAL_HOSTS) | {host, f"[{host}]" if ":" in host else host})


def check_port(host: str, port: int) -> None:
    """InputError when ``host:port`` cannot be listened on (in use, no such address)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise InputError(f"cannot listen on {host}:{port}: {error.strerror or error} (try --port)") from None


def serve(space: Workspace, host: str, port: int) -> None:
    """Print the page's address and serve it (blocking)."""
    import uvicorn

    check_port(host, port)
    shown = "127.0.0.1" if host in ANY_ADDRESS else (f"[{host}]" if ":" in host else host)
    opened = f" with {space.source}" if space.source is not None else ""
    print(f"masktrack app: open http://{shown}:{port}/ in a browser{opened} (Ctrl-C stops)", file=sys.stderr, flush=True)
    config = uvicorn.Config(create_app(space, allowed_hosts(host)), host=host, port=port, log_level="warning",
                            timeout_graceful_shutdown=2)
    uvicorn.Server(config).run()
