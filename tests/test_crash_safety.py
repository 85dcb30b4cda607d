"""Crash safety, process level: a real `python -m center web` over embedded PostgreSQL, Redis and
broker that the test starts (bench/crash.py's rig); under a ticket-creation load the test kills
with SIGKILL, in turn, PostgreSQL, Redis and the web process, brings each back as the supervisor
would, and finds every acknowledged ticket (HTTP 201) in PostgreSQL with its complete timeline,
no ticket stored in part, and every change delivered to Redis (tkt:changes; the outbox empty):
a ticket may commit while Redis is dead (its session check still cached in the web process), and
then the change relay delivers its change once Redis is back."""
from __future__ import annotations

import pytest

from bench.crash import Rig, run_victim

pytestmark = [pytest.mark.process, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    """The servers and the web, one set for the three kills (the city is generated once)."""
    started = Rig(tmp_path_factory.mktemp("crash") / "var")
    try:
        started.start_web()
        yield started
    finally:
        started.close()


@pytest.mark.parametrize("victim, down_s", [("postgres", 12.0), ("redis", 12.0), ("web", 1.0)])
def test_every_acknowledged_ticket_survives_a_kill(rig, victim, down_s):
    # a server stays dead longer than the web waits for it (10 s for PostgreSQL, 5 s for Redis)
    outcome = run_victim(rig, victim, before=20, after=20, down_s=down_s)
    assert len(outcome.acknowledged) >= 40
    assert outcome.missing == [] and outcome.incomplete == [], (outcome, rig.log()[-3000:])
    assert outcome.found == len(outcome.acknowledged)
    assert outcome.half_saved == []  # nor any ticket refused or unanswered stored in part
    assert outcome.undelivered == [] and outcome.outbox_left == 0, outcome
    assert 500 not in outcome.refused, (outcome.refused, rig.log()[-3000:])
