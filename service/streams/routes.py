"""/streams: live streams as resources, and their events as Server-Sent Events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.sse import EventSourceResponse, ServerSentEvent

from service.streams.manager import StreamManager
from service.streams.schemas import StreamCreate, StreamEvent, StreamPublic, StreamsPublic
from service.streams.serving import get_manager

router = APIRouter(prefix="/streams", tags=["streams"])
ManagerDep = Annotated[StreamManager, Depends(get_manager)]


@router.post("", status_code=201, response_model=StreamPublic)
async def create_stream(definition: StreamCreate, manager: ManagerDep) -> StreamPublic:
    """Start classifying a live stream; it persists until deleted (across restarts)."""
    return await manager.add(definition)


@router.get("", response_model=StreamsPublic)
async def list_streams(manager: ManagerDep) -> StreamsPublic:
    return StreamsPublic(streams=manager.list())


@router.get("/{stream_id}", response_model=StreamPublic)
async def read_stream(stream_id: str, manager: ManagerDep) -> StreamPublic:
    return manager.get(stream_id).public()


@router.delete("/{stream_id}", status_code=204)
async def delete_stream(stream_id: str, manager: ManagerDep) -> None:
    await manager.remove(stream_id)


def stream_events_of(stream_id: str, manager: ManagerDep) -> AsyncIterator[StreamEvent]:
    """The subscription, taken before the response starts (so an unknown id is a 404)."""
    return manager.events(stream_id)


@router.get("/{stream_id}/events", response_class=EventSourceResponse)
async def stream_events(
    events: Annotated[AsyncIterator[StreamEvent], Depends(stream_events_of)],
) -> AsyncIterator[ServerSentEvent]:
    """The stream's action events as they happen: one JSON object per `data:` line (`event:`
    start or end). Ends when the stream is deleted."""
    async for event in events:
        yield ServerSentEvent(
            data=event.model_dump(mode="json"), event=event.type.value, id=event.id
        )
