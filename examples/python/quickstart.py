"""The SDK against engram: capture what an agent did, learn from it, synthesize context for the
next prompt. Run it against any engram:

    ENGRAM_URL=http://127.0.0.1:8080 ENGRAM_KEY=hk_live_… python quickstart.py
"""

import os

from hippocortex import SyncHippocortex
from hippocortex.types import CaptureEvent, LearnOptions, SynthesizeOptions


def run(base, key):
    with SyncHippocortex(api_key=key, base_url=base.rstrip("/") + "/v1", suppress_update_warning=True) as hx:
        # 1. Capture: what the agent did, session by session.
        for i in range(3):
            session = f"deploy-{i}"
            hx.capture_batch([
                CaptureEvent("message", session, {"role": "user", "content": "Deploy the billing service"}),
                CaptureEvent("command_exec", session, {"command": "make test", "exitCode": 0}),
                CaptureEvent("command_exec", session, {"command": "kubectl apply -f billing.yaml", "exitCode": 0}),
                CaptureEvent("outcome", session, {"status": "success"}),
            ])
        # 2. Learn: compile the sessions into procedures, playbooks and policies.
        learned = hx.learn(LearnOptions(scope="full"))
        print(f"learn {learned.run_id}: {learned.status}")
        # 3. Synthesize: the most relevant memory for the next prompt, within a token budget.
        pack = hx.synthesize("how do I deploy the billing service?", SynthesizeOptions(max_tokens=600))
        for entry in pack.entries:
            print(f"[{entry.section}] {entry.content}")
        return pack


if __name__ == "__main__":
    if not os.environ.get("ENGRAM_KEY"):
        raise SystemExit("quickstart.py: set ENGRAM_KEY to an engram API key (and ENGRAM_URL to the server, "
                         "default http://127.0.0.1:8080)")
    run(os.environ.get("ENGRAM_URL", "http://127.0.0.1:8080"), os.environ["ENGRAM_KEY"])
