"""``storefleet``: demo, cloud, edge agent and simulators under one command.

Start-up is kept short (``storefleet --help`` and every ``--help`` under it well under
half a second, ``bench/cli_startup.py``): this module and the sub-CLIs it mounts import
only typer and the standard library at module level; each command imports its code when
it runs. ``tests/storefleet/test_cli_startup.py`` fails when an eager import comes back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cloud.cli import app as cloud_app
from edge_agent.cli import app as edge_app
from edge_agent.inference.positioning.cli import app as positioning_app
from firmware_sim.cli import app as sim_app
from storefleet import __version__

app = typer.Typer(
    help="storefleet: edge/IoT fleet system for smart retail stores.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(cloud_app, name="cloud", help="Cloud API server and MQTT ingest workers.")
app.add_typer(edge_app, name="edge", help="The store-box edge agent.")
app.add_typer(sim_app, name="sim", help="Device and store simulators.")
app.add_typer(positioning_app, name="positioning", help="Indoor positioning of carts (BLE).")


# The options of ``storefleet.demo.demo``, declared here so that ``storefleet demo
# --help`` does not import the demo (the whole cloud and agent). Keep the two in step;
# tests/storefleet/test_cli_startup.py compares them.
@app.command("demo")
def demo(
    duration: Annotated[float | None, typer.Option(help="stop after this many seconds "
                                                    "(default: run until Ctrl-C)")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="end with a one-line JSON summary")
    ] = False,
    store: Annotated[str, typer.Option(help="store id")] = "S001",
    devices: Annotated[int, typer.Option(min=1, help="simulated devices")] = 6,
    rate: Annotated[float, typer.Option(min=0.1, help="events per second")] = 20.0,
    data_dir: Annotated[Path | None, typer.Option(help="keep databases here "
                                                   "(default: a temp dir, removed)")] = None,
    api_port: Annotated[int, typer.Option(help="API port (another is picked if busy)")] = 8000,
    log_level: Annotated[str, typer.Option(help="log level of the components")] = "warning",
) -> None:
    """Run cloud, broker, one store's agent and simulated devices in one process."""
    from storefleet.demo import demo as run_demo

    run_demo(duration=duration, as_json=as_json, store=store, devices=devices, rate=rate,
             data_dir=data_dir, api_port=api_port, log_level=log_level)


