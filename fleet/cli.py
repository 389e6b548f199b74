"""``fleet``: what a field tech types. A thin layer over ``fleet.client.FleetClient``.

The client (httpx) and rich are imported inside the commands, so that ``fleet --help``
starts as fast as typer allows. Errors are one line on stderr and an exit code that says
which kind (``fleet.output.Exit``), never a traceback: a wrong token, an API that is not
there, a store that does not exist. Decision 0038.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fleet import artifacts, content, fanout, output, provision, rollouts, screens
from fleet.options import ApiOpt, JsonOpt, TokenOpt
from fleet.output import Exit
from fleet.session import call_api

if TYPE_CHECKING:
    from fleet.client import FleetClient

app = typer.Typer(
    help="storefleet field-tech CLI: stores, devices, commands, diagnostics and logs.",
    epilog=output.EPILOG,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
stores_app = typer.Typer(help="Stores: `fleet stores` or `fleet stores ls` lists them.")
store_app = typer.Typer(help="One store.", no_args_is_help=True)
devices_app = typer.Typer(help="Devices: `fleet devices` or `fleet devices ls` lists them.")
device_app = typer.Typer(help="One device.", no_args_is_help=True)
app.add_typer(stores_app, name="stores")
app.add_typer(store_app, name="store")
app.add_typer(devices_app, name="devices")
app.add_typer(device_app, name="device")
app.add_typer(artifacts.app, name="artifact")
app.add_typer(rollouts.app, name="rollout")  # decision 0040
app.add_typer(content.app, name="content")  # decision 0046
app.add_typer(screens.app, name="screens")  # decision 0051

LimitOpt = Annotated[int | None, typer.Option(
    "--limit", min=1, show_default=False,
    help="at most N rows [default: all of them, fetched a page at a time]")]
WaitOpt = Annotated[float, typer.Option(help="seconds to wait for the box's answer")]

STORE_COLUMNS = ["store_id", "online", "bd_seq", "agent_version", "devices_online",
                 "devices_total"]
DEVICE_COLUMNS = ["store_id", "device_id", "kind", "online", "model", "fw"]
LOG_COLUMNS = ["seq", "time", "level", "logger", "message"]
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")  # as the agent's get_logs
POLL_S = 0.2  # the agent answers over MQTT; the API has no push to wait on





@app.command()
def login(
    api: Annotated[str, typer.Option("--api", envvar="STOREFLEET_API", prompt="cloud API URL",
                                     help="cloud API base URL")],
    token: Annotated[str, typer.Option("--token", envvar="STOREFLEET_TOKEN",
                                       prompt="API token", hide_input=True,
                                       help="API bearer token")],
) -> None:
    """Check the API and token, then save both (0600) for the other commands."""
    from fleet.config import ConfigError, save

    stores = call_api(api, token, lambda c: c.stores())  # refuses a bad token before saving
    try:
        path = save(api, token)
    except ConfigError as err:
        raise output.fail(str(err), Exit.FAILED) from err
    typer.echo(f"logged in to {api}: {len(stores)} store(s) visible; saved to {path}")


# ---- stores --------------------------------------------------------------------------


def _list_stores(api: str | None, token: str | None, region: str | None, offline: bool,
                 as_json: bool, limit: int | None) -> None:
    rows = call_api(api, token, lambda c: c.stores(region=region, limit=limit,
                                                 online=False if offline else None))
    if as_json:
        output.print_json(rows)
    else:
        output.table(rows, STORE_COLUMNS, "stores")


RegionOpt = Annotated[str | None, typer.Option(help="only stores in this region")]
OfflineOpt = Annotated[bool, typer.Option("--offline", help="only stores that are offline")]


@stores_app.callback(invoke_without_command=True)
def stores(ctx: typer.Context, region: RegionOpt = None, offline: OfflineOpt = False,
           api: ApiOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
           limit: LimitOpt = None) -> None:
    """List stores with their online status and device counts."""
    if ctx.invoked_subcommand is None:
        _list_stores(api, token, region, offline, as_json, limit)


@stores_app.command("ls")
def stores_ls(region: RegionOpt = None, offline: OfflineOpt = False, api: ApiOpt = None,
              token: TokenOpt = None, as_json: JsonOpt = False,
              limit: LimitOpt = None) -> None:
    """List stores with their online status and device counts."""
    _list_stores(api, token, region, offline, as_json, limit)


@store_app.command("show")
def store_show(store: Annotated[str, typer.Argument(help="store id")], api: ApiOpt = None,
               token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """One store: its status, maintenance window, last birth and devices."""
    def fetch(c: FleetClient) -> dict[str, Any]:
        return {**c.store(store), "devices": c.devices(store),
                "maintenance": c.request("GET", f"/api/v1/stores/{store}/maintenance")}

    detail = call_api(api, token, fetch)
    if as_json:
        output.print_json(detail)
        return
    summary = {k: v for k, v in detail.items() if k not in ("birth", "devices")}
    summary["maintenance"] = detail["maintenance"]["note"]  # the window, or "at once"
    output.fields(summary, f"store {store}")
    output.table(detail["devices"], DEVICE_COLUMNS, f"devices of {store}")


# ---- devices -------------------------------------------------------------------------


StoreOpt = Annotated[str | None, typer.Option(help="only this store")]
KindOpt = Annotated[str | None, typer.Option(help="only this kind (cart, esl, vending, ...)")]
UnhealthyOpt = Annotated[bool, typer.Option("--unhealthy",
                                            help="only devices that are offline")]


def _list_devices(api: str | None, token: str | None, store: str | None, kind: str | None,
                  unhealthy: bool, as_json: bool, limit: int | None) -> None:
    rows = call_api(api, token, lambda c: c.devices(store, kind=kind, limit=limit,
                                                 online=False if unhealthy else None))
    if as_json:
        output.print_json(rows)
    else:
        output.table(rows, DEVICE_COLUMNS, "devices")


@devices_app.callback(invoke_without_command=True)
def devices(ctx: typer.Context, store: StoreOpt = None, kind: KindOpt = None,
            unhealthy: UnhealthyOpt = False, api: ApiOpt = None, token: TokenOpt = None,
            as_json: JsonOpt = False, limit: LimitOpt = None) -> None:
    """List devices with their online status."""
    if ctx.invoked_subcommand is None:
        _list_devices(api, token, store, kind, unhealthy, as_json, limit)


@devices_app.command("ls")
def devices_ls(store: StoreOpt = None, kind: KindOpt = None, unhealthy: UnhealthyOpt = False,
               api: ApiOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
               limit: LimitOpt = None) -> None:
    """List devices with their online status."""
    _list_devices(api, token, store, kind, unhealthy, as_json, limit)


def _find_device(c: FleetClient, ref: str) -> dict[str, Any]:
    """``STORE/DEVICE`` or a device id that only one store has."""
    from fleet.client import FleetError

    store, sep, device = ref.rpartition("/")
    found = c.devices(store or None, device_id=device) if sep else c.devices(device_id=ref)
    if not found:
        raise FleetError(404, "Not Found", f"no device {ref!r}")
    if len(found) > 1:
        stores = ", ".join(f"{d['store_id']}/{d['device_id']}" for d in found)
        raise FleetError(409, "Ambiguous", f"device {ref!r} is in several stores; name one "
                         f"of {stores}")
    return found[0]


@device_app.command("show")
def device_show(
    device: Annotated[str, typer.Argument(help="device id, or STORE/DEVICE")],
    api: ApiOpt = None, token: TokenOpt = None, as_json: JsonOpt = False,
) -> None:
    """One device: status, latest health, the agent's view of its driver, and its shadow
    (desired against reported, keys the store has not applied yet in red)."""
    from fleet.client import FleetError

    def fetch(c: FleetClient) -> dict[str, Any]:
        found = _find_device(c, device)
        store, dev = found["store_id"], found["device_id"]
        out: dict[str, Any] = {"device": found, "driver": None, "shadow": None}
        for target in ("agent", dev):
            try:
                shadow = c.shadow(store, target)
            except FleetError as err:
                if err.status != 404:  # 404: no shadow yet, nothing to show
                    raise
                continue
            if target == "agent":
                health = (shadow.get("reported") or {}).get("devices_health") or {}
                out["driver"] = health.get(dev)
            else:
                out["shadow"] = shadow
        return out

    shown = call_api(api, token, fetch)
    if as_json:
        output.print_json(shown)
        return
    dev = shown["device"]
    output.fields(dev, f"device {dev['store_id']}/{dev['device_id']}")
    if shown["driver"] is not None:
        output.fields(shown["driver"], "driver health as the agent reports it")
    if shown["shadow"] is None:
        typer.echo("no shadow yet")
    else:
        output.shadow_table(shown["shadow"], "shadow")


# ---- commands, diagnostics, logs -----------------------------------------------------


def _parse_args(arg: list[str] | None, args_json: str | None) -> dict[str, Any]:
    args: dict[str, Any] = {}
    if args_json is not None:
        try:
            loaded = json.loads(args_json)
        except ValueError as err:
            raise typer.BadParameter(f"--json is not JSON: {err}") from err
        if not isinstance(loaded, dict):
            raise typer.BadParameter("--json must be a JSON object")
        args.update(loaded)
    for item in arg or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--arg {item!r} is not key=value")
        args[key] = value
    return args


def _run_command(c: FleetClient, store: str, name: str, args: dict[str, Any], *,
                 target: str = "agent", wait: float, reason: str | None = None,
                 ) -> dict[str, Any]:
    """Send, then poll until the box answers or ``wait`` runs out (a spinner on stderr)."""
    from rich.console import Console

    sent = c.send_command(store, name, args=args, target=target, reason=reason)
    deadline = time.monotonic() + wait
    with Console(stderr=True).status(f"{name} on {store}/{target}: waiting for the box"):
        result = c.command(sent["cmd_id"])
        while result.get("status") == "pending" and time.monotonic() < deadline:
            time.sleep(POLL_S)
            result = c.command(sent["cmd_id"])
    return result


def _check_result(result: dict[str, Any]) -> None:
    status = result.get("status")
    if status == "pending":
        raise typer.Exit(int(Exit.TIMEOUT))
    if status != "ok":
        raise typer.Exit(int(Exit.NOT_OK))


@app.command()
def cmd(
    target: Annotated[str, typer.Argument(
        help="a store id (its agent), STORE/DEVICE, or a device id only one store has; "
             "with --all/--region/--group/--store: the device in each store (agent, or a "
             "device id)")],
    name: Annotated[str, typer.Argument(
        help="ping | get_diagnostics | get_logs | set_log_level | rebirth | a module's or "
             "driver's command")],
    everything: Annotated[bool, typer.Option(
        "--all", help="fleet-wide: every store (one request, a progress bar)")] = False,
    region: Annotated[list[str] | None, typer.Option(
        "--region", help="fleet-wide: the stores of a region (repeat)")] = None,
    group: Annotated[list[str] | None, typer.Option(
        "--group", help="fleet-wide: the stores of a store group (repeat)")] = None,
    store: Annotated[list[str] | None, typer.Option(
        "--store", help="fleet-wide: a store (repeat)")] = None,
    ttl: Annotated[int, typer.Option(
        "--ttl", min=1, max=86_400, help="fleet-wide: seconds each store's command lives")
                   ] = 300,
    arg: Annotated[list[str] | None, typer.Option("--arg", help="key=value (repeatable)")] = None,
    args_json: Annotated[str | None, typer.Option(
        "--json", help="the arguments as one JSON object (--arg adds to it)")] = None,
    reason: Annotated[str | None, typer.Option(
        "--reason", help="why you send it, stored with it; required for a sensitive "
                         "command (open_drawer, a vending cabinet's unlock)")] = None,
    wait: WaitOpt = 10.0,
    api: ApiOpt = None,
    token: TokenOpt = None,
) -> None:
    """Send a command to a store's agent or a device, wait for the result and print it as
    JSON, with who sent it and why (exit 3 when it is not ok, 4 when no answer came within
    --wait; 2 when a sensitive command lacks --reason, 6 when your role may not send it).
    Fleet-wide (--all, --region, --group, --store): one command per store, a progress
    bar until every store answered, then the counts and the first failures (exit 3 when
    any failed or expired, 4 when some had not answered within --wait)."""
    from fleet.client import FleetError

    args = _parse_args(arg, args_json)
    chosen = fanout.selection(everything=everything, stores=store or [],
                              regions=region or [], groups=group or [])
    if chosen is not None:
        def send_all(c: FleetClient) -> dict[str, Any]:
            try:
                return fanout.run(c, name, chosen, device=target, args=args, reason=reason,
                                  ttl_s=ttl, wait=wait)
            except FleetError as err:
                if err.problem == "reason_required":  # decision 0044
                    raise output.fail(f"{err} (say why with --reason \"...\")",
                                      Exit.USAGE) from err
                raise

        done = call_api(api, token, send_all)
        output.print_json(done)
        if (code := fanout.exit_code(done)) is not Exit.OK:
            raise typer.Exit(int(code))
        return

    def send(c: FleetClient) -> dict[str, Any]:
        store, device = target, "agent"
        if "/" in target:
            store, device = _find_device(c, target)["store_id"], target.rpartition("/")[2]
        else:
            try:
                c.store(target)
            except FleetError as err:
                if err.status != 404:
                    raise
                try:  # not a store: a device id that only one store has?
                    found = _find_device(c, target)
                except FleetError as dev_err:
                    if dev_err.status != 404:
                        raise
                    raise FleetError(404, "Not Found",
                                     f"no store or device {target!r}") from err
                store, device = found["store_id"], found["device_id"]
        try:
            return _run_command(c, store, name, args, target=device, wait=wait, reason=reason)
        except FleetError as err:
            if err.problem == "reason_required":  # decision 0044
                raise output.fail(f"{err} (say why with --reason \"...\")",
                                  Exit.USAGE) from err
            raise

    result = call_api(api, token, send)
    output.print_json(result)
    _check_result(result)


@app.command()
def diag(
    store: Annotated[str, typer.Argument(help="store id")],
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="write the bundle (JSON) to this file instead of printing it")] = None,
    errors: Annotated[int, typer.Option(min=1, max=200,
                                        help="recent warnings and errors to include")] = 50,
    wait: WaitOpt = 15.0,
    api: ApiOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A diagnostics bundle from the box: versions, outbox depth and age, task states,
    device health and its recent warnings and errors (commands get_diagnostics, get_logs)."""
    def collect(c: FleetClient) -> tuple[dict[str, Any], dict[str, Any]]:
        diagnostics = _run_command(c, store, "get_diagnostics", {}, wait=wait)
        if diagnostics.get("status") != "ok":
            return diagnostics, {}
        logs = _run_command(c, store, "get_logs", {"level": "WARNING", "limit": errors},
                            wait=wait)
        return diagnostics, logs

    diagnostics, logs = call_api(api, token, collect)
    for result in (diagnostics, logs):
        if result and result.get("status") != "ok":
            output.print_json(result)
            _check_result(result)
    bundle = {"store_id": store, "collected_ms": int(time.time() * 1000),
              "diagnostics": diagnostics["result"],
              "recent_errors": logs["result"]["lines"]}
    if out is not None:
        out.write_text(json.dumps(bundle, indent=2) + "\n", encoding="utf-8")
        typer.echo(f"diagnostics of {store} written to {out}")
    elif as_json:
        output.print_json(bundle)
    else:
        _print_diag(bundle)


