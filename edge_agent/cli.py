"""``storefleet edge run``: a thin CLI over ``AgentConfig`` and ``Agent``.

Mounted by the top-level CLI with ``app.add_typer(edge_agent.cli.app, name="edge")``;
also runnable alone as ``python -m edge_agent run ...``.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

# The agent is imported inside `run`: `storefleet edge run --help` must not load it
# (drivers, inference, the local bus: about a second; issue 11).
if TYPE_CHECKING:
    from edge_agent.config import AgentConfig

app = typer.Typer(help="The store-box edge agent.", no_args_is_help=True)

_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_NOISY_LOGGERS = ("transitions", "amqtt")


@app.callback()
def _group() -> None:
    """The store-box edge agent."""


@app.command("run")
def run(
    store: Annotated[str | None, typer.Option("--store", help="store id")] = None,
    cloud: Annotated[
        str | None,
        typer.Option("--cloud", envvar="STOREFLEET_CLOUD_URL",
                     help="cloud broker, mqtt://host:port or mqtts://host:8883 (TLS); "
                          "a cluster: mqtts://n1:8883,n2:8883,n3:8883"),
    ] = None,
    cloud_username: Annotated[
        str | None,
        typer.Option("--cloud-username", envvar="STOREFLEET_CLOUD_USERNAME",
                     help="the store's broker user [default: the store id]"),
    ] = None,
    cloud_password_file: Annotated[
        Path | None,
        typer.Option("--cloud-password-file", envvar="STOREFLEET_CLOUD_PASSWORD_FILE",
                     help="file holding the store's broker password (made by `storefleet "
                          "cloud broker add-store --generate`)"),
    ] = None,
    cloud_ca: Annotated[
        Path | None,
        typer.Option("--cloud-ca", envvar="STOREFLEET_CLOUD_CA",
                     help="mqtts://: the CA certificate that signed the broker's "
                          "[default: the system's CAs]"),
    ] = None,
    cloud_cert: Annotated[
        Path | None,
        typer.Option("--cloud-cert", envvar="STOREFLEET_CLOUD_CERT",
                     help="mqtts://: the store's client certificate, CN = store id "
                          "(`storefleet cloud pki store`)"),
    ] = None,
    cloud_key: Annotated[
        Path | None,
        typer.Option("--cloud-key", envvar="STOREFLEET_CLOUD_KEY",
                     help="mqtts://: the client certificate's private key"),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="where outbox.db lives")
    ] = None,
    local_bus: Annotated[
        str | None,
        typer.Option("--local-bus", help="'embedded' (host an amqtt broker) or mqtt://host:port"),
    ] = None,
    local_bus_port: Annotated[
        int | None, typer.Option("--local-bus-port", help="port of the embedded broker")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option("--metrics-port", help="Prometheus port, 0 = off")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="TOML file with AgentConfig fields")
    ] = None,
    log_level: Annotated[str, typer.Option("--log-level")] = "INFO",
) -> None:
    """Run the agent until SIGTERM or SIGINT (exit 75: it stopped to be started again,
    e.g. into a new release; run it under storefleet-edge-launcher, decision 0041)."""
    from edge_agent.config import load_config
    from edge_agent.errors import AgentError, ConfigError

    logging.basicConfig(level=log_level.upper(), format=_LOG_FORMAT)
    if logging.getLogger().level > logging.DEBUG:
        for noisy in _NOISY_LOGGERS:  # per-packet / per-state-change INFO lines
            logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        cfg = load_config(
            config,
            environ=os.environ,  # STOREFLEET_<MODULE>__<FIELD> module settings
            store_id=store,
            cloud_url=cloud,
            cloud_username=cloud_username,
            cloud_password_file=cloud_password_file,
            cloud_ca=cloud_ca,
            cloud_cert=cloud_cert,
            cloud_key=cloud_key,
            data_dir=data_dir,
            local_bus=local_bus,
            local_bus_port=local_bus_port,
            metrics_port=metrics_port,
        )
    except ConfigError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    import asyncio  # here, not at the top: 30 ms of every `storefleet ... --help`

    try:
        restart = asyncio.run(_run(cfg))
    except AgentError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from err
    if restart:
        from edge_agent.app import RESTART_EXIT_CODE

        raise typer.Exit(RESTART_EXIT_CODE)  # the supervisor starts the agent again


@app.command("enrol")
def enrol(
    token: Annotated[str, typer.Option("--token", envvar="STOREFLEET_ENROL_TOKEN",
                                       help="the one-time token of `fleet provision`")],
    cloud_api: Annotated[str, typer.Option("--cloud-api", help="the cloud API base URL")],
    directory: Annotated[Path, typer.Option(
        "--dir", help="where to install the identity")] = Path("/etc/storefleet/identity"),
) -> None:
    """Fetch this box's identity (key, certificate, CA, broker URL) once and install it."""
    from edge_agent.enrolment import EnrolError, fetch, install

    try:
        paths = install(fetch(cloud_api, token), directory)
    except EnrolError as err:
        typer.echo(f"enrolment failed ({err.reason}): {err}", err=True)
        raise typer.Exit(1) from err
    broker = paths["broker.url"].read_text().strip()
    typer.echo(f"identity installed in {directory}; run the agent with --cloud {broker} "
               f"--cloud-ca {paths['ca.crt']} --cloud-cert {paths['store.crt']} "
               f"--cloud-key {paths['store.key']}")


async def _run(cfg: AgentConfig) -> bool:
    """Run the agent; True when it stopped to be restarted (``request_restart``)."""
    import asyncio

    from edge_agent.app import Agent

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    agent = Agent(cfg)
    await agent.run(stop=stop)
    return agent.restart_reason is not None


def main() -> None:
    app()
