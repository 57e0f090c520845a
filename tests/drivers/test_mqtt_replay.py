"""The MQTT driver's output for recorded payloads is exactly what it was when they were recorded."""

from __future__ import annotations

from collections import Counter

from tests.drivers import mqtt_replay


def test_replay_gives_the_recorded_readings_one_for_one() -> None:
    recorded = mqtt_replay.load()
    assert len(recorded) > mqtt_replay.MESSAGES  # the stream and the odd cases, nothing lost
    kinds: Counter[str] = Counter()
    for n, (message, events) in enumerate(zip(recorded, mqtt_replay.replay(recorded), strict=True)):
        assert events == message["events"], f"message {n} on {message['topic']}"
        kinds.update(e[0] for e in events)
    # The fixture exercises what it claims to: readings of every kind and status changes.
    assert kinds["reading"] > 5 * mqtt_replay.MESSAGES // 2
    assert kinds["status"] >= 60
