"""Approval notifications end to end: a real psql whose statement a `review` rule holds, and real
HTTP receivers (Python's http.server) that get the signed webhook for the new request and for its
cancellation (Ctrl-C), including one receiver that fails twice before it accepts.

Decisions through the admin API are covered by the unit tests until the API is on main."""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import USERS, config_for, wait_for

SECRET = "s3cret"
HELD = re.compile(r"request (apr_[a-z0-9]+)")


class Receiver:
    """Records every POST; /flaky answers 500 to the first two attempts of each delivery."""

    def __init__(self):
        self.got: list[dict] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer.lock:
                    outer.got.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                      "body": body})
                    tries = sum(1 for g in outer.got if g["path"] == self.path and
                                g["headers"].get("x-gatehouse-delivery") == self.headers.get("X-Gatehouse-Delivery"))
                status = 500 if self.path == "/flaky" and tries <= 2 else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def events(self, path: str) -> list[dict]:
        with self.lock:
            return [g for g in self.got if g["path"] == path]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def verify(headers: dict, body: bytes) -> bool:
    ts = headers["x-gatehouse-timestamp"]
    if abs(time.time() - int(ts)) > 300:
        return False
    expected = "sha256=" + hmac.new(SECRET.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers.get("x-gatehouse-signature", ""))


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def test_held_statement_is_notified_signed_and_retried(pg, user_hashes, make_proxy, receiver):
    pg.psql("drop table if exists hook_accounts; create table hook_accounts(id int, balance int)")
    base = f"http://127.0.0.1:{receiver.port}"
    cfg = config_for(pg, user_hashes,
                     admin={"public_url": "https://gatehouse.example.com"},
                     approvals={"timeout": "30s",
                                "webhooks": [{"url": base + "/hook", "secret": SECRET, "format": "json"},
                                             {"url": base + "/flaky", "format": "slack"}]},
                     rules=[{"name": "review-balance", "when": {"tables": ["hook_accounts"], "statements": ["update"]},
                             "action": "review", "reviewers": {"groups": ["dba"]}}])
    proxy = make_proxy(cfg)

    env = dict(os.environ, PGPASSWORD=USERS["alice"], PGSSLMODE="disable", PGCONNECT_TIMEOUT="15")
    proc = subprocess.Popen(["psql", "-X", "-A", "-t", "-h", "127.0.0.1", "-p", str(proxy.port), "-U", "alice",
                             "-d", "app", "-c", "UPDATE hook_accounts SET balance = 1 WHERE id = 1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    request_id = None
    deadline = time.time() + 20
    while time.time() < deadline and request_id is None:
        line = proc.stderr.readline()
        m = HELD.search(line or "")
        if m and "held for approval" in line:
            request_id = m.group(1)
    assert request_id, proxy.log()

    pending = wait_for(lambda: receiver.events("/hook"), timeout=10, what="the approval.pending webhook")[0]
    h = pending["headers"]
    assert h["content-type"] == "application/json"
    assert h["x-gatehouse-event"] == "approval.pending"
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", h["x-gatehouse-delivery"])
    assert verify(h, pending["body"])
    doc = json.loads(pending["body"])
    assert doc["event"] == "approval.pending"
    assert doc["delivery"] == h["x-gatehouse-delivery"]
    req = doc["request"]
    assert req["id"] == request_id
    assert req["state"] == "pending"
    assert req["requester"]["subject"] == "alice"
    assert req["target"] == "app"
    assert req["statement"] == "UPDATE hook_accounts SET balance = 1 WHERE id = 1"
    assert req["rule"] == "review-balance"
    assert req["console_url"] == f"https://gatehouse.example.com/approvals/{request_id}"

    os.killpg(proc.pid, signal.SIGINT)  # psql sends a CancelRequest: the request is cancelled
    proc.communicate(timeout=30)
    cancelled = wait_for(lambda: [e for e in receiver.events("/hook")
                                  if e["headers"]["x-gatehouse-event"] == "approval.cancelled"],
                         timeout=10, what="the approval.cancelled webhook")[0]
    assert verify(cancelled["headers"], cancelled["body"])
    assert json.loads(cancelled["body"])["request"]["state"] == "cancelled"
    assert [e["headers"]["x-gatehouse-event"] for e in receiver.events("/hook")] == \
        ["approval.pending", "approval.cancelled"]

    # The Slack receiver failed twice per delivery: retried after 1 s and 2 s, same delivery id,
    # and the cancellation waited behind the pending event.
    flaky = wait_for(lambda: (lambda e: e if len(e) >= 6 else None)(receiver.events("/flaky")), timeout=30,
                     what="three attempts of two Slack deliveries")
    ids = [e["headers"]["x-gatehouse-delivery"] for e in flaky]
    assert ids[0] == ids[1] == ids[2] != ids[3] == ids[4] == ids[5]
    assert [e["headers"]["x-gatehouse-event"] for e in flaky[::3]] == ["approval.pending", "approval.cancelled"]
    assert "x-gatehouse-signature" not in flaky[0]["headers"]
    slack = json.loads(flaky[0]["body"])
    assert "Approval needed" in slack["text"]
    assert slack["blocks"][1]["text"]["text"] == "```\nUPDATE hook_accounts SET balance = 1 WHERE id = 1\n```"
    assert f"<https://gatehouse.example.com/approvals/{request_id}|Open in Gatehouse>" in flaky[0]["body"].decode()
    assert "attempt 1 failed (HTTP 500); retrying in 1000 ms" in proxy.log()
