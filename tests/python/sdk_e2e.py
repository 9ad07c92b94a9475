"""End to end with the official hippocortex SDK (sync and async clients) against a live engram.

capture -> capture_batch -> learn -> synthesize -> list/get artifacts -> get_metrics, asserting on
content. Reads HIPPOCORTEX_BASE_URL (ending in /v1) and HIPPOCORTEX_API_KEY; prints one line per
step. Every wait is bounded.
"""

import asyncio
import os
import sys
import time

from hippocortex import Hippocortex, SyncHippocortex
from hippocortex.types import CaptureEvent, LearnOptions, SynthesizeOptions

BASE = os.environ["HIPPOCORTEX_BASE_URL"]
KEY = os.environ["HIPPOCORTEX_API_KEY"]
TASK = "Deploy the payment service to production"


def session_events(prefix, i, ok=True):
    sid = f"{prefix}-{i}"
    meta = {"task": TASK}
    evs = [
        CaptureEvent("message", sid, {"role": "user", "content": f"{TASK} (ticket {100 + i})"}, meta),
        CaptureEvent("command_exec", sid, {"command": "cargo build --release", "exitCode": 0}, meta),
        CaptureEvent("test_run", sid, {"suite": "unit", "status": "passed", "passed": 120}, meta),
        CaptureEvent("command_exec", sid, {"command": "kubectl apply -f payments.yaml", "exitCode": 0}, meta),
        CaptureEvent("command_exec", sid, {"command": "curl https://payments.internal/health", "exitCode": 0 if ok else 7}, meta),
        CaptureEvent("outcome", sid, {"status": "success" if ok else "failure"}, meta),
    ]
    return evs


def wait_until(what, fn, timeout=60.0):
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def check_pack(res, budget):
    assert res.pack_id.startswith("pack_"), res.pack_id
    assert res.budget.limit == budget, res.budget
    assert res.budget.used <= res.budget.limit, res.budget
    assert res.budget.entries_included == len(res.entries)
    assert sum(1 for _ in res.entries) == res.budget.entries_included
    for e in res.entries:
        assert e.section in ("procedures", "failures", "decisions", "facts", "causal", "context"), e
        assert 0.0 <= e.confidence <= 1.0
        assert e.provenance and e.provenance[0].source_id, e


def sync_flow():
    with SyncHippocortex(api_key=KEY, base_url=BASE, suppress_update_warning=True) as hx:
        first = session_events("sync", 0)
        r = hx.capture(first[0])
        assert r.status == "ingested" and r.event_id.startswith("evt_"), r
        again = hx.capture(first[0])
        assert again.status == "ingested" and again.event_id != r.event_id
        batch = first[1:] + [e for i in range(1, 6) for e in session_events("sync", i, ok=i != 3)]
        b = hx.capture_batch(batch)
        assert b.total == len(batch) and b.ingested == len(batch) and b.errors == 0, b
        assert all(x.event_id.startswith("evt_") for x in b.results)
        print(f"sync: captured {1 + len(batch)} events")

        # Captured events become searchable episodic memories (context) on their own.
        res = wait_until(
            "captured events in a pack",
            lambda: (lambda p: p if p.entries else None)(
                hx.synthesize("kubectl apply payments", SynthesizeOptions(max_tokens=800, min_confidence=0.0))
            ),
        )
        check_pack(res, 800)
        assert any("kubectl apply" in e.content for e in res.entries), [e.content for e in res.entries]
        print(f"sync: synthesize found {len(res.entries)} entries from captured events")

        learned = hx.learn(LearnOptions(scope="full"))
        assert learned.run_id and learned.status in ("queued", "completed", "partial"), learned
        arts = wait_until("compiled artifacts", lambda: hx.list_artifacts().artifacts)
        print(f"sync: learn {learned.run_id} → {len(arts)} artifacts")
        schema = next((a for a in arts if a.type == "task_schema"), None)
        assert schema is not None, [a.type for a in arts]
        assert schema.status == "active" and schema.evidence_count >= 2, schema
        got = hx.get_artifact(schema.id)
        assert got.id == schema.id and got.type == "task_schema" and got.content == schema.content

        res = wait_until(
            "the compiled procedure in a pack",
            lambda: (lambda p: p if any(e.section == "procedures" for e in p.entries) else None)(
                hx.synthesize("deploy the payment service", SynthesizeOptions(max_tokens=2000))
            ),
            timeout=10,
        )
        check_pack(res, 2000)
        proc = next(e for e in res.entries if e.section == "procedures")
        assert proc.provenance[0].source_type == "artifact"
        assert proc.provenance[0].artifact_type == "task_schema"
        assert "kubectl apply" in proc.content or "cargo build" in proc.content, proc.content
        only = hx.synthesize("deploy payment", SynthesizeOptions(max_tokens=2000, sections=["procedures"]))
        assert only.entries and all(e.section == "procedures" for e in only.entries)
        tiny = hx.synthesize("deploy payment", SynthesizeOptions(max_tokens=5))
        assert tiny.budget.used <= 5 and tiny.budget.entries_dropped > 0, tiny.budget
        print(f"sync: synthesize packed {len(res.entries)} entries, {res.budget.used}/{res.budget.limit} tokens")

        m = hx.get_metrics()
        assert m.events_total >= 1 + len(batch) + 1, m
        assert m.quota_plan, m
        print(f"sync: metrics events_total={m.events_total}")


async def async_flow():
    async with Hippocortex(api_key=KEY, base_url=BASE, suppress_update_warning=True) as hx:
        evs = [e for i in range(3) for e in session_events("async", i)]
        r = await hx.capture(evs[0])
        assert r.status == "ingested", r
        b = await hx.capture_batch(evs[1:])
        assert b.ingested == len(evs) - 1 and b.errors == 0, b
        learned = await hx.learn()
        assert learned.run_id, learned
        res = await hx.synthesize("payment service deploy", SynthesizeOptions(max_tokens=1500))
        check_pack(res, 1500)
        assert res.entries, "a pack after learning"
        listed = await hx.list_artifacts(type="task_schema", status="active", limit=10)
        assert listed.artifacts and all(a.type == "task_schema" for a in listed.artifacts)
        one = await hx.get_artifact(listed.artifacts[0].id)
        assert one.id == listed.artifacts[0].id
        m = await hx.get_metrics(period="24h", granularity="hour")
        assert m.events_total >= len(evs), m
        print(f"async: {len(res.entries)} entries, {len(listed.artifacts)} task schemas")


def main():
    sync_flow()
    asyncio.run(async_flow())
    print("sdk e2e ok")


if __name__ == "__main__":
    try:
        main()
    except Exception as exc:  # noqa: BLE001 - report any failure with its type
        print(f"FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        raise
