"""A birth the cloud does not answer is published again with backoff and jitter, not at a
fixed interval (decision 0061): 5,000 stores that lost one broker must not re-birth in
lockstep at an ingest that is behind. The waits as computed, then a real agent on a real
Mosquitto with nobody answering."""

from __future__ import annotations

import itertools
import logging
import random
import re
import statistics
from pathlib import Path

import pytest

from edge_agent.uplink.session import birth_retry
from tests.edge_agent.helpers import make_config, metric, running_agent, wait_until
from tests.services import Mosquitto


def test_the_waits_double_with_jitter_and_stay_within_their_bounds() -> None:
    retry = birth_retry(10.0, rng=random.Random(1))
    waits = [retry.next() for _ in range(12)]
    for n, wait in enumerate(waits, start=1):
        assert 10.0 <= wait <= min(240.0, 10.0 * 2 ** n), (n, wait)
    assert max(waits[6:]) > 40.0  # the ceiling grew past a few timeouts
    # 5,000 stores born at the same moment: their first re-births are spread over the
    # whole [10, 20] s, not in one second.
    firsts = [birth_retry(10.0, rng=random.Random(i)).next() for i in range(5_000)]
    assert 10.0 <= min(firsts) < 10.1 and 19.9 < max(firsts) <= 20.0
    assert statistics.pstdev(firsts) > 2.5  # uniform over 10 s: ~2.9
    busiest_second = max(sum(1 for f in firsts if s <= f < s + 1) for s in range(10, 20))
    assert busiest_second < 600  # ~500 a second, not 5,000


@pytest.mark.mosquitto
async def test_an_unanswered_birth_is_sent_again_at_growing_jittered_intervals(
    tmp_path: Path, mosquitto_factory: object, caplog: pytest.LogCaptureFixture
) -> None:
    uplink: Mosquitto = mosquitto_factory()  # type: ignore[operator]
    local: Mosquitto = mosquitto_factory()  # type: ignore[operator]
    config = make_config(tmp_path, uplink=uplink, local=local, await_cloud_ready=True,
                         cloud_ready_timeout_s=0.3)
    caplog.set_level(logging.INFO, logger="edge_agent.uplink.session")
    async with running_agent(config) as agent:
        await wait_until(lambda: metric(agent, "storefleet_uplink_births_unanswered_total")
                         >= 5, within_s=30, what="five births not answered")
    # (time, the wait it announced) of each birth sent again for want of an answer
    again = [(r.created, float(m.group(1))) for r in caplog.records
             if (m := re.search(r"born again \(next in ([\d.]+) s\)", r.getMessage()))]
    assert len(again) >= 5, again
    for n, ((at, wait), (next_at, _)) in enumerate(itertools.pairwise(again[:5]), start=1):
        # drawn from a ceiling that doubles, never below the timeout ...
        assert 0.3 <= wait <= 0.3 * 2 ** n + 0.01, (n, wait)
        # ... and kept: the next birth came after that wait
        assert wait - 0.02 <= next_at - at <= wait + 0.5, (n, next_at - at, wait)
    waits = [w for _, w in again]
    assert len(set(waits)) == len(waits)  # jittered, not a fixed interval
