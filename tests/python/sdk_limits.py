"""What the pinned official `hippocortex` SDK makes of engram's 429s.

Env: ENGRAM_BASE_URL (e.g. http://127.0.0.1:1234/v1), ENGRAM_RATE_KEY (a key whose bucket holds
two requests), ENGRAM_QUOTA_KEY (a key whose tenant may store one event this month). Prints one
JSON object with the errors the SDK raised; the Rust test checks it. Exits non-zero when a call
that must fail does not.
"""

import json
import os

from hippocortex import SyncHippocortex
from hippocortex.client import HippocortexError
from hippocortex.types import CaptureEvent

BASE = os.environ["ENGRAM_BASE_URL"]


def event(i):
    return CaptureEvent(
        type="message", session_id="sdk-limits", payload={"role": "user", "content": f"e{i}"}
    )


def error_dict(e):
    return {
        "code": e.code,
        "status": e.status_code,
        "details": e.details,
        "message": str(e),
    }


def first_error(hx, calls):
    """Runs up to `calls` captures; returns how many succeeded and the first error."""
    for i in range(calls):
        try:
            hx.capture(event(i))
        except HippocortexError as e:
            return i, error_dict(e)
    raise SystemExit(f"{calls} captures succeeded; expected a refusal")


out = {}
with SyncHippocortex(
    api_key=os.environ["ENGRAM_RATE_KEY"], base_url=BASE, suppress_update_warning=True
) as hx:
    out["rate_ok"], out["rate"] = first_error(hx, 5)
with SyncHippocortex(
    api_key=os.environ["ENGRAM_QUOTA_KEY"], base_url=BASE, suppress_update_warning=True
) as hx:
    out["quota_ok"], out["quota"] = first_error(hx, 5)
print(json.dumps(out))
