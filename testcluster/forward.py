"""`python -m testcluster.forward LISTEN_HOST:PORT TARGET_HOST:PORT [ROOT]`: a TCP relay.

The API server binds one address (127.0.0.1, where every test client reaches it);
the real node and its pods cannot reach the host's loopback, so while the node
runs this relay listens on the host's end of the node's veth and passes bytes
through untouched (TLS end to end: the certificate names both addresses). ROOT is
only there so the launcher recognises the process as its own.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def _serve(client: socket.socket, target: tuple[str, int]) -> None:
    with client, contextlib.suppress(OSError), socket.create_connection(target) as upstream:
        back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
        back.start()
        _pipe(client, upstream)
        back.join()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main(argv: list[str]) -> int:
    listen, target = _address(argv[0]), _address(argv[1])
    server = socket.create_server(listen, reuse_port=False)
    while True:
        client, _ = server.accept()
        threading.Thread(target=_serve, args=(client, target), daemon=True).start()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
