"""Drives the pinned official `hippocortex` SDK's capture calls against a live engram.

Env: ENGRAM_BASE_URL (e.g. http://127.0.0.1:1234/v1), ENGRAM_KEY, ENGRAM_SESSION (a session id
prefix). Prints one JSON object with what the SDK parsed; the Rust test checks it against what the
server stored. Exits non-zero on any SDK error.
"""

import asyncio
import json
import os

from hippocortex import Hippocortex, SyncHippocortex
from hippocortex.types import CaptureEvent

BASE = os.environ["ENGRAM_BASE_URL"]
KEY = os.environ["ENGRAM_KEY"]
SESSION = os.environ["ENGRAM_SESSION"]


def result_dict(r):
    return {
        "event_id": r.event_id,
        "status": r.status,
        "salience_score": r.salience_score,
        "trace_id": r.trace_id,
        "reason": r.reason,
    }


def batch_dict(b):
    return {
        "results": [result_dict(r) for r in b.results],
        "total": b.total,
        "ingested": b.ingested,
        "duplicates": b.duplicates,
        "errors": b.errors,
    }


def sync_part():
    with SyncHippocortex(api_key=KEY, base_url=BASE, suppress_update_warning=True) as hx:
        single = hx.capture(
            CaptureEvent(
                type="message",
                session_id=SESSION + "-sync",
                payload={"role": "user", "content": "Deploy the payment service"},
                metadata={"agentId": "sdk-agent", "source": "sdk-sync"},
            )
        )
        batch = hx.capture_batch(
            [
                CaptureEvent(
                    type="tool_call",
                    session_id=SESSION + "-sync",
                    payload={"tool_name": "kubectl", "input": "apply -f payment.yaml"},
                ),
                CaptureEvent(
                    type="command_exec",
                    session_id=SESSION + "-sync",
                    payload={"command": "kubectl rollout status", "exitCode": 1},
                ),
                # Not a valid event type: reported per item, the others are stored.
                CaptureEvent(type="bogus", session_id=SESSION + "-sync", payload={}),
            ]
        )
        metrics = hx._request("GET", "/usage-metrics")  # the raw data the SDK receives
    return result_dict(single), batch_dict(batch), metrics


async def async_part():
    async with Hippocortex(api_key=KEY, base_url=BASE, suppress_update_warning=True) as hx:
        single = await hx.capture(
            CaptureEvent(
                type="test_run",
                session_id=SESSION + "-async",
                payload={"name": "payments", "status": "passed", "passed": 12},
            )
        )
        batch = await hx.capture_batch(
            [
                CaptureEvent(
                    type="message",
                    session_id=SESSION + "-async",
                    payload={"role": "assistant", "content": "Rolled out v2"},
                )
                for _ in range(3)
            ]
        )
        metrics = await hx.get_metrics(period="24h", granularity="hour")
    return result_dict(single), batch_dict(batch), metrics


def main():
    sync_single, sync_batch, raw_metrics = sync_part()
    async_single, async_batch, metrics = asyncio.run(async_part())
    print(
        json.dumps(
            {
                "sync_single": sync_single,
                "sync_batch": sync_batch,
                "raw_metrics_events": raw_metrics["usage"]["events"],
                "async_single": async_single,
                "async_batch": async_batch,
                "metrics": {
                    "period_start": metrics.period_start,
                    "period_end": metrics.period_end,
                    "granularity": metrics.granularity,
                    "events_total": metrics.events_total,
                    "events_ingested": metrics.events_ingested,
                    "quota_plan": metrics.quota_plan,
                    "quota_events_used": metrics.quota_events_used,
                    "quota_events_remaining": metrics.quota_events_remaining,
                },
            }
        )
    )


if __name__ == "__main__":
    main()
