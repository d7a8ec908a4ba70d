"""A tiny PostgreSQL v3 wire client for raw-socket tests: struct-packed messages, a SCRAM-SHA-256
client, and ErrorResponse parsing. Every read has a timeout so that nothing hangs forever."""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import socket
import struct
import time

PROTOCOL_30 = 196608
SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102


class WireError(Exception):
    """The server answered with an ErrorResponse."""

    def __init__(self, fields: dict[str, str]):
        self.fields = fields
        super().__init__(f"{fields.get('S')} {fields.get('C')}: {fields.get('M')}")

    @property
    def code(self) -> str | None:
        return self.fields.get("C")

    @property
    def message(self) -> str:
        return self.fields.get("M", "")

    @property
    def severity(self) -> str | None:
        return self.fields.get("V") or self.fields.get("S")


class Closed(Exception):
    """The server closed the connection."""


def parse_error_fields(body: bytes) -> dict[str, str]:
    """ErrorResponse / NoticeResponse body: (code byte, cstring)* then a zero byte."""
    fields: dict[str, str] = {}
    i = 0
    while i < len(body) and body[i] != 0:
        code = chr(body[i])
        end = body.index(b"\0", i + 1)
        fields[code] = body[i + 1:end].decode("utf-8", "replace")
        i = end + 1
    assert i < len(body) and body[i] == 0, f"ErrorResponse not terminated: {body!r}"
    return fields


def startup_packet(params: dict[str, str], version: int = PROTOCOL_30) -> bytes:
    body = struct.pack("!I", version)
    for k, v in params.items():
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def message(type_: bytes, body: bytes = b"") -> bytes:
    return type_ + struct.pack("!I", len(body) + 4) + body


def query(sql: str) -> bytes:
    return message(b"Q", sql.encode() + b"\0")


class Conn:
    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""
        self.params: dict[str, str] = {}
        self.backend_key: tuple[int, int] | None = None
        self.notices: list[dict[str, str]] = []
        self.auth_codes: list[int] = []

    # ---- bytes ----
    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, n: int) -> None:
        while len(self.buf) < n:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise Closed(f"connection closed with {len(self.buf)} unread byte(s): {self.buf[:60]!r}")
            self.buf += chunk

    def read_bytes(self, n: int) -> bytes:
        self._fill(n)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_message(self) -> tuple[bytes, bytes]:
        self._fill(5)
        t = self.buf[:1]
        (length,) = struct.unpack("!I", self.buf[1:5])
        assert length >= 4, f"bad length {length} from server"
        self._fill(1 + length)
        body = self.buf[5:1 + length]
        self.buf = self.buf[1 + length:]
        return t, body

    def until_ready(self) -> list[tuple[bytes, bytes]]:
        """Reads messages up to and including ReadyForQuery."""
        out = []
        while True:
            t, body = self.read_message()
            out.append((t, body))
            if t == b"Z":
                return out

    def expect_closed(self, timeout: float = 5.0) -> None:
        """Reads until EOF; fails if the server sends more or keeps the socket open."""
        self.sock.settimeout(timeout)
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return
            if not chunk:
                return
            self.buf += chunk
        raise AssertionError("server did not close the connection")

    def read_error(self) -> dict[str, str]:
        """Next message must be an ErrorResponse (notices skipped)."""
        while True:
            t, body = self.read_message()
            if t == b"N":
                self.notices.append(parse_error_fields(body))
                continue
            assert t == b"E", f"expected ErrorResponse, got {t!r} {body[:80]!r}"
            return parse_error_fields(body)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    # ---- protocol ----
    def startup(self, user: str, password: str | None, database: str = "app", extra: dict[str, str] | None = None,
                version: int = PROTOCOL_30) -> list[tuple[bytes, bytes]]:
        """StartupMessage, SCRAM-SHA-256, up to ReadyForQuery. Raises WireError on an ErrorResponse.
        Returns the messages seen before authentication started (e.g. NegotiateProtocolVersion)."""
        params = {"user": user, "database": database}
        params.update(extra or {})
        self.send(startup_packet(params, version))
        return self.authenticate(user, password)

    def authenticate(self, user: str, password: str | None) -> list[tuple[bytes, bytes]]:
        before: list[tuple[bytes, bytes]] = []
        scram = None
        while True:
            t, body = self.read_message()
            if t == b"E":
                raise WireError(parse_error_fields(body))
            if t == b"N":
                self.notices.append(parse_error_fields(body))
                continue
            if t == b"v":
                before.append((t, body))
                continue
            if t == b"R":
                (code,) = struct.unpack("!I", body[:4])
                data = body[4:]
                self.auth_codes.append(code)
                if code == 0:
                    continue
                if code == 3:  # cleartext password (the proxy asks for OIDC tokens this way)
                    self.send(message(b"p", (password or "").encode() + b"\0"))
                    continue
                if code == 10:
                    mechs = [m.decode() for m in data.split(b"\0") if m]
                    assert "SCRAM-SHA-256" in mechs, mechs
                    scram = ScramClient(password or "")
                    first = scram.client_first().encode()
                    self.send(message(b"p", b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first))
                    continue
                if code == 11:
                    assert scram
                    self.send(message(b"p", scram.client_final(data.decode()).encode()))
                    continue
                if code == 12:
                    assert scram
                    scram.verify_server_final(data.decode())
                    continue
                raise AssertionError(f"unexpected auth request {code}")
            if t == b"S":
                k, v, _ = body.split(b"\0", 2)
                self.params[k.decode()] = v.decode()
                continue
            if t == b"K":
                self.backend_key = struct.unpack("!II", body)
                continue
            if t == b"Z":
                return before
            raise AssertionError(f"unexpected message {t!r} during startup")

    def simple_query(self, sql: str) -> list[list[str | None]]:
        """Runs one simple Query; returns the rows of the last result. Raises WireError."""
        self.send(query(sql))
        rows: list[list[str | None]] = []
        error = None
        while True:
            try:
                t, body = self.read_message()
            except Closed:
                if error:  # a FATAL error is followed by the close, not by ReadyForQuery
                    raise WireError(error)
                raise
            if t == b"T":
                rows = []
            elif t == b"D":
                (n,) = struct.unpack("!H", body[:2])
                i, row = 2, []
                for _ in range(n):
                    (ln,) = struct.unpack("!i", body[i:i + 4])
                    i += 4
                    if ln < 0:
                        row.append(None)
                    else:
                        row.append(body[i:i + ln].decode())
                        i += ln
                rows.append(row)
            elif t == b"E":
                error = parse_error_fields(body)
            elif t == b"N":
                self.notices.append(parse_error_fields(body))
            elif t == b"Z":
                if error:
                    raise WireError(error)
                return rows


