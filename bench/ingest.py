"""Ingest at the broker's pace: events per second one ingest worker validates and stores
durably, against a bare paho-mqtt subscriber that only counts the same messages.

The consumer, not the publisher, is the limit: each phase first creates the consumer's
persistent session (its client id, ``clean_session=False``, QoS 1 subscriptions to
ingest's own filters in a ``$share`` group of the phase, as ``cloud.ingest.worker``
subscribes), disconnects, queues ``--events`` device events in the broker for it at QoS 1 (each the
agent's wire format: ``encode(Event)`` on ``topics.evt``, spread over ``STORES``
stores), and only then starts the consumer and times the drain, from the moment it is
told to connect until the last message is counted (bare) or the last row is committed
(ingest; the bench polls ``SELECT count(*)`` every ``POLL_S``).

Phases, each in its own process started and imported before the clock starts:

* ``bare``: paho-mqtt with the worker's client settings (MQTT 3.1.1, persistent
  session, QoS 1, the same keepalive), counting in ``on_message``, automatic PUBACKs;
* ``ingest`` with 1, 2, 4 ... workers (``--workers``): the production ``IngestWorker``
  with the production hooks (``cloud.main.ingest_hooks``, which ignore
  ``device_event``), each on its own persistent session in the one share group (the
  broker splits the queued messages between the sessions), into a fresh database:
  SQLite (WAL, ``synchronous=FULL``) or PostgreSQL (``fsync=on``). Afterwards the
  table must hold exactly ``--events`` rows: every event stored once.

``ratio``: one worker's stored events per second over the bare subscriber's messages
per second; ``ratio_per_worker`` divides a phase's rate by its workers first. CPU
seconds are each process's own (``/proc``), so a consumer that is the limit shows as a
whole core.

    python -m bench.ingest --json                          # SQLite, 100,000, 1,2,4
    storefleet bench ingest --json --db postgres --events 20000 --workers 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from sqlalchemy import text

from bench._services import BenchError, Postgres, mosquittos
from cloud.db.engine import make_engine
from cloud.db.migrate import upgrade
from protocols import encode, topics
from protocols.messages import Event

STORES = 20  # events spread over this many stores (the worker acks each store per batch)
DEVICES = 8  # devices per store whose events are sent
KEEPALIVE_S = 30  # cloud.settings' default keepalive
POLL_S = 0.05  # how often the bench counts rows while a drain runs
PUBLISH_INFLIGHT = 1000  # QoS 1 publishes in flight while queueing (the queueing is untimed)
# Publishes per publisher connection: 100,000 on one stalled twice at ~67,400
# acknowledged, just past a connection's 65,535 message ids (not investigated further);
# 100,000 in connections of 50,000 queue in full.
PUBLISH_PER_CONNECTION = 50_000


@dataclass(frozen=True)
class Drain:
    seconds: float
    count: int
    cpu_s: list[float]
    broker_cpu_s: float

    @property
    def per_s(self) -> float:
        return self.count / self.seconds

    @property
    def per_cpu_s(self) -> float:
        """Messages per CPU second of the consumer's processes: the rate a core would
        give it, less sensitive than ``per_s`` to what else the box is running."""
        return self.count / max(sum(self.cpu_s), 1e-9)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.ingest", description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="end with a one-line JSON result")
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--workers", default="1,2,4", help="worker counts, comma-separated")
    parser.add_argument("--baseline-rounds", type=int, default=3,
                        help="bare subscriber drains; the median is the baseline")
    parser.add_argument("--timeout-s", type=float, default=600.0,
                        help="give up on a drain after this long")
    parser.add_argument("--role", choices=["bench", "bare", "worker"], default="bench",
                        help=argparse.SUPPRESS)  # the children this bench starts
    parser.add_argument("--mqtt", help=argparse.SUPPRESS)
    parser.add_argument("--client-id", help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--group", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "bare":
        return _bare_child(args.mqtt, client_id=args.client_id, expected=args.events)
    if args.role == "worker":
        return _worker_child(args.mqtt, client_id=args.client_id, group=args.group,
                             database_url=args.database_url)
    try:
        workers = [int(w) for w in args.workers.split(",") if w.strip()]
        if not workers or min(workers) < 1 or args.events < 1 or args.baseline_rounds < 1:
            raise ValueError
    except ValueError:
        parser.error("--workers: positive integers, comma-separated; --events >= 1")
    try:
        result = run(db=args.db, events=args.events, workers=workers,
                     timeout_s=args.timeout_s, baseline_rounds=args.baseline_rounds)
    except BenchError as err:
        print(f"bench ingest: {err}", file=sys.stderr)
        return 1
    _report(result, as_json=args.json)
    return 0 if result["all_stored_once"] else 1


def run(*, db: str, events: int, workers: Sequence[int], timeout_s: float,
        baseline_rounds: int = 3) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        [broker] = stack.enter_context(mosquittos([root / "broker"]))
        broker_url, broker_pid = broker.url, broker.pid
        pg: Postgres | None = None
        if db == "postgres":
            pg = Postgres(workdir=root / "pg", fsync=True)  # durable commits, as deployed
            pg.start()
            stack.callback(pg.stop)
        # The baseline is the median of a few drains: on a shared box one sample swings.
        bares = sorted((_drain_bare(broker_url, events=events, broker_pid=broker_pid,
                                    timeout_s=timeout_s, run_id=f"bare_{i}")
                        for i in range(1, baseline_rounds + 1)), key=lambda d: d.per_s)
        bare = bares[len(bares) // 2]
        phases: list[dict[str, Any]] = []
        for n in workers:
            name = f"ingest_{n}"
            url = (pg.create_database(name) if pg is not None
                   else f"sqlite:///{root / (name + '.db')}")
            drain, stored = _drain_ingest(broker_url, url, events=events, workers=n,
                                          broker_pid=broker_pid, timeout_s=timeout_s,
                                          run_id=name)
            phases.append({
                "workers": n, "seconds": round(drain.seconds, 3),
                "stored_per_s": round(drain.per_s), "stored": stored,
                "per_worker_per_s": round(drain.per_s / n),
                "ratio_per_worker": round(drain.per_s / n / bare.per_s, 3),
                "per_cpu_s": round(drain.per_cpu_s),
                "cpu_ratio": round(drain.per_cpu_s / bare.per_cpu_s, 3),
                "worker_cpu_s": [round(c, 2) for c in drain.cpu_s],
                "broker_cpu_s": round(drain.broker_cpu_s, 2),
            })
    first = phases[0]
    return {
        "bench": "ingest", "db": db, "events": events, "stores": STORES,
        "bare_per_s": round(bare.per_s),
        "bare_rounds_per_s": [round(b.per_s) for b in bares],
        "bare_seconds": round(bare.seconds, 3), "bare_per_cpu_s": round(bare.per_cpu_s),
        "bare_cpu_s": round(bare.cpu_s[0], 2), "bare_broker_cpu_s": round(bare.broker_cpu_s, 2),
        "stored_per_s": first["stored_per_s"] if first["workers"] == 1 else None,
        "ratio": round(first["stored_per_s"] / bare.per_s, 3) if first["workers"] == 1
        else None,
        "cpu_ratio": first["cpu_ratio"] if first["workers"] == 1 else None,
        "phases": phases,
        "all_stored_once": all(p["stored"] == events for p in phases),
        "python": platform.python_version(), "cpus": os.cpu_count(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


# ---- phases ---------------------------------------------------------------------------------


def _drain_bare(broker: str, *, events: int, broker_pid: int, timeout_s: float,
                run_id: str) -> Drain:
    client_id = f"bench-{run_id}"
    _create_sessions(broker, [client_id], group=f"bench-{run_id}")
    _queue_events(broker, events=events, run_id=run_id)
    with _children([_child_argv("bare", broker, client_id, f"--events={events}")]) as procs:
        started, cpu = _go(procs, broker_pid)
        line = _readline(procs[0], timeout_s)
        seconds = time.monotonic() - started
        if line.strip() != f"done {events}":
            raise BenchError(f"the bare subscriber said {line.strip()!r}")
        drain = Drain(seconds, events, [_cpu_s(procs[0].pid) - cpu[1]],
                      _cpu_s(broker_pid) - cpu[0])
    # Ended, or the broker would queue a copy of every later drain's backlog for it
    # (each share group gets its own); the workers end theirs at a clean stop.
    _end_session(broker, client_id)
    return drain


def _drain_ingest(broker: str, database_url: str, *, events: int, workers: int,
                  broker_pid: int, timeout_s: float, run_id: str) -> tuple[Drain, int]:
    engine = make_engine(database_url)
    try:
        upgrade(engine)  # before the clock: the workers do not migrate
        client_ids = [f"bench-{run_id}-{i}" for i in range(1, workers + 1)]
        _create_sessions(broker, client_ids, group=f"bench-{run_id}")
        _queue_events(broker, events=events, run_id=run_id)
        argvs = [_child_argv("worker", broker, cid, f"--database-url={database_url}",
                             f"--group=bench-{run_id}")
                 for cid in client_ids]
        with _children(argvs) as procs, engine.connect() as conn:
            started, cpu = _go(procs, broker_pid)
            deadline = started + timeout_s
            count = 0
            while count < events:
                if time.monotonic() > deadline:
                    raise BenchError(f"{workers} worker(s) stored {count} of {events} "
                                     f"in {timeout_s:.0f} s")
                if (dead := [p.pid for p in procs if p.poll() is not None]):
                    raise BenchError(f"ingest worker(s) {dead} exited during the drain")
                time.sleep(POLL_S)
                count = conn.execute(text("SELECT count(*) FROM events")).scalar_one()
                conn.rollback()  # a new snapshot for the next look
            seconds = time.monotonic() - started
            drain = Drain(seconds, count,
                          [_cpu_s(p.pid) - before for p, before in zip(procs, cpu[1:],
                                                                        strict=True)],
                          _cpu_s(broker_pid) - cpu[0])
        # The workers have stopped (a clean stop: drained and handed over): anything
        # stored twice or late would show now.
        with engine.connect() as conn:
            stored = conn.execute(text("SELECT count(*) FROM events")).scalar_one()
        return drain, int(stored)
    finally:
        engine.dispose()


def _create_sessions(broker: str, client_ids: Sequence[str], *, group: str) -> None:
    """Each consumer's persistent session with ingest's subscriptions, then offline: the
    broker queues what follows for it."""
    for client_id in client_ids:
        client = _paho(broker, client_id)
        subscribed = threading.Event()
        client.on_subscribe = lambda *_, done=subscribed: done.set()
        client.loop_start()
        client.subscribe([(topics.shared(f, group), 1)
                          for f in topics.cloud_uplink_filters()])
        if not subscribed.wait(10):
            raise BenchError(f"{client_id}: no SUBACK from the broker")
        client.disconnect()
        client.loop_stop()


def _end_session(broker: str, client_id: str) -> None:
    """MQTT 3.1.1: a ``clean_session=True`` connect discards the client id's session."""
    client = _paho(broker, client_id, clean_session=True)
    connected = threading.Event()
    client.on_connect = lambda *_: connected.set()
    client.loop_start()
    if not connected.wait(10):
        raise BenchError(f"{client_id}: no CONNACK from the broker")
    client.disconnect()
    client.loop_stop()


