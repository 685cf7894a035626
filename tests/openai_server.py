"""A real OpenAI-compatible endpoint on 127.0.0.1 that streams (Chat Completions with
`stream: true`, OpenAI's `chat.completion.chunk` events), answering from a script.

    async with openai_server(["The museum ", "reopens ", "on Friday."], hold_after=1) as llm:
        ...  # TANDEM_LLM_BASE_URL=llm.base_url; the first piece is sent, the rest wait
        llm.release.set()
"""

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.live_server import serving

MODEL = "gpt-test-2025-01-01"


@dataclass
class OpenAIServer:
    pieces: list[str]
    hold_after: int | None = None  # pieces sent before waiting for `release`
    retry_pieces: list[str] | None = None  # the answer to every request after the first
    prompt_tokens: int = 57
    base_url: str = ""
    release: asyncio.Event = field(default_factory=asyncio.Event)
    requests: list[dict[str, Any]] = field(default_factory=list)
    streams_finished: int = 0
    streams_abandoned: int = 0  # the client hung up before the last chunk

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return self._event({"choices": [choice]})

    def _event(self, fields: dict[str, Any]) -> str:
        body = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1_700_000_000}
        return f"data: {json.dumps(body | {'model': MODEL} | fields)}\n\n"

    def _stream(self, pieces: list[str]) -> Iterator[str | None]:
        """The chunks; None marks where the stream waits for `release`."""
        yield self._chunk({"role": "assistant", "content": ""})
        for number, piece in enumerate(pieces):
            if number == self.hold_after:
                yield None
            yield self._chunk({"content": piece})
        yield self._chunk({}, finish="stop")
        completion = sum(len(piece.split()) for piece in pieces)
        usage = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        }
        yield self._event({"choices": [], "usage": usage})
        yield "data: [DONE]\n\n"

    async def _events(self, pieces: list[str]) -> AsyncIterator[str]:
        finished = False
        try:
            for chunk in self._stream(pieces):
                if chunk is None:
                    await self.release.wait()
                else:
                    yield chunk
            finished = True
        finally:
            if finished:
                self.streams_finished += 1
            else:
                self.streams_abandoned += 1

    async def completions(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        if not body.get("stream"):
            return JSONResponse({"error": {"message": "this test server only streams"}}, 400)
        again = len(self.requests) > 1 and self.retry_pieces is not None
        pieces = self.retry_pieces if again and self.retry_pieces is not None else self.pieces
        return StreamingResponse(self._events(pieces), media_type="text/event-stream")


@asynccontextmanager
async def openai_server(
    pieces: list[str], *, hold_after: int | None = None, retry_pieces: list[str] | None = None
) -> AsyncIterator[OpenAIServer]:
    server = OpenAIServer(pieces, hold_after=hold_after, retry_pieces=retry_pieces)
    app = Starlette(routes=[Route("/v1/chat/completions", server.completions, methods=["POST"])])
    async with serving(app) as url:
        server.base_url = f"{url}/v1"
        try:
            yield server
        finally:
            server.release.set()  # a stream still waiting ends, so the server can stop
