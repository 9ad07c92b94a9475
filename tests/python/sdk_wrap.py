"""Runs the pinned SDK's `wrap()` around an `openai.OpenAI` client whose upstream is a loopback
model peer, with engram as the memory. Env: ENGRAM_BASE_URL (with or without /v1), ENGRAM_KEY,
UPSTREAM (the peer's base URL), SESSION, MESSAGE. Sends MESSAGE once and prints the reply."""

import json
import os

from hippocortex import wrap
from openai import OpenAI

client = wrap(
    OpenAI(base_url=os.environ["UPSTREAM"], api_key="sk-upstream-test", max_retries=0),
    api_key=os.environ["ENGRAM_KEY"],
    base_url=os.environ["ENGRAM_BASE_URL"],
    session_id=os.environ["SESSION"],
    extract=False,
)
reply = client.chat.completions.create(
    model="gpt-test",
    messages=[{"role": "user", "content": os.environ["MESSAGE"]}],
)
print(json.dumps({"content": reply.choices[0].message.content}))