def _queue_events(broker: str, *, events: int, run_id: str) -> None:
    """``events`` device events at QoS 1, every one acknowledged by the broker."""
    payloads = [(topics.evt(store, "device_event"), encode(event))
                for store, event in _events(events, run_id=run_id)]
    for n, start in enumerate(range(0, len(payloads), PUBLISH_PER_CONNECTION)):
        _publish(broker, payloads[start:start + PUBLISH_PER_CONNECTION],
                 client_id=f"bench-publisher-{run_id}-{n}")


def _publish(broker: str, payloads: Sequence[tuple[str, bytes]], *, client_id: str) -> None:
    client = _paho(broker, client_id, clean_session=True, max_inflight=PUBLISH_INFLIGHT)
    acked = 0
    done = threading.Event()

    def on_publish(*_: Any) -> None:
        nonlocal acked
        acked += 1
        if acked == len(payloads):
            done.set()

    client.on_publish = on_publish
    client.loop_start()
    for topic, payload in payloads:
        client.publish(topic, payload, qos=1)
    if not done.wait(300):
        raise BenchError(f"the broker acknowledged {acked} of {len(payloads)} publishes")
    client.disconnect()
    client.loop_stop()


def _events(n: int, *, run_id: str) -> Iterator[tuple[str, Event]]:
    now = int(time.time() * 1000)
    for i in range(n):
        store = f"S{i % STORES:04d}"
        seq = i // STORES
        device = f"dev-{seq % DEVICES}"
        yield store, Event(id=f"{run_id}-{i}", kind="device_event", store_id=store,
                           device_id=device, seq=seq, ts=now + i,
                           data={"device_kind": "fridge", "code": "door_open",
                                 "value": i % 97})


