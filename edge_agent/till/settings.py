"""The lanes' settings: ``[till.lanes]`` in the agent's configuration.

    [till.lanes]
    port = 8093                 # the lane terminals' HTTP API and the cashier screen
    host = "0.0.0.0"            # the store network

    [[till.lanes.lane]]
    id = "lane-1"
    token = "k3H...32 characters or more..."   # the lane's bearer token
    printer = "printer-1"       # device id of its receipt printer ([[agent.devices]])

Tokens are checked at start-up: at least ``TOKEN_MIN`` characters, none a placeholder,
no two lanes sharing one (a lane is known by its token alone).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from edge_agent.pos.settings import TillSettings
from protocols.ids import Id

# 32 characters of a random token carry ~190 bits (base64url): not guessable over a
# store network, and long enough to refuse the usual typed placeholders.
TOKEN_MIN = 32
_PLACEHOLDERS = ("change", "secret", "token", "example", "xxxx", "0000", "1234")


class LaneSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Id
    token: SecretStr
    printer: Id | None = None  # no printer: the sale stands, nothing is printed

    @field_validator("token")
    @classmethod
    def _real_token(cls, value: SecretStr) -> SecretStr:
        token = value.get_secret_value()
        if len(token) < TOKEN_MIN:
            raise ValueError(f"a lane token has at least {TOKEN_MIN} characters")
        if any(p in token.lower() for p in _PLACEHOLDERS) or len(set(token)) < 8:
            raise ValueError("a lane token must be random, not a placeholder")
        return value


class LanesSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "0.0.0.0"
    port: int = Field(default=8093, ge=0, le=65535)  # 0: any free port (tests)
    lane: tuple[LaneSettings, ...] = Field(default=(), max_length=256)
    # Open baskets a lane may hold at once (a suspended basket and the next shopper's);
    # in memory until completed, so bounded.
    max_open_baskets: int = Field(default=4, ge=1, le=64)
    # Completed sales remembered per lane so that a repeated "complete" (a terminal
    # retrying after a lost answer) gets the same sale back instead of a second one.
    remember_completed: int = Field(default=64, ge=1, le=10_000)

    @model_validator(mode="after")
    def _distinct(self) -> LanesSettings:
        ids = [lane.id for lane in self.lane]
        if len(set(ids)) != len(ids):
            raise ValueError("two lanes have the same id")
        tokens = [lane.token.get_secret_value() for lane in self.lane]
        if len(set(tokens)) != len(tokens):
            raise ValueError("two lanes share a token")
        return self


class TillModuleSettings(TillSettings):
    """``[till]`` with the lanes: ``lanes`` unset runs no lane service."""

    lanes: Annotated[LanesSettings | None, Field(default=None)] = None
