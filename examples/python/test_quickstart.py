"""The quickstart as tests: each starts from an empty tenant and reads its own writes."""

from hippocortex.types import CaptureEvent, SynthesizeOptions

import quickstart


def test_what_is_captured_is_found(engram):
    with engram.sdk() as hx:
        hx.capture(CaptureEvent("message", "s1", {"role": "user", "content": "The staging database listens on port 5433"}))
        engram.wait_searchable()
        pack = hx.synthesize("which port does the staging database use?", SynthesizeOptions(max_tokens=500))
        assert any("5433" in e.content for e in pack.entries), [e.content for e in pack.entries]


def test_every_test_starts_empty(engram):
    with engram.sdk() as hx:
        pack = hx.synthesize("which port does the staging database use?", SynthesizeOptions(max_tokens=500))
        assert pack.entries == []


def test_the_quickstart_learns_a_procedure(engram):
    pack = quickstart.run(engram.base, engram.key)
    procedures = [e for e in pack.entries if e.section == "procedures"]
    assert procedures, [(e.section, e.content) for e in pack.entries]
    steps = procedures[0].content
    assert "make test" in steps and "kubectl apply" in steps, steps
    assert steps.index("make test") < steps.index("kubectl apply"), steps
