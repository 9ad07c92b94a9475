"""`wrap()` around an OpenAI client whose model is a loopback server: engram adds memory to each
prompt and records each exchange; when engram fails (an injected fault) the call still works."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai
import pytest
from hippocortex import wrap


class Model(BaseHTTPRequestHandler):
    """A tiny OpenAI-compatible chat model: answers "ok" and keeps every request it got."""

    seen = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Model.seen.append(body)
        answer = {
            "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def model():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Model)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Model.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def client(engram, model, session):
    upstream = openai.OpenAI(base_url=model, api_key="sk-local", max_retries=0)
    return wrap(upstream, api_key=engram.key, base_url=engram.base + "/v1", session_id=session, extract=False)


def ask(c, text):
    reply = c.chat.completions.create(model="local", messages=[{"role": "user", "content": text}])
    return reply.choices[0].message.content


def test_memory_reaches_the_prompt_and_the_exchange_is_recorded(engram, model):
    c = client(engram, model, "chat-1")
    assert ask(c, "Remember that my favourite editor is Helix") == "ok"
    engram.wait_searchable()
    assert ask(c, "Which editor do I like?") == "ok"
    system = [m["content"] for m in Model.seen[-1]["messages"] if m["role"] == "system"]
    assert system and "Helix" in system[0], Model.seen[-1]
    captures = engram.requests(route="/v1/capture", status=202)
    assert len(captures) == 4, captures  # the user and assistant turns of both calls


def test_the_call_survives_engram_failing(engram, model):
    engram.fault(route="/v1/synthesize", status=503, times=1)
    c = client(engram, model, "chat-2")
    assert ask(c, "Hello while the memory is down") == "ok"
    assert [r["status"] for r in engram.requests(route="/v1/synthesize")] == [503]
    assert all(m["role"] != "system" for m in Model.seen[-1]["messages"])
