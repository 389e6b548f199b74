"""``storefleet``: demo, cloud, edge agent and simulators under one command."""

from __future__ import annotations

import typer

from cloud.cli import app as cloud_app
from edge_agent.cli import app as edge_app
from edge_agent.inference.positioning.cli import app as positioning_app
from firmware_sim.cli import app as sim_app
from storefleet import __version__
from storefleet.demo import demo

app = typer.Typer(
    help="storefleet: edge/IoT fleet system for smart retail stores.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("demo")(demo)
app.add_typer(cloud_app, name="cloud", help="Cloud API server and MQTT ingest workers.")
app.add_typer(edge_app, name="edge", help="The store-box edge agent.")
app.add_typer(sim_app, name="sim", help="Device and store simulators.")
app.add_typer(positioning_app, name="positioning", help="Indoor positioning of carts (BLE).")


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


@app.command("version")
def version() -> None:
    """Print the storefleet version."""
    typer.echo(__version__)


def main() -> None:
    app(prog_name="storefleet")
