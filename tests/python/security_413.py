"""Posts over-limit bodies with urllib (which writes the whole body before reading) and counts
how many tries read the 413 instead of a broken pipe or a reset. Prints "413 <read>/<tries>"."""

import json
import os
import urllib.error
import urllib.request

base = os.environ["ENGRAM_BASE_URL"]
key = os.environ["ENGRAM_API_KEY"]
tries = 30
read = 0
failures = []
for i in range(tries):
    size = (3 << 20) if i % 2 == 0 else (1 << 20) + 10
    body = b" " * size
    req = urllib.request.Request(
        base + "/v1/capture",
        data=body,
        method="POST",
        headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"},
    )
    try:
        urllib.request.urlopen(req, timeout=30)
        failures.append("accepted")
    except urllib.error.HTTPError as e:
        payload = json.loads(e.read() or b"{}")
        if e.code == 413 and payload.get("error", {}).get("code") == "payload_too_large":
            read += 1
        else:
            failures.append(f"HTTP {e.code}")
    except OSError as e:  # broken pipe, connection reset
        failures.append(type(e).__name__)
print(f"413 {read}/{tries}", failures)
