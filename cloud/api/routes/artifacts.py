"""Artifacts (decision 0036): HQ uploads a file once; boxes fetch its signed manifest and
its bytes (with ``Range``, so a cut download resumes where it stopped).

The upload body is the raw file (``application/octet-stream``), streamed to the storage
as it arrives and never held in memory; what it is comes in the query: ``kind``,
``target`` and ``version``. Every token may read artifacts (a box fetches with its
device token; the bytes are signed, not secret); only hq-admin uploads.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import FileResponse
from prometheus_client import Counter
from pydantic import BaseModel, Field
from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive, Scope, Send

from cloud.api.deps import AdminRole, StateDep, require_role
from cloud.api.json_body import JsonRoute
from cloud.api.problems import ApiProblem
from cloud.artifacts.errors import (
    ArtifactConflict,
    ArtifactError,
    ArtifactTooLarge,
    InvalidArtifact,
    UnknownArtifact,
)
from cloud.artifacts.service import ArtifactService
from cloud.settings import Role
from protocols.artifacts import SHA256_PATTERN, TARGET_PATTERN, ArtifactKind, ArtifactManifest

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/artifacts", tags=["artifacts"], route_class=JsonRoute)

_ANY_ROLE = frozenset(Role)
ArtifactRead = Annotated[Role, Depends(require_role(_ANY_ROLE, "read artifacts"))]
Sha256Path = Annotated[str, Path(pattern=SHA256_PATTERN, description="hex sha256")]


@dataclass
class ArtifactState:
    service: ArtifactService


def get_artifacts(request: Request) -> ArtifactService:
    state: ArtifactState = request.app.state.artifacts
    return state.service


ServiceDep = Annotated[ArtifactService, Depends(get_artifacts)]


class SignedManifest(BaseModel):
    payload: ArtifactManifest
    key_id: str
    signature: str = Field(description="base64 Ed25519 over the payload's canonical JSON")


class ReleaseKey(BaseModel):
    key_id: str
    public_key: str = Field(description="raw Ed25519 public key, base64")
    current: bool


class CountedFileResponse(FileResponse):
    """A ``FileResponse`` that counts the body bytes it sends (what the fleet's downloads
    cost the cloud). A server offering ``http.response.pathsend`` (uvicorn does not)
    would send the file past this count."""

    def __init__(self, path: str | os.PathLike[str], *, counter: Counter,
                 **kw: Any) -> None:
        super().__init__(path, **kw)
        self._counter = counter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counted(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body":
                self._counter.inc(len(message.get("body", b"")))

        await super().__call__(scope, receive, counted)


def problem_of(err: ArtifactError) -> ApiProblem:
    match err:
        case InvalidArtifact():
            return ApiProblem(422, str(err), reason=err.reason)
        case ArtifactTooLarge():
            return ApiProblem(413, str(err), reason=err.reason)
        case ArtifactConflict():
            return ApiProblem(409, str(err), reason=err.reason)
        case UnknownArtifact():
            return ApiProblem(404, str(err))
    return ApiProblem(500, str(err), reason=err.reason)


_UPLOAD_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}


@router.post("", status_code=201, summary="Upload an artifact (the raw file as the body)",
             openapi_extra=_UPLOAD_BODY,
             responses={200: {"description": "these bytes were already this artifact"},
                        400: {"description": "the body ended before its Content-Length"},
                        409: {"description": "the target and version name other bytes, "
                                             "or these bytes another target/version"},
                        413: {"description": "larger than STOREFLEET_MAX_ARTIFACT_BYTES"},
                        422: {"description": "kind, target or version do not fit"}})
async def upload_artifact(
    request: Request, response: Response, service: ServiceDep, _: AdminRole,
    kind: Annotated[ArtifactKind, Query()],
    target: Annotated[str, Query(max_length=140, pattern=TARGET_PATTERN,
                                 description="agent | firmware:<family>/<model> | "
                                 "model:positioning | model:vision")],
    version: Annotated[str, Query(max_length=64)],
) -> SignedManifest:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > service.max_bytes:
        service.metrics.uploads.labels(result="too_large").inc()
        raise problem_of(ArtifactTooLarge(service.max_bytes))
    try:
        uploaded = await service.upload(request.stream(), kind=kind.value, target=target,
                                        version=version)
    except ClientDisconnect as err:
        # The uploader went away mid-body: the storage removed the partial file; nobody is
        # left to read an answer, but the request is counted and logged like any other.
        service.metrics.uploads.labels(result="cut").inc()
        logger.warning("artifact upload of %s %s cut by the client", target, version)
        raise ApiProblem(400, "the upload was cut before its end", reason="upload_cut") \
            from err
    except ArtifactError as err:
        if not isinstance(err, ArtifactConflict):  # conflicts are counted by the service
            service.metrics.uploads.labels(
                result="too_large" if isinstance(err, ArtifactTooLarge) else "invalid").inc()
        raise problem_of(err) from err
    if not uploaded.created:
        response.status_code = 200
    return SignedManifest.model_validate(uploaded.signed)


@router.get("", summary="Artifacts, newest first")
async def list_artifacts(
    state: StateDep, service: ServiceDep, _: ArtifactRead,
    kind: Annotated[ArtifactKind | None, Query()] = None,
    target: Annotated[str | None, Query(max_length=140, pattern=TARGET_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[ArtifactManifest]:
    def work() -> list[ArtifactManifest]:
        with state.reader() as session:
            rows = service.list(session, kind=kind.value if kind else None, target=target,
                                limit=limit)
            return [ArtifactManifest.model_validate(row.signed["payload"]) for row in rows]

    return await asyncio.to_thread(work)


@router.get("/keys", summary="The release keys boxes verify artifact manifests with")
def release_keys(service: ServiceDep, _: ArtifactRead) -> list[ReleaseKey]:
    return [ReleaseKey.model_validate(k) for k in service.signer.public_keys()]


@router.get("/{sha256}", summary="An artifact's signed manifest",
            responses={404: {"description": "no such artifact"}})
async def get_manifest(sha256: Sha256Path, state: StateDep, service: ServiceDep,
                       _: ArtifactRead) -> SignedManifest:
    def work() -> dict[str, Any]:
        with state.reader() as session:
            return service.signed(session, sha256)

    try:
        return SignedManifest.model_validate(await asyncio.to_thread(work))
    except UnknownArtifact as err:
        raise problem_of(err) from err


@router.get("/{sha256}/content", summary="An artifact's bytes (Range requests answered 206)",
            response_class=FileResponse,
            responses={200: {"content": {"application/octet-stream": {}}},
                       206: {"description": "the range asked for"},
                       404: {"description": "no such artifact"},
                       416: {"description": "a range outside the file"}})
async def get_content(sha256: Sha256Path, state: StateDep, service: ServiceDep,
                      _: ArtifactRead) -> FileResponse:
    def work() -> None:
        with state.reader() as session:
            service.signed(session, sha256)  # recorded, not only a blob left on disk

    try:
        await asyncio.to_thread(work)
        path = await asyncio.to_thread(service.storage.path, sha256)
    except UnknownArtifact as err:
        raise problem_of(err) from err
    # Starlette's FileResponse answers Range (206, multipart for several, 416) itself.
    return CountedFileResponse(path, counter=service.metrics.served_bytes,
                               media_type="application/octet-stream",
                               headers={"Cache-Control": "private, max-age=31536000, "
                                                         "immutable"})