def _print_diag(bundle: dict[str, Any]) -> None:
    d = bundle["diagnostics"]
    summary_keys = ("store_id", "agent_version", "uptime_s", "uplink_connected",
                    "local_bus_connected", "bd_seq", "outbox_depth", "outbox_oldest_age_ms",
                    "outbox_bytes", "outbox_headroom_s", "outbox_alarms", "shadow_version")
    output.fields({k: d.get(k) for k in summary_keys if k in d}, "agent")
    tasks = [{"task": name, **(state if isinstance(state, dict) else {"state": state})}
             for name, state in (d.get("tasks") or {}).items()]
    output.table(tasks, ["task", "state", "restarts", "last_error"], "tasks")
    health = [{"device_id": dev, **h} for dev, h in (d.get("devices_health") or {}).items()]
    output.table(health, ["device_id", "state", "online", "alarms", "details"], "device health")
    output.table([_log_row(ln) for ln in bundle["recent_errors"]], LOG_COLUMNS,
                 "recent warnings and errors")


def _log_row(line: dict[str, Any]) -> dict[str, Any]:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(line["ts"] / 1000))
    return {**line, "time": stamp}


@app.command()
def logs(
    store: Annotated[str, typer.Argument(help="store id")],
    level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING, ERROR or CRITICAL")] = "INFO",
    limit: Annotated[int, typer.Option(min=1, max=200, help="lines per answer")] = 100,
    follow: Annotated[bool, typer.Option("--follow", "-f",
                                         help="keep polling for new lines until Ctrl-C")] = False,
    interval: Annotated[float, typer.Option(min=0.2, help="seconds between polls")] = 2.0,
    wait: WaitOpt = 10.0,
    api: ApiOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Recent log lines from the box's agent (command get_logs); --json: one JSON line each."""
    if level.upper() not in LOG_LEVELS:
        raise typer.BadParameter(f"--level must be one of {', '.join(LOG_LEVELS)}")

    def show(result: dict[str, Any]) -> tuple[int, int]:
        """Print one answer; its cursor and how many lines it had."""
        if result.get("status") != "ok":
            output.print_json(result)
            _check_result(result)
        got = result["result"]
        if got.get("missed"):
            typer.echo(f"... {got['missed']} line(s) dropped by the box before this poll",
                       err=True)
        if got.get("skipped"):
            typer.echo(f"... {got['skipped']} older line(s) beyond --limit", err=True)
        for line in got["lines"]:
            if as_json:
                typer.echo(json.dumps(line))
            else:
                row = _log_row(line)
                typer.echo(f"{row['time']} {line['level']:8} {line['logger']}: "
                           f"{line['message']}")
        return int(got["last_seq"]), len(got["lines"])

    def tail(c: FleetClient) -> None:
        since = 0
        while True:
            args = {"level": level.upper(), "limit": limit, "since": since}
            last, printed = show(_run_command(c, store, "get_logs", args, wait=wait))
            if since == 0 and not printed:
                typer.echo(f"no lines at {level.upper()} or above yet; the agent may log "
                           f"less (fleet cmd {store} set_log_level --arg level=info)", err=True)
            since = last
            if not follow:
                return
            time.sleep(interval)

    try:
        call_api(api, token, tail)
    except KeyboardInterrupt:
        raise typer.Exit(int(Exit.OK)) from None


provision.register(app)  # fleet provision, fleet revoke (decision 0035)


def main() -> None:
    app(prog_name="fleet")
