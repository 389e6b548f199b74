"""What an artifact is, for the cloud that signs it and the box that checks it.

An artifact is a file uploaded once to the cloud (an agent release, device firmware for
one model, an ONNX model), named by the sha256 of its bytes. Its *manifest* says what it
is and for whom; the cloud signs the manifest with its release key (an Ed25519 signed
document, ``cloud.promotions.signing`` format: ``{"payload", "key_id", "signature"}``)
and the box installs nothing whose manifest does not verify and match the bytes
(decision 0036).

Targets name what an artifact may be installed on:

- ``agent``: the store agent (kind ``agent``);
- ``firmware:<family>/<model>``: firmware of one device model (kind ``firmware``);
- ``model:positioning`` / ``model:vision``: an ONNX model (kind ``model``);
- ``content``: a content asset a store's content manifest names (kind ``asset``:
  audio, images, video; decision 0046).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

DOCUMENT = "storefleet.artifact/1"

SHA256_PATTERN = r"^[0-9a-f]{64}$"
# A version is a label, not compared as a number here: rollouts order by upload time.
VERSION_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$"
_PART = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
TARGET_PATTERN = (rf"^(agent|content|firmware:{_PART}/{_PART}|model:(positioning|vision))$")
_TARGET = re.compile(TARGET_PATTERN)
CONTENT_TARGET = "content"


class ArtifactKind(StrEnum):
    AGENT = "agent"
    FIRMWARE = "firmware"
    MODEL = "model"
    ASSET = "asset"  # content (decision 0046)


def kind_of_target(target: str) -> ArtifactKind | None:
    """The kind a target takes, or None if ``target`` is not a target."""
    if not _TARGET.match(target):
        return None
    if target == CONTENT_TARGET:
        return ArtifactKind.ASSET
    return ArtifactKind(target.partition(":")[0])


def firmware_target(family: str, model: str) -> str:
    return f"firmware:{family}/{model}"


Sha256 = Annotated[str, Field(pattern=SHA256_PATTERN, description="hex sha256 of the bytes")]
Version = Annotated[str, Field(pattern=VERSION_PATTERN)]
Target = Annotated[str, Field(pattern=TARGET_PATTERN, max_length=140,
                              description="agent | content | firmware:<family>/<model> | "
                              "model:positioning | model:vision")]


class ArtifactManifest(BaseModel):
    """The signed payload: what the bytes are and what they may be installed on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    document: str = Field(default=DOCUMENT, pattern=r"^storefleet\.artifact/1$")
    sha256: Sha256
    size: int = Field(ge=0)
    kind: ArtifactKind
    target: Target
    version: Version
    created_ms: int = Field(ge=0)

    @model_validator(mode="after")
    def _kind_matches_target(self) -> ArtifactManifest:
        if kind_of_target(self.target) != self.kind:
            raise ValueError(f"target {self.target!r} is not a {self.kind.value} target")
        return self
