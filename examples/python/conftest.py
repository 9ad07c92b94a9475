"""A pytest fixture that runs engram for a test session.

One server per session, started on a free port with a known API key and an operator token; every
test gets it after a reset, so tests never see each other's data. Point ENGRAM_BIN at the binary
(`cargo install --path .` puts `engram` on PATH, which is used otherwise). Set ENGRAM_SEED to an
export (`engram export --tenant … --to seed.ndjson`) to start from known data: every test does, since
the reset before it imports the seed again.

    def test_something(engram):
        hx = engram.sdk()                 # the official SDK, pointed at this server
        ...
        engram.wait_searchable()          # read your writes: everything captured is searchable
"""

import json
import os
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

# Any well-formed key works: hk_live_ or hk_test_ and at least 32 letters or digits.
KEY = "hk_live_fixture0123456789abcdefghijklmnopqrstu"
OPERATOR_TOKEN = "fixture-operator-token-0123"


def engram_binary():
    path = os.environ.get("ENGRAM_BIN") or shutil.which("engram")
    if not path:
        raise RuntimeError("engram not found: set ENGRAM_BIN or run `cargo install --path .`")
    return path


class Engram:
    """A running engram: its base URL, the tenant's key, and the operator API."""

    def __init__(self, base, key):
        self.base = base
        self.key = key

    def sdk(self):
        from hippocortex import SyncHippocortex

        return SyncHippocortex(api_key=self.key, base_url=self.base + "/v1", suppress_update_warning=True)

    def call(self, method, path, body=None, token=None):
        """One request; answers (status, parsed JSON body)."""
        req = urllib.request.Request(
            self.base + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {token or self.key}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def admin(self, method, path, body=None):
        status, answer = self.call(method, path, body, token=OPERATOR_TOKEN)
        assert status < 300, (method, path, status, answer)
        return answer["data"]

    def reset(self):
        """Every tenant's data goes; the bootstrap tenant and its key stay, and the seed (ENGRAM_SEED)
        is imported again. Faults and the request journal are cleared too."""
        self.admin("POST", "/v1/admin/reset")
        self.admin("DELETE", "/v1/admin/faults")
        self.admin("DELETE", "/v1/admin/requests")

    def wait_searchable(self, timeout=10.0):
        """Returns once everything captured so far is processed and searchable."""
        deadline = time.monotonic() + timeout
        while True:
            _, health = self.call("GET", "/v1/health")
            search = health["data"]["subsystems"]["search"]
            if search["searchableSeq"] >= search["capturedSeq"]:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"not searchable within {timeout} s: {search}")
            time.sleep(0.02)

    def requests(self, **filters):
        """The request journal, most recent first (filters: method, route, status, tenant, limit)."""
        query = "&".join(f"{k}={v}" for k, v in filters.items())
        return self.admin("GET", f"/v1/admin/requests?{query}")["requests"]

    def fault(self, **spec):
        """Injects a fault: route, and status / body / delayMs / probability / times."""
        return self.admin("POST", "/v1/admin/faults", spec)


@pytest.fixture(scope="session")
def engram_server(tmp_path_factory):
    data = tmp_path_factory.mktemp("engram-data")
    env = dict(os.environ, ENGRAM_BOOTSTRAP_KEY=KEY, ENGRAM_ADMIN_TOKEN=OPERATOR_TOKEN, ENGRAM_LOG="info")
    args = [
        engram_binary(), "serve",
        "--listen", "127.0.0.1:0",      # a free port; the real one is printed
        "--data-dir", str(data),
        "--learn-wait-secs", "30",      # the SDK's learn() returns once compiled
        "--auto-learn-every", "0",      # learn only when a test asks
    ]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    found = {}
    ready = threading.Event()

    def drain():
        for line in proc.stderr:
            if line.startswith("engram listening on ") and not ready.is_set():
                found["base"] = line.split()[-1]
                ready.set()
        ready.set()

    threading.Thread(target=drain, daemon=True).start()
    if not ready.wait(60) or "base" not in found:
        proc.kill()
        raise RuntimeError("engram did not start")
    try:
        yield Engram(found["base"], KEY)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def engram(engram_server):
    engram_server.reset()
    return engram_server
