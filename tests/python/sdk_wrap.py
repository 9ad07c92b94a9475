"""Runs the pinned SDK's integrations around real provider clients whose upstream is a loopback
model peer, with engram as the memory: `wrap()` of an `openai.OpenAI` or `anthropic.Anthropic`
client, or `import hippocortex.auto` (configured from HIPPOCORTEX_API_KEY / HIPPOCORTEX_BASE_URL).
Env: MODE (wrap | auto), PROVIDER (openai | anthropic), ENGRAM_BASE_URL (with or without /v1),
ENGRAM_KEY, UPSTREAM (the peer's base URL), SESSION, MESSAGE. Sends MESSAGE once and prints the
reply's text as JSON."""

import json
import os

MODE = os.environ["MODE"]
PROVIDER = os.environ["PROVIDER"]

if MODE == "auto":
    os.environ["HIPPOCORTEX_API_KEY"] = os.environ["ENGRAM_KEY"]
    os.environ["HIPPOCORTEX_BASE_URL"] = os.environ["ENGRAM_BASE_URL"]
    os.environ["HIPPOCORTEX_SILENT"] = "1"
    os.environ["HIPPOCORTEX_EXTRACT"] = "false"
    import hippocortex.auto  # noqa: F401  (patches the provider SDKs on import)

import anthropic
import openai

if PROVIDER == "openai":
    client = openai.OpenAI(base_url=os.environ["UPSTREAM"], api_key="sk-upstream-test", max_retries=0)
else:
    client = anthropic.Anthropic(base_url=os.environ["UPSTREAM"], api_key="sk-upstream-test", max_retries=0)

if MODE == "wrap":
    from hippocortex import wrap

    client = wrap(
        client,
        api_key=os.environ["ENGRAM_KEY"],
        base_url=os.environ["ENGRAM_BASE_URL"],
        session_id=os.environ["SESSION"],
        extract=False,
    )

message = [{"role": "user", "content": os.environ["MESSAGE"]}]
if PROVIDER == "openai":
    reply = client.chat.completions.create(model="gpt-test", messages=message)
    text = reply.choices[0].message.content
else:
    reply = client.messages.create(model="claude-test", max_tokens=200, messages=message)
    text = "".join(b.text for b in reply.content if getattr(b, "type", "") == "text")
print(json.dumps({"content": text}))
