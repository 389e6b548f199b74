"""Audio schedules authored at HQ (decision 0048): the chain's schedule with per-region,
per-group and per-store overrides, compiled per store into the box's ``AudioSchedule``.

    spec = AudioScheduleSpec.model_validate(body)       # 422 on a bad document
    doc = compile_schedule(spec, version=3, timezone="Europe/Berlin", regions=["north"])
    doc = effective_schedule(session, "s1", date(2026, 12, 24))   # from the database
"""

from cloud.audio.compile import compile_schedule, day_plan, effective_schedule
from cloud.audio.errors import AudioError
from cloud.audio.model import AudioScheduleSpec, Override

__all__ = ["AudioError", "AudioScheduleSpec", "Override", "compile_schedule", "day_plan",
           "effective_schedule"]
