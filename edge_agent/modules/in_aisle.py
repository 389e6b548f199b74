"""In-aisle coupons and the cart screens (``[in_aisle]``; decision 0016): carts located
by beacons (or the trained positioning model), coupons triggered by place, dwell and
what the cart's camera sees, the cart-screen web app, and checkout at the store's till.

    [in_aisle]
    cartscreen_port = 8080            # /cart/{cart_id}; 0 = any free port; unset: no screens
    store_layout = "/etc/storefleet/layout.toml"
    positioning_model = "/var/lib/storefleet/positioning.onnx"
    payment_secret = "..."            # the payment provider's notices (HMAC-SHA256)

A ``model:positioning`` rollout replaces the positioning model while carts are being
located, and the box starts with it from then on (decision 0042).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ConfigDict, Field, SecretStr

from edge_agent.cartscreen.backend import ScreenError
from edge_agent.cartscreen.checkout import cart_till
from edge_agent.cartscreen.runtime import InAisle, InAisleSettings, check_rules
from edge_agent.drivers.capabilities import CART_FLEET, CartFleet
from edge_agent.inference.triggers.service import MemberProfile
from edge_agent.kernel.module import Module, ModuleSettings
from edge_agent.modules.members import MemberRefused, Members
from edge_agent.modules.till import Till
from edge_agent.shadow import ShadowKey

if TYPE_CHECKING:
    from edge_agent.inference.positioning.slot import PositioningSlot
    from edge_agent.kernel.module import Kernel
    from edge_agent.kernel.supervisor import Supervisor


class InAisleModuleSettings(ModuleSettings):
    model_config = ConfigDict(extra="forbid", frozen=True)

    cartscreen_port: int | None = Field(default=None, ge=0, le=65535)
    cartscreen_host: str = "0.0.0.0"
    # who confirms a cart checkout was paid: "provider" (a notice to
    # /api/payments/notify signed with payment_secret) or "screen" (demos, trials only)
    payment_confirmation: Literal["provider", "screen"] = "provider"
    payment_secret: SecretStr | None = None
    store_layout: Path | None = None  # zones, shelves, anchors: map and fallback locator
    # an offline JSON bundle (catalog, promotions, members, coupon ranges, trigger rules)
    # used where the till's caches have nothing
    retail_data: Path | None = None
    trigger_rules: tuple[Any, ...] = ()  # the desired shadow's trigger_rules replace them
    positioning_model: Path | None = None  # None: the strongest beacon locates a cart
    unscanned_window_s: float = Field(default=30.0, gt=0)


class InAisleModule(Module):
    name = "in_aisle"
    Settings = InAisleModuleSettings
    after = ("till", "members")  # the till's pricing; the members module's codes

    def __init__(self, kernel: Kernel, settings: InAisleModuleSettings) -> None:
        super().__init__(kernel, settings)
        try:
            check_rules(list(settings.trigger_rules))
        except ValueError as err:
            from edge_agent.errors import ConfigError

            raise ConfigError("in_aisle.trigger_rules", str(err)) from err
        till = kernel.module("till")
        pos = till.pos if isinstance(till, Till) else None
        secret = settings.payment_secret

        def pos_pricing() -> Any:
            if pos is None:
                return None
            catalog = pos.catalog.catalog
            compiled = pos.promotions.ruleset("cart") or pos.promotions.ruleset("pos")
            return None if catalog is None or compiled is None else (catalog, *compiled)

        utc_offset = pos.settings.utc_offset_min if pos is not None else 0
        self.in_aisle = InAisle(
            InAisleSettings(store_id=kernel.store_id, data_dir=kernel.data_dir,
                            cartscreen_port=settings.cartscreen_port,
                            cartscreen_host=settings.cartscreen_host,
                            store_layout=settings.store_layout,
                            retail_data=settings.retail_data,
                            trigger_rules=settings.trigger_rules, utc_offset_min=utc_offset,
                            unscanned_window_s=settings.unscanned_window_s,
                            positioning_model=(_installed_positioning(kernel)
                                               or settings.positioning_model),
                            payment_confirmation=settings.payment_confirmation,
                            payment_secret=secret.get_secret_value() if secret else None),
            ctx=kernel.sink, carts=self.cart_driver, pos_pricing=pos_pricing,
            pos_ranges=(lambda: list(pos.ranges.ranges)) if pos is not None else None,
            pos_promotions=pos.promotions if pos is not None else None)
        members = kernel.module("members")
        if isinstance(members, Members):
            self.in_aisle.backend.use_member_codes(_code_verifier(members))
        if pos is not None:
            # Paying on a cart is a sale at this store's till: same ledger, events, pricing.
            self.in_aisle.use_till(cart_till(
                self.in_aisle, ledger=pos.ledger, sink=kernel.sink, clock=kernel.clock,
                metrics=pos.service.metrics, online=kernel.online, till_ranges=pos.ranges,
                api=pos.api, currency=pos.settings.currency, utc_offset_min=utc_offset))

    def cart_driver(self) -> CartFleet | None:
        """The running driver of the store's carts (capability ``CART_FLEET``), if any."""
        return next(iter(self.kernel.drivers.find(CART_FLEET)), None)

    def model_slot(self, name: str) -> PositioningSlot | None:
        """The carts' positioning model, for the model installer (decision 0042)."""
        from edge_agent.inference.positioning.slot import PositioningSlot

        if name != "positioning":
            return None
        return PositioningSlot(self.in_aisle.triggers, store_map=self.in_aisle.store_map,
                               registry=self.kernel.registry)

    def shadow_keys(self) -> Sequence[ShadowKey]:
        return [ShadowKey("trigger_rules", check_rules, self.in_aisle.set_rules)]

    async def start(self, tasks: Supervisor) -> None:
        await self.in_aisle.start(tasks)

    async def stop(self) -> None:
        await self.in_aisle.stop()  # issues coupons into the outbox: before it closes

    def busy(self) -> str | None:
        till = self.in_aisle.backend.till  # records cart checkouts (None: no till module)
        return f"{till.selling} cart checkout(s) being recorded" if till and till.selling else None


def _installed_positioning(kernel: Kernel) -> Path | None:
    """The positioning model a rollout installed, if it loads (else counted, logged and
    None: the configured one runs)."""
    from edge_agent.inference.installed import InstalledModels

    installed = InstalledModels(kernel.data_dir, registry=kernel.registry)
    path = installed.current("positioning")
    if path is None:
        return None
    from edge_agent.inference.positioning import PositioningError, PositionModel

    try:
        PositionModel(path)
    except PositioningError as err:
        installed.fallback("positioning", "invalid", str(err))
        return None
    return path




def _code_verifier(members: Members) -> Callable[[str], Awaitable[MemberProfile]]:
    """A cart screen's member sign-in by signed code, checked by the members module
    (offline against its snapshot; refusals counted there): 403 with the reason."""
    async def verify(code: str) -> MemberProfile:
        try:
            view = await members.lookup(code=code)
        except MemberRefused as err:
            raise ScreenError(403, f"member code refused: {err.reason}") from err
        return MemberProfile(member_id=view.member_id, name=view.member_id, tier=view.tier,
                             points=max(0, view.points))

    return verify


MODULE = InAisleModule
