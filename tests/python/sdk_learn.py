"""The pinned hippocortex SDK against engram: learn, list_artifacts (filters, pagination),
get_artifact. Prints one JSON line with what it saw; exits non-zero on any failure."""

import asyncio
import json
import os
import time

from hippocortex import Hippocortex
from hippocortex.types import LearnOptions


async def main():
    hx = Hippocortex(api_key=os.environ["ENGRAM_KEY"], base_url=os.environ["ENGRAM_URL"])
    result = await hx.learn(LearnOptions(scope="full", min_pattern_strength=0.2,
                                         artifact_types=["task_schema", "failure_playbook"]))
    assert result.run_id.startswith("job_"), result
    assert result.status in ("queued", "completed", "partial"), result

    # The job runs in the background: poll with a deadline.
    deadline = time.time() + 30
    listed = None
    while time.time() < deadline:
        listed = await hx.list_artifacts(limit=100)
        if listed.total >= 2:
            break
        await asyncio.sleep(0.1)
    assert listed is not None and listed.total >= 2, listed

    types_ok = all(a.type in ("task_schema", "failure_playbook") for a in listed.artifacts)
    schemas = await hx.list_artifacts(type="task_schema", status="active")
    assert schemas.artifacts and all(a.type == "task_schema" for a in schemas.artifacts), schemas

    page = await hx.list_artifacts(limit=1, sort="confidence", order="desc")
    assert len(page.artifacts) == 1 and page.has_more and page.cursor, page
    page2 = await hx.list_artifacts(limit=1, sort="confidence", order="desc", cursor=page.cursor)
    assert page2.artifacts[0].id != page.artifacts[0].id
    assert page2.artifacts[0].confidence <= page.artifacts[0].confidence

    first = listed.artifacts[0]
    got = await hx.get_artifact(first.id)
    got_same = (got.id == first.id and got.content == first.content
                and got.evidence_count == first.evidence_count
                and got.confidence == first.confidence)
    print(json.dumps({"artifacts": listed.total, "got_same": got_same, "types_ok": types_ok}))


asyncio.run(main())