# ---- children ---------------------------------------------------------------------------------


def _child_argv(role: str, broker: str, client_id: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "bench.ingest", "--role", role, "--mqtt", broker,
            "--client-id", client_id, *extra]


@contextmanager
def _children(argvs: Sequence[list[str]]) -> Iterator[list[subprocess.Popen[str]]]:
    """Start the children, wait until each has imported and says ``ready``; stop them
    (SIGTERM: a worker's clean stop) at the end."""
    procs = [subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, cwd=Path(__file__).resolve().parents[1])
             for argv in argvs]
    try:
        for proc in procs:
            line = _readline(proc, 60)
            if line.strip() != "ready":
                raise BenchError(f"a child said {line.strip()!r} instead of 'ready'")
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _go(procs: Sequence[subprocess.Popen[str]], broker_pid: int
        ) -> tuple[float, list[float]]:
    """Tell the children to start; the time, and the CPU seconds so far of the broker
    and of each child (their imports are not the drain's)."""
    cpu = [_cpu_s(broker_pid), *(_cpu_s(p.pid) for p in procs)]
    started = time.monotonic()
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    return started, cpu


def _readline(proc: subprocess.Popen[str], timeout_s: float) -> str:
    assert proc.stdout is not None
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(proc.stdout.readline()),  # type: ignore[union-attr]
                              daemon=True)
    reader.start()
    reader.join(timeout_s)
    if not box:
        raise BenchError(f"child {proc.pid} said nothing in {timeout_s:.0f} s")
    return box[0]


