"""A refused body closes its connection cleanly, over a raw socket against `pylon serve` (issue 19).

Before: a 413 on a chunked upload left the rest of the body on the keep-alive connection, parsed as the
next request, which was never answered. Now an answer that starts before the body was read says
`Connection: close` and the server closes the connection after it.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import pytest

from tests.conftest import LiveServer
from tests.reliability.conftest import module_server

ADMIN = b"Authorization: Bearer test-admin-token\r\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from module_server(tmp_path_factory, PYLON_MAX_BODY_SIZE="4096")


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response (Content-Length framed) read off the socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk
        rest += chunk
    return int(lines[0].split()[1]), headers, rest[:length]


def chunked(body: bytes, size: int = 1024) -> bytes:
    parts = [
        b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size]) for i in range(0, len(body), size)
    ]
    return b"".join(parts) + b"0\r\n\r\n"


def health(port: int) -> bytes:
    return b"GET /health HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % port


@pytest.mark.parametrize(
    "path",
    [b"/api/v1/keys", b"/v1/chat/completions"],  # routed (Litestar's 413) and hot (the inference route's)
)
def test_a_413_on_a_chunked_upload_closes_the_connection(server: LiveServer, path: bytes) -> None:
    big = b'{"name": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            head = b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" % path
            sock.sendall(head + ADMIN + b"Transfer-Encoding: chunked\r\n\r\n")
            # The server may answer and close while we are still sending: as intended.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(chunked(big))
            status, headers, body = read_response(sock)
            assert status == 413, body
            assert headers.get("connection") == "close", headers
            # The server closes: the client knows at once, instead of sending into a dead connection.
            rest = b""
            try:
                while chunk := sock.recv(65536):
                    rest += chunk
            except ConnectionResetError:
                pass
            assert b"HTTP/1.1" not in rest
        # A new connection is answered.
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(health(server.port))
            assert read_response(sock)[0] == 200


def test_a_refusal_before_the_body_closes_and_a_read_body_keeps_alive(server: LiveServer) -> None:
    body = b'{"name": "k", "scopes": ["neurons:read"]}'
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        # Without credentials the refusal comes before the body is read: close.
        sock.sendall(
            b"POST /api/v1/keys HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        status, headers, _ = read_response(sock)
        assert status == 401 and headers.get("connection") == "close", headers
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        # With them the body is read: the connection stays open for the next request.
        sock.sendall(
            b"POST /api/v1/keys HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + ADMIN
            + b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        status, headers, _ = read_response(sock)
        assert status == 201 and headers.get("connection") != "close", headers
        sock.sendall(health(server.port))
        assert read_response(sock)[0] == 200