bench_app = typer.Typer(help="Benchmarks: one command each, JSON as the last line.",
                        no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("pricing")
def bench_pricing(
    as_json: bool = typer.Option(False, "--json", help="end with a one-line JSON result"),
    seconds: float = typer.Option(5.0, help="measuring time per phase"),
) -> None:
    """Baskets priced per second on one core (20 lines, 500 promotions) and p99 latency."""
    from bench.pricing import main as pricing_main

    argv = ["--seconds", str(seconds)] + (["--json"] if as_json else [])
    raise typer.Exit(pricing_main(argv))


@bench_app.command("cli")
def bench_cli(
    as_json: bool = typer.Option(False, "--json", help="end with a one-line JSON result"),
    runs: int = typer.Option(10, min=1, help="runs of each command"),
) -> None:
    """Start-up time of `storefleet --help` and friends against `python -c pass`."""
    from bench.cli_startup import main as cli_startup_main

    argv = ["--runs", str(runs)] + (["--json"] if as_json else [])
    raise typer.Exit(cli_startup_main(argv))


@bench_app.command("rollout")
def bench_rollout(
    as_json: bool = typer.Option(False, "--json", help="end with a one-line JSON result"),
    boxes: int = typer.Option(100, min=1, help="simulated boxes"),
    size_mb: float = typer.Option(50.0, "--size-mb", min=0.001, help="artifact size (MiB)"),
    wave_size: int = typer.Option(20, min=1, help="boxes per wave after the canary"),
) -> None:
    """A 50 MB artifact rolled out to 100 simulated boxes: seconds, cloud bytes and RSS."""
    from bench.rollout import main as rollout_main

    argv = ["--boxes", str(boxes), "--size-mb", str(size_mb), "--wave-size", str(wave_size)]
    raise typer.Exit(rollout_main(argv + (["--json"] if as_json else [])))


@bench_app.command("pricebook")
def bench_pricebook(
    as_json: bool = typer.Option(False, "--json", help="end with a one-line JSON result"),
    skus: int = typer.Option(1_000_000, min=1, help="items in the book"),
    changes: int = typer.Option(10_000, min=1, help="changes in the delta"),
) -> None:
    """A 1,000,000-SKU price book from HQ to a store's till, then a 10,000-change delta:
    wire bytes, build and apply seconds, longest till pause."""
    from bench.pricebook import main as pricebook_main

    argv = ["--skus", str(skus), "--changes", str(changes)]
    raise typer.Exit(pricebook_main(argv + (["--json"] if as_json else [])))


@bench_app.command("content")
def bench_content(
    as_json: bool = typer.Option(False, "--json", help="end with a one-line JSON result"),
    stores: int = typer.Option(100, min=1, help="simulated stores"),
    recording_s: float = typer.Option(30.0, "--recording-s", min=0.1,
                                      help="length of the new recording (8 kHz WAV)"),
    timeout_s: float = typer.Option(300.0, "--timeout-s", min=1,
                                    help="give up on any one wait after this long"),
) -> None:
    """A new audio schedule published to 100 simulated stores: seconds until each
    store's audio unit plays it, against one store alone; cloud bytes and RSS."""
    from bench.content import main as content_main

    argv = ["--stores", str(stores), "--recording-s", str(recording_s),
            "--timeout-s", str(timeout_s)]
    raise typer.Exit(content_main(argv + (["--json"] if as_json else [])))


@bench_app.command("fleet")
def bench_fleet(
    as_json: bool = typer.Option(False, "--json", help="end with a one-line JSON result"),
    stores: int = typer.Option(5000, min=1, help="simulated stores"),
    rate: float = typer.Option(0.01, min=0, help="events per second per store"),
    processes: int = typer.Option(0, min=0, help="simulator processes (0: by store count)"),
    steady_s: float = typer.Option(20.0, "--steady-s", min=1, help="steady-state window"),
    timeout_s: float = typer.Option(600.0, "--timeout-s", min=1,
                                    help="give up on any one wait after this long"),
) -> None:
    """5,000 simulated stores on one Mosquitto and one cloud: connections held, events
    stored per second, recovery after a broker restart, command fan-out to all."""
    from bench.fleet import main as fleet_main

    argv = ["--stores", str(stores), "--rate", str(rate), "--processes", str(processes),
            "--steady-s", str(steady_s), "--timeout-s", str(timeout_s)]
    raise typer.Exit(fleet_main(argv + (["--json"] if as_json else [])))


@bench_app.command("ingest")
def bench_ingest(
    as_json: bool = typer.Option(False, "--json", help="end with a one-line JSON result"),
    db: str = typer.Option("sqlite", help="sqlite or postgres"),
    events: int = typer.Option(100_000, min=1, help="events queued for each drain"),
    workers: str = typer.Option("1,2,4", help="ingest worker counts, comma-separated"),
    baseline_rounds: int = typer.Option(3, "--baseline-rounds", min=1,
                                        help="bare subscriber drains (the median counts)"),
    timeout_s: float = typer.Option(600.0, "--timeout-s", min=1,
                                    help="give up on a drain after this long"),
) -> None:
    """Events per second one ingest worker stores durably from a broker backlog, against
    a bare paho subscriber counting the same; then 2 and 4 workers sharing it."""
    from bench.ingest import main as ingest_main

    argv = ["--db", db, "--events", str(events), "--workers", workers,
            "--baseline-rounds", str(baseline_rounds), "--timeout-s", str(timeout_s)]
    raise typer.Exit(ingest_main(argv + (["--json"] if as_json else [])))


@bench_app.command("api")
def bench_api(
    as_json: bool = typer.Option(False, "--json", help="end with a one-line JSON result"),
    stores: int = typer.Option(5_000, min=1, help="stores seeded"),
    devices: int = typer.Option(100_000, min=1, help="devices seeded"),
    members: int = typer.Option(200_000, min=1, help="loyalty members seeded"),
    promotions: int = typer.Option(500, min=1, help="promotions published"),
    clients: int = typer.Option(32, min=1, help="concurrent httpx clients"),
    seconds: float = typer.Option(10.0, min=0.1, help="measured per endpoint"),
    limit: int = typer.Option(500, min=1, max=5_000, help="rows per listing page"),
    replicas: int = typer.Option(1, min=1, help="cloud API processes"),
    endpoints: str = typer.Option("", help="comma-separated subset (default: all)"),
) -> None:
    """The cloud's hot reads (stores, devices, a member, the promotion snapshot) on
    PostgreSQL under concurrent clients: requests/s, p50/p99 against /healthz."""
    from bench.api import main as api_main

    argv = ["--stores", str(stores), "--devices", str(devices), "--members", str(members),
            "--promotions", str(promotions), "--clients", str(clients),
            "--seconds", str(seconds), "--limit", str(limit), "--replicas", str(replicas)]
    argv += ["--endpoints", endpoints] if endpoints else []
    raise typer.Exit(api_main(argv + (["--json"] if as_json else [])))


@bench_app.command("till")
def bench_till(
    as_json: bool = typer.Option(False, "--json", help="end with a one-line JSON result"),
    lanes: int = typer.Option(8, min=1, help="concurrent lane terminals"),
    sales: int = typer.Option(100, min=1, help="sales per lane, measured"),
    items: int = typer.Option(5, min=1, help="items scanned per sale"),
    warmup: int = typer.Option(5, min=0, help="sales per lane before measuring"),
    flow: str = typer.Option("sale", help="sale: one POST /till/v1/sales a sale; basket: "
                                          "open, scan each item, member, tender, complete"),
) -> None:
    """Sales per second through the box's HTTP lane till with concurrent lanes (each sale
    priced and recorded into the outbox), p95/p99; in-process baseline."""
    from bench.till import main as till_main

    argv = ["--lanes", str(lanes), "--sales", str(sales), "--items", str(items),
            "--warmup", str(warmup), "--flow", flow]
    raise typer.Exit(till_main(argv + (["--json"] if as_json else [])))


@bench_app.command("edge")
def bench_edge(
    as_json: bool = typer.Option(False, "--json", help="end with a one-line JSON result"),
    duration_s: float = typer.Option(600.0, "--duration-s", min=1,
                                     help="how long the agent's RSS and CPU are sampled"),
    sample_s: float = typer.Option(5.0, "--sample-s", min=0.1, help="between samples"),
    carts: int = typer.Option(300, min=0, help="smart carts shopping"),
    outage_events: int = typer.Option(0, "--outage-events", min=0,
                                      help="events replayed after the outage (0: the "
                                           "store's event rate times an hour)"),
    timeout_s: float = typer.Option(600.0, "--timeout-s", min=1,
                                    help="give up on any one wait after this long"),
) -> None:
    """The edge agent with every device family and 300 carts: its RSS and CPU over
    10 minutes, then an hour-long outage's outbox replayed, against a bare publisher."""
    from bench.edge import main as edge_main

    argv = ["--duration-s", str(duration_s), "--sample-s", str(sample_s), "--carts",
            str(carts), "--outage-events", str(outage_events), "--timeout-s", str(timeout_s)]
    raise typer.Exit(edge_main(argv + (["--json"] if as_json else [])))


@app.command("version")
def version() -> None:
    """Print the storefleet version."""
    typer.echo(__version__)


def main() -> None:
    app(prog_name="storefleet")
