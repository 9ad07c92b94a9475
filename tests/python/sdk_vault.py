"""Drives the pinned `hippocortex` SDK's vault calls (sync and async) against a live engram.

Env: ENGRAM_BASE_URL (…/v1), ENGRAM_KEY, ENGRAM_ITEM (an item id). Prints one JSON object with
what the SDK parsed. Exits non-zero on any SDK error.
"""

import asyncio
import json
import os

from hippocortex import Hippocortex, SyncHippocortex

BASE = os.environ["ENGRAM_BASE_URL"]
KEY = os.environ["ENGRAM_KEY"]
ITEM = os.environ["ENGRAM_ITEM"]


def match_dict(m):
    return {
        "id": m.id,
        "vault_id": m.vault_id,
        "vault_name": m.vault_name,
        "title": m.title,
        "item_type": m.item_type,
        "service_name": m.service_name,
        "tags": m.tags,
        "relevance": m.relevance,
    }


def sync_part():
    with SyncHippocortex(api_key=KEY, base_url=BASE, suppress_update_warning=True) as hx:
        q = hx.vault_query("openai key", tags=["prod"], item_type="api_key", limit=5)
        r = hx.vault_reveal(ITEM)
        return {"matches": [match_dict(m) for m in q.matches], "total": q.total,
                "query": q.query, "value": r.value}


async def async_part():
    async with Hippocortex(api_key=KEY, base_url=BASE, suppress_update_warning=True) as hx:
        q = await hx.vault_query("openai")
        r = await hx.vault_reveal(ITEM)
        return {"total": q.total, "value": r.value}


print(json.dumps({"sync": sync_part(), "async": asyncio.run(async_part())}))
