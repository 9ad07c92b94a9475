"""Drives engram's memory gateway with the pinned `openai` package, as a user would: an OpenAI
client whose base_url is engram and whose api_key is an engram key, with the upstream chosen by
headers. Env: ENGRAM_BASE_URL (…/v1), ENGRAM_KEY, UPSTREAM (base URL of the model API),
PROVIDER (openai | anthropic), SESSION. Prints one JSON object with what the client parsed."""

import json
import os

from openai import OpenAI

client = OpenAI(
    base_url=os.environ["ENGRAM_BASE_URL"],
    api_key=os.environ["ENGRAM_KEY"],
    default_headers={
        "X-LLM-Base-URL": os.environ["UPSTREAM"],
        "X-LLM-API-Key": "sk-upstream-test",
        "X-LLM-Provider": os.environ["PROVIDER"],
        "X-Hippocortex-Session": os.environ["SESSION"],
    },
    max_retries=0,
)

plain = client.chat.completions.with_raw_response.create(
    model="gpt-test",
    messages=[{"role": "user", "content": "what did we decide about the deploy window"}],
)
completion = plain.parse()
chunks = client.chat.completions.create(
    model="gpt-test",
    messages=[{"role": "user", "content": "stream the deploy window please"}],
    stream=True,
)
streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
tool = client.chat.completions.create(
    model="gpt-test",
    messages=[{"role": "user", "content": 'add them [tool:add {"a": 20, "b": 22}]'}],
    tools=[{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}],
)
calls = tool.choices[0].message.tool_calls or []
print(json.dumps({
    "content": completion.choices[0].message.content,
    "memory_entries": plain.headers.get("x-hippocortex-memory-entries"),
    "session": plain.headers.get("x-hippocortex-session"),
    "streamed": streamed,
    "tool": [{"name": c.function.name, "arguments": json.loads(c.function.arguments)} for c in calls],
}))
