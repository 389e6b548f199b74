"""The options the ``fleet`` commands share: where the API is, the token, JSON output,
and the store selection (any union of stores, regions and groups) that publishes and
rollouts take.

    def publish_cmd(store: StoresOpt = None, region: RegionsOpt = None,
                    group: GroupsOpt = None, api: ApiOpt = None, ...) -> None:
        body = selection(store, region, group)
"""

from __future__ import annotations

from typing import Annotated

import typer

ApiOpt = Annotated[str | None, typer.Option(
    "--api", envvar="STOREFLEET_API", show_default=False,
    help="cloud API base URL [default: what `fleet login` saved, else http://127.0.0.1:8000]")]
TokenOpt = Annotated[str | None, typer.Option(
    "--token", envvar="STOREFLEET_TOKEN", show_default=False,
    help="API bearer token [default: what `fleet login` saved]")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]

StoresOpt = Annotated[list[str] | None, typer.Option("--store", help="a store (repeat)")]
RegionsOpt = Annotated[list[str] | None, typer.Option(
    "--region", help="the stores of a region (repeat)")]
GroupsOpt = Annotated[list[str] | None, typer.Option(
    "--group", help="the stores of a store group (repeat)")]


def selection(stores: list[str] | None, regions: list[str] | None,
              groups: list[str] | None) -> dict[str, list[str]]:
    """The API's selection body (``StoreSelection``): all empty means every store."""
    return {"stores": stores or [], "regions": regions or [], "groups": groups or []}