def _bare_child(broker: str, *, client_id: str, expected: int) -> int:
    """Count messages; say ``done N`` when ``expected`` came. Nothing else."""
    client = _paho(broker, client_id)
    count = 0
    done = threading.Event()

    def on_message(*_: Any) -> None:
        nonlocal count
        count += 1
        if count == expected:
            done.set()

    client.on_message = on_message
    print("ready", flush=True)
    sys.stdin.readline()
    client.loop_start()
    done.wait()
    print(f"done {count}", flush=True)
    client.disconnect()
    client.loop_stop()
    return 0


def _worker_child(broker: str, *, client_id: str, group: str, database_url: str) -> int:
    """The production worker and hooks, started on ``go``, stopped (cleanly) on SIGTERM."""
    import asyncio

    from prometheus_client import CollectorRegistry

    from cloud.ingest.worker import IngestWorker
    from cloud.main import ingest_hooks, make_retail
    from cloud.settings import CloudSettings

    settings = CloudSettings(database_url=database_url, mqtt_url=broker,
                             ingest_client_id=client_id, share_group=group)
    registry = CollectorRegistry()
    hooks = ingest_hooks(registry, retail=make_retail(settings, registry))
    worker = IngestWorker(settings, registry=registry, hooks=hooks, migrate=False)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await worker.run(stop)

    print("ready", flush=True)
    sys.stdin.readline()
    asyncio.run(serve())
    return 0


# ---- helpers ----------------------------------------------------------------------------------


def _paho(broker: str, client_id: str, *, clean_session: bool = False,
          max_inflight: int | None = None) -> paho.Client:
    """A connected paho client with the ingest worker's client settings."""
    where = urlsplit(broker)
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id,
                         clean_session=clean_session, protocol=paho.MQTTv311)
    if max_inflight is not None:
        client.max_inflight_messages_set(max_inflight)
    client.connect(where.hostname or "127.0.0.1", where.port or 1883, keepalive=KEEPALIVE_S)
    return client


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _report(result: dict[str, Any], *, as_json: bool) -> None:
    print(f"bare paho subscriber: {result['bare_per_s']:,} msg/s "
          f"({result['events']:,} in {result['bare_seconds']} s, "
          f"{result['bare_cpu_s']} CPU s; rounds {result['bare_rounds_per_s']})")
    for p in result["phases"]:
        print(f"{p['workers']} worker(s) on {result['db']}: {p['stored_per_s']:,} events/s "
              f"({p['per_worker_per_s']:,} per worker, ratio {p['ratio_per_worker']}; "
              f"{p['per_cpu_s']:,} per CPU s, ratio {p['cpu_ratio']}), "
              f"{p['stored']:,} stored, worker CPU s {p['worker_cpu_s']}, "
              f"broker CPU s {p['broker_cpu_s']}")
    if as_json:
        print(json.dumps(result))


if __name__ == "__main__":
    raise SystemExit(main())
