"""``fleet rollout create|ls|status|pause|resume|abort`` (decision 0040). Registered in
``fleet.cli`` with one line.

    fleet rollout create SHA256 --device vend-1 --store s1 --store s2 --store s3 \\
        --canary 1 --wave-size 10 --success-pct 100 --failure-threshold 1 --deadline-s 3600
    fleet rollout create SHA256 --model cab-8 --region north --group pilot   # decision 0043
    fleet rollout status ID --watch      # a progress bar per wave until it ends
    fleet rollout pause|resume|abort ID

API and token, errors and exit codes as every ``fleet`` command (decision 0038); a
pause, resume or abort from a state that does not allow it answers exit 1 with the
cloud's reason.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fleet import output
from fleet.options import ApiOpt, GroupsOpt, JsonOpt, RegionsOpt, TokenOpt, selection
from fleet.session import call_api

if TYPE_CHECKING:
    from fleet.client import FleetClient

app = typer.Typer(help="Rollouts: an artifact to stores, wave by wave.", no_args_is_help=True)

COLUMNS = ["id", "state", "target", "version", "device", "wave", "stores", "deferred",
           "created_ms"]
ENDED = frozenset({"halted", "aborted", "completed"})
BAR = 30  # characters of a wave's progress bar

IdArg = Annotated[str, typer.Argument(help="the rollout's id")]


def _req(method: str, path: str, **kw: Any) -> Any:
    def run(client: FleetClient) -> Any:
        return client.request(method, path, **kw)
    return run


def bars(rollout: dict[str, Any]) -> list[str]:
    """One line per wave: a bar of finished targets, then the counts by state."""
    lines = []
    for wave in rollout["waves"]:
        states: dict[str, int] = wave["states"]
        done = sum(states.get(s, 0) for s in ("succeeded", "failed", "skipped"))
        filled = BAR * done // max(wave["size"], 1)
        counts = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
        mark = ">" if wave["wave"] == rollout["wave"] and rollout["state"] not in ENDED else " "
        lines.append(f"{mark} wave {wave['wave']:<3} [{'#' * filled}{'.' * (BAR - filled)}] "
                     f"{done}/{wave['size']}  {counts}")
    return lines


def _selection(rollout: dict[str, Any]) -> str:
    chosen = rollout.get("selection") or {}
    parts = [f"{key} {', '.join(chosen[key])}" for key in ("stores", "regions", "groups",
                                                            "models") if chosen.get(key)]
    return "; ".join(parts) or "stores"


def _show(rollout: dict[str, Any]) -> None:
    reason = f" ({rollout['reason']})" if rollout.get("reason") else ""
    # "*": each store's own device of the model (decision 0043)
    device = "each store's device" if rollout["device"] == "*" else rollout["device"]
    typer.echo(f"rollout {rollout['id']}: {rollout['state']}{reason}  {rollout['target']} "
               f"{rollout['version']} -> {device}")
    for line in bars(rollout):
        typer.echo(line)
    deferred = rollout.get("deferred", 0)
    busy = f", {deferred} deferred (busy on their box)" if deferred else ""
    typer.echo(f"  {rollout['stores']} store(s) from {_selection(rollout)}{busy}")


@app.command("create")
def create_cmd(
    sha256: Annotated[str, typer.Argument(help="the artifact's sha256 (fleet artifact ls)")],
    store: Annotated[list[str] | None, typer.Option(
        "--store", help="a target store (repeat; the first is the canary)")] = None,
    region: RegionsOpt = None,
    group: GroupsOpt = None,
    model: Annotated[list[str] | None, typer.Option(
        "--model", help="firmware: the stores with a device of this model, each its own "
        "(repeat)")] = None,
    device: Annotated[str | None, typer.Option(
        help="'agent' (the default without --model) or the device the firmware is for")
                      ] = None,
    canary: Annotated[int, typer.Option(help="stores in the first wave")] = 1,
    wave_size: Annotated[int, typer.Option(help="stores per later wave")] = 10,
    success_pct: Annotated[int, typer.Option(help="% of a wave to succeed to go on")] = 100,
    failure_threshold: Annotated[int, typer.Option(help="failed stores that halt it")] = 1,
    deadline_s: Annotated[int, typer.Option(help="seconds a store has from its offer")
                          ] = 3600,
    api: ApiOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """Start a rollout to any union of stores, regions and groups (and for firmware the
    stores with a device of a model); the first wave is offered at once, inside each
    store's maintenance window."""
    body = {"sha256": sha256, "device": device, **selection(store, region, group),
            "models": model or [], "canary_size": canary,
            "wave_size": wave_size, "success_pct": success_pct,
            "failure_threshold": failure_threshold, "deadline_s": deadline_s}
    rollout = call_api(api, token, _req("POST", "/api/v1/rollouts", json=body))
    if as_json:
        output.print_json(rollout)
    else:
        _show(rollout)


@app.command("ls")
def ls_cmd(api: ApiOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """List rollouts, newest first."""
    rows = call_api(api, token, _req("GET", "/api/v1/rollouts"))
    if as_json:
        output.print_json(rows)
    else:
        output.table(rows, COLUMNS, "rollouts")


@app.command("status")
def status_cmd(
    rollout_id: IdArg,
    watch: Annotated[bool, typer.Option(help="redraw every --every seconds until it ends")
                     ] = False,
    every: Annotated[float, typer.Option(help="seconds between redraws")] = 2.0,
    api: ApiOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """A rollout with a progress bar per wave."""
    while True:
        rollout = call_api(api, token, _req("GET", f"/api/v1/rollouts/{rollout_id}"))
        if as_json:
            output.print_json(rollout)
        else:
            _show(rollout)
        if not watch or rollout["state"] in ENDED:
            return
        time.sleep(every)


def _change(rollout_id: str, action: str, api: str | None, token: str | None,
            as_json: bool) -> None:
    rollout = call_api(api, token, _req("POST", f"/api/v1/rollouts/{rollout_id}/{action}"))
    if as_json:
        output.print_json(rollout)
    else:
        _show(rollout)


@app.command("pause")
def pause_cmd(rollout_id: IdArg, api: ApiOpt = None, token: TokenOpt = None,
              as_json: JsonOpt = False) -> None:
    """Offer nothing more until resumed (reports still count)."""
    _change(rollout_id, "pause", api, token, as_json)


@app.command("resume")
def resume_cmd(rollout_id: IdArg, api: ApiOpt = None, token: TokenOpt = None,
               as_json: JsonOpt = False) -> None:
    """Offer again."""
    _change(rollout_id, "resume", api, token, as_json)


@app.command("abort")
def abort_cmd(rollout_id: IdArg, api: ApiOpt = None, token: TokenOpt = None,
              as_json: JsonOpt = False) -> None:
    """End the rollout; nothing more is offered."""
    _change(rollout_id, "abort", api, token, as_json)
