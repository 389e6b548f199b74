"""The test services themselves start and answer."""

from __future__ import annotations

import paho.mqtt.client as mqtt
import sqlalchemy as sa

from tests.services import Mosquitto


def test_mosquitto_round_trip(mosquitto: Mosquitto) -> None:
    got: list[bytes | bytearray] = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.on_message = lambda _c, _u, m: got.append(m.payload)
    c.connect(mosquitto.host, mosquitto.port)
    c.subscribe("t/1", qos=1)
    c.loop_start()
    try:
        import time

        time.sleep(0.2)
        c.publish("t/1", b"hello", qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        c.loop_stop()
        c.disconnect()
    assert got == [b"hello"]


def test_database_answers(db_url: str) -> None:
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("select 1")).scalar() == 1
    engine.dispose()
