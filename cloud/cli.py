"""``storefleet cloud ...``: a thin CLI over ``create_app`` and ``IngestWorker``.

The top-level CLI mounts this as ``app.add_typer(cloud.cli.app, name="cloud")``.
Every option falls back to its ``STOREFLEET_*`` environment variable (see
``cloud.settings``), then to the default.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cloud.broker_cli import app as broker_app
from cloud.pki_cli import app as pki_app
from cloud.secrets_cli import app as secrets_app

# Everything heavy (settings, app, ingest, prometheus) is imported inside the commands:
# `storefleet cloud ... --help` must not load FastAPI and SQLAlchemy (issue 11).
if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from cloud.settings import CloudSettings

logger = logging.getLogger(__name__)

app = typer.Typer(help="storefleet cloud: REST API and MQTT ingest.", no_args_is_help=True)
app.add_typer(broker_app, name="broker")
app.add_typer(secrets_app, name="secrets")
app.add_typer(pki_app, name="pki")

DbOpt = Annotated[
    str | None,
    typer.Option("--db", envvar="STOREFLEET_DATABASE_URL", show_envvar=True,
                 help="SQLAlchemy URL [default: sqlite:///./storefleet.db]"),
]
MqttOpt = Annotated[
    str | None,
    typer.Option("--mqtt", envvar="STOREFLEET_MQTT_URL", show_envvar=True,
                 help="broker URL, or a cluster's: mqtt://n1:1883,n2:1883,n3:1883 "
                      "[default: mqtt://127.0.0.1:1883]"),
]
LogOpt = Annotated[str, typer.Option("--log-level", envvar="STOREFLEET_LOG_LEVEL")]


def _settings(**overrides: Any) -> CloudSettings:
    from pydantic import ValidationError

    from cloud.settings import CloudSettings

    try:
        return CloudSettings.from_env(**overrides)
    except (ValidationError, ValueError) as err:
        typer.echo(f"invalid settings: {err}", err=True)
        raise typer.Exit(2) from err


def _logging(level: str) -> None:
    logging.basicConfig(level=level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@app.command()
def serve(
    host: Annotated[str, typer.Option(envvar="STOREFLEET_HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="STOREFLEET_PORT")] = 8000,
    db: DbOpt = None,
    mqtt: MqttOpt = None,
    ingest: Annotated[
        bool,
        typer.Option("--ingest/--no-ingest", envvar="STOREFLEET_SERVE_INGEST",
                     help="also run an ingest worker in the API's event loop"),
    ] = False,
    dev: Annotated[
        bool,
        typer.Option("--dev", envvar="STOREFLEET_DEV",
                     help="start without a signing key file and member hash key (a new "
                          "signing key every start, no phone lookups): for trying it out"),
    ] = False,
    log_level: LogOpt = "info",
) -> None:
    """Run the REST API (OpenAPI docs at /docs, metrics at /metrics)."""
    import uvicorn

    from cloud.main import create_app

    _logging(log_level)
    settings = _settings(database_url=db, mqtt_url=mqtt)
    missing = [name for name, value in (
        ("STOREFLEET_SIGNING_KEY_FILE", settings.signing_key_file),
        ("STOREFLEET_MEMBER_HASH_KEY(_FILE)", settings.member_hash_key)) if value is None]
    if missing and not dev:
        # Without them the API would sign with a new key at every start (every store's
        # trust gone) and refuse member sign-ups: a production trap, so refuse.
        typer.echo(f"not set: {', '.join(missing)}; create them with `storefleet cloud "
                   "secrets init DIR` and load DIR/cloud.env, or pass --dev to try it out",
                   err=True)
        raise typer.Exit(2)
    if not settings.api_tokens:
        logger.warning("no STOREFLEET_API_TOKENS: every /api/v1 request will get 401")
    uvicorn.run(create_app(settings, ingest=ingest), host=host, port=port,
                log_level=log_level.lower())


@app.command("ingest")
def ingest_cmd(
    db: DbOpt = None,
    mqtt: MqttOpt = None,
    client_id: Annotated[
        str | None,
        typer.Option("--client-id", envvar="STOREFLEET_INGEST_CLIENT_ID",
                     help="fixed MQTT client id (the persistent session) [default: "
                          "storefleet-ingest-1]"),
    ] = None,
    share_group: Annotated[
        str | None,
        typer.Option("--share-group", envvar="STOREFLEET_SHARE_GROUP",
                     help="$share group [default: storefleet-ingest]"),
    ] = None,
    no_share: Annotated[
        bool, typer.Option("--no-share", help="plain subscriptions (brokers without $share)")
    ] = False,
    metrics_port: Annotated[
        int,
        typer.Option(envvar="STOREFLEET_INGEST_METRICS_PORT",
                     help="serve Prometheus metrics on this port; 0 = off"),
    ] = 9108,
    drain_s: Annotated[
        float,
        typer.Option("--drain-s", envvar="STOREFLEET_INGEST_DRAIN_S", min=0,
                     help="on SIGTERM/SIGINT, store what was already routed to this worker "
                          "for at most this long, then end its session (decision 0029)"),
    ] = 5.0,
    log_level: LogOpt = "info",
) -> None:
    """Run one ingest worker: MQTT uplink -> database, acknowledged after commit."""
    from prometheus_client import CollectorRegistry, start_http_server

    _logging(log_level)
    if share_group is not None and share_group.strip().lower() in ("", "none", "-"):
        share_group, no_share = None, True
    settings = _settings(database_url=db, mqtt_url=mqtt, ingest_client_id=client_id,
                         share_group=share_group)
    if no_share:
        settings = settings.model_copy(update={"share_group": None})
    registry = CollectorRegistry()
    if metrics_port:
        try:
            start_http_server(metrics_port, registry=registry)
        except OSError as err:
            typer.echo(f"cannot serve metrics on port {metrics_port}: {err.strerror} (each "
                       "ingest worker on a host needs its own --metrics-port, or 0 for none)",
                       err=True)
            raise typer.Exit(2) from err
    import asyncio  # here, not at the top: 30 ms of every `storefleet ... --help`

    asyncio.run(_ingest_until_signal(settings, registry, drain_s=drain_s))


async def _ingest_until_signal(settings: CloudSettings, registry: CollectorRegistry, *,
                               drain_s: float) -> None:
    import asyncio
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    from cloud.ingest.worker import run_ingest
    from cloud.main import ingest_hooks, make_retail

    hooks = ingest_hooks(registry, retail=make_retail(settings, registry))
    # A signal is a clean stop: the worker hands over and ends its session (0029).
    await run_ingest(settings, registry=registry, stop_event=stop, hooks=hooks,
                     drain_s=drain_s)