class ScramClient:
    """RFC 5802 / 7677 client side (what libpq does, channel binding off)."""

    def __init__(self, password: str):
        self.password = password.encode()
        self.nonce = base64.b64encode(os.urandom(18)).decode()
        self.first_bare = f"n=,r={self.nonce}"

    def client_first(self) -> str:
        return "n,," + self.first_bare

    def client_final(self, server_first: str) -> str:
        attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
        assert attrs["r"].startswith(self.nonce), "server nonce does not extend ours"
        salt = base64.b64decode(attrs["s"])
        iterations = int(attrs["i"])
        salted = hashlib.pbkdf2_hmac("sha256", self.password, salt, iterations)
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c=biws,r={attrs['r']}"
        auth_message = f"{self.first_bare},{server_first},{without_proof}".encode()
        signature = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
        self.expected_server_sig = base64.b64encode(
            hmac.new(server_key, auth_message, hashlib.sha256).digest()).decode()
        return f"{without_proof},p={base64.b64encode(proof).decode()}"

    def verify_server_final(self, server_final: str) -> None:
        assert server_final == f"v={self.expected_server_sig}", f"bad server signature: {server_final}"


def connect(port: int, user: str, password: str | None, database: str = "app", timeout: float = 10.0,
            **extra: str) -> Conn:
    c = Conn(port, timeout=timeout)
    try:
        c.startup(user, password, database, extra or None)
    except BaseException:
        c.close()
        raise
    return c


def startup_error(port: int, user: str, password: str | None, database: str = "app", timeout: float = 10.0,
                  **extra: str) -> dict[str, str]:
    """Starts a session that must be refused; returns the ErrorResponse fields and checks the close."""
    c = Conn(port, timeout=timeout)
    try:
        try:
            c.startup(user, password, database, extra or None)
        except WireError as e:
            c.expect_closed()
            return e.fields
        raise AssertionError("session was not refused")
    finally:
        c.close()
