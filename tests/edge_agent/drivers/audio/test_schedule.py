"""The pure scheduler: dayparts, announcements, spots, presence, ducking, volume."""

from __future__ import annotations

from typing import Any

from edge_agent.drivers.audio.schedule import Scheduler
from protocols.audio import AudioSchedule
from tests.edge_agent.drivers.audio.fixtures import hhmm, schedule_doc


def sched(**changes: Any) -> Scheduler:
    return Scheduler(AudioSchedule.model_validate(schedule_doc(**changes)))


def test_closed_store_is_silent_and_music_loops_by_time() -> None:
    s = sched()
    out = s.output(hhmm(7, 59))
    assert out["floor"].music is None and out["floor"].voice is None
    # 08:03:10 -> m1 (0-3:00) has ended, m2 started at 08:03:00
    music = s.output(hhmm(8, 3) + 10_000)["floor"].music
    assert music is not None and music.track_id == "m2" and music.started_ms == hhmm(8, 3)
    # the playlist is 7 min long: 08:07:00 starts m1 again
    again = s.output(hhmm(8, 7))["floor"].music
    assert again is not None and again.track_id == "m1" and again.started_ms == hhmm(8, 7)


def test_opening_announcement_ducks_the_music_and_zone_volume_applies() -> None:
    s = sched()
    out = s.output(hhmm(8) + 5_000)
    floor, aisle = out["floor"], out["aisle"]
    assert floor.voice is not None and floor.voice.item == "opening"
    assert floor.voice.gain_db == -6.0  # zone volume
    assert floor.music is not None and floor.music.gain_db == -6.0 - 12.0  # ducked
    assert aisle.music is not None and aisle.music.gain_db == -3.0 - 12.0
    after = s.output(hhmm(8) + 30_000)["floor"]  # the 30 s announcement is over
    assert after.voice is None and after.music is not None and after.music.gain_db == -6.0


def test_interval_spots_in_their_window_and_priorities() -> None:
    s = sched()
    assert s.output(hhmm(8, 45))["floor"].voice is None  # before the 09:00 window
    spot = s.output(hhmm(9, 15) + 1_000)["floor"].voice
    assert spot is not None and spot.item == "promo" and spot.started_ms == hhmm(9, 15)
    assert s.output(hhmm(9, 15) + 21_000)["floor"].voice is None  # 20 s spot is over
    assert s.output(hhmm(9, 15) + 1_000)["aisle"].voice is None  # floor only
    # the closing announcement (priority 200) beats everything; evening music is floor only
    late = s.output(hhmm(21, 45) + 1_000)
    assert late["floor"].voice is not None and late["floor"].voice.item == "closing"
    assert late["floor"].music is not None and late["floor"].music.track_id == "e1"
    assert late["floor"].music.gain_db == -6.0 - 2.0 - 12.0
    assert late["aisle"].music is None


def test_presence_spot_plays_only_when_someone_is_near_with_cooldown() -> None:
    s = sched()
    t = hhmm(10, 2)
    assert s.output(t)["aisle"].voice is None  # nobody near: silent
    assert s.on_presence("P9", present=True, now_ms=t) == []  # not this zone's sensor
    assert s.on_presence("P1", present=False, now_ms=t) == []
    assert s.on_presence("P1", present=True, now_ms=t) == ["near@aisle"]
    voice = s.output(t + 1_000)["aisle"].voice
    assert voice is not None and voice.item == "near" and voice.started_ms == t
    assert s.output(t + 1_000)["floor"].voice is None
    assert s.on_presence("P1", present=True, now_ms=t + 30_000) == []  # cooling down
    assert s.output(t + 16_000)["aisle"].voice is None  # 15 s spot ended
    assert s.on_presence("P1", present=True, now_ms=t + 80_000) == ["near@aisle"]


def test_missing_assets_are_skipped() -> None:
    schedule = AudioSchedule.model_validate(schedule_doc())
    s = Scheduler(schedule, available=set(schedule.tracks) - {"m1", "open"})
    out = s.output(hhmm(8) + 5_000)["floor"]
    assert out.voice is None  # the opening announcement's asset is not cached
    assert out.music is not None and out.music.track_id == "m2"


def test_next_change_walks_a_day_in_few_steps_without_missing_changes() -> None:
    s = sched()
    t, steps, changes = hhmm(0), 0, 0
    previous = s.output(t)
    while t < hhmm(24):
        nxt = s.next_change_ms(t)
        assert nxt > t
        # nothing changes strictly between t and nxt (sampled)
        for probe in (t + (nxt - t) // 3, t + 2 * (nxt - t) // 3):
            if probe > t:
                assert s.output(probe) == s.output(t)
        t = nxt
        steps += 1
        out = s.output(t)
        changes += out != previous
        previous = out
    assert steps < 800
    assert changes > 150
