"""One error root (decision 0031): every package's errors are ``StorefleetError``s with a
``reason`` code, and keep their own bases, so existing ``except`` clauses still catch."""

from __future__ import annotations

import pytest

from cloud.api.problems import ApiProblem
from cloud.errors import CloudError, DatabaseUnavailable
from cloud.orders.errors import OrderError, UnknownOrder
from edge_agent.cartscreen.backend import ScreenError
from edge_agent.drivers.base import DriverError
from edge_agent.errors import AgentError, ConfigError, LinkError
from edge_agent.inference.positioning.errors import PositioningError
from edge_agent.inference.triggers.errors import NoCodesLeft, TriggerError
from edge_agent.pos.peripherals import PeripheralUnavailable, PosError
from fleet.client import FleetError
from pricing.errors import InvalidBasket, PricingError, UnknownSku
from protocols import ProtocolError, StorefleetError
from protocols.errors import DecodeError, IdError, TopicError

ERRORS: list[tuple[BaseException, type[Exception]]] = [
    (DecodeError("not_json", "nope"), ProtocolError),
    (TopicError("a/b", "bad"), ProtocolError),
    (IdError("a b", "store id", "no spaces"), TopicError),
    (ConfigError("store_id", "missing"), AgentError),
    (LinkError("uplink", "gone"), AgentError),
    (DriverError("P1", "jammed"), DriverError),
    (PeripheralUnavailable("printer", "offline"), PosError),
    (DatabaseUnavailable("down"), CloudError),
    (UnknownOrder("order", "o-1"), OrderError),
    (UnknownSku("milk"), PricingError),
    (InvalidBasket("duplicate line"), PricingError),
    (NoCodesLeft("ENG1"), TriggerError),
    (PositioningError("no model"), PositioningError),
    (ScreenError(409, "stale"), ScreenError),
    (FleetError(500, "Internal Server Error"), FleetError),
    (ApiProblem(404, "not found"), ApiProblem),
]


@pytest.mark.parametrize(("err", "base"), ERRORS, ids=lambda e: type(e).__name__)
def test_every_package_error_is_a_storefleet_error_with_a_reason(
        err: BaseException, base: type[Exception]) -> None:
    assert isinstance(err, base)  # the package's own base still catches it
    with pytest.raises(StorefleetError) as caught:
        raise err
    assert isinstance(caught.value.reason, str) and caught.value.reason


def test_reason_codes_stay_as_they_were() -> None:
    assert DecodeError("too_large", "x").reason == "too_large"
    assert TopicError("x", "y").reason == "bad_topic"
    assert IdError("a b", "id", "no").reason == "bad_id"
    # A protocol error without a finer code reads "invalid", as getattr(...) did before.
    assert ProtocolError("x").reason == "invalid"
    assert DatabaseUnavailable("down").reason == "cloud_error"
