"""What a POC is provisioned from: its project file, on free loopback ports.

``nvflare poc prepare -i project.yml`` provisions one server, the clients and a project admin from
the file written here. The server's ports are picked free on this machine, and after provisioning
the server is told to listen on loopback only (``listen_on_loopback``).
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

PROJECT_NAME = "example_project"
SERVER_NAME = "server"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def free_port_pair(fl_port: int | None = None, admin_port: int | None = None) -> tuple[int, int]:
    """(FL port, admin port): the ones given, the others picked free, never the same port twice."""
    fl_port = fl_port or free_port()
    admin_port = admin_port or free_port()
    while admin_port == fl_port:
        admin_port = free_port()
    return fl_port, admin_port


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something listens on ``port`` (connections left in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def project_yaml(clients: list[str], admin: str, fl_port: int, admin_port: int) -> str:
    """The project file: the server on these ports, each client, and ``admin`` as project admin."""
    lines = [
        "api_version: 3",
        f"name: {PROJECT_NAME}",
        "description: resontech_nb POC deployment",
        "participants:",
        f"  - name: {SERVER_NAME}",
        "    type: server",
        "    org: nvidia",
        f"    fed_learn_port: {fl_port}",
        f"    admin_port: {admin_port}",
    ]
    for client in clients:
        lines += [f"  - name: {client}", "    type: client", "    org: nvidia"]
    lines += [
        f"  - name: {admin}",
        "    type: admin",
        "    org: nvidia",
        "    role: project_admin",
        "builders:",
        "  - path: nvflare.lighter.impl.workspace.WorkspaceBuilder",
        "  - path: nvflare.lighter.impl.static_file.StaticFileBuilder",
        "    args:",
        "      config_folder: config",
        "  - path: nvflare.lighter.impl.cert.CertBuilder",
        "  - path: nvflare.lighter.impl.signature.SignatureBuilder",
    ]
    return "\n".join(lines) + "\n"


def server_ports(server_dir: Path) -> tuple[int, int]:
    """(FL port, admin port) of a provisioned server."""
    config = json.loads((server_dir / "startup" / "fed_server.json").read_text(encoding="utf-8"))
    server = config["servers"][0]
    return int(server["service"]["target"].rsplit(":", 1)[1]), int(server["admin_port"])


def listen_on_loopback(server_dir: Path) -> None:
    """Make a provisioned server listen on loopback: it binds to all interfaces unless its host is a loopback name."""
    path = server_dir / "startup" / "fed_server.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    for server in config["servers"]:
        port = server["service"]["target"].rsplit(":", 1)[1]
        server["service"]["target"] = f"localhost:{port}"
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
