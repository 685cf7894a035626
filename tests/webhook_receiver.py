"""A real HTTP receiver on 127.0.0.1 for webhook deliveries: keeps every request and answers
them in order from a script (a status code, or HANG to keep the connection open without an
answer); 200 once the script is used up."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

HANG = 0  # answer nothing until the receiver stops


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    port: int = 0
    answers: list[int] = field(default_factory=list)
    answer_body: bytes = b'{"ok": true}'
    received: list[Received] = field(default_factory=list)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/tandem"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = (await reader.readline()).decode()
            if not request_line.strip():
                # A client that connected and left without a request (a delivery cancelled
                # as the app shut down): nothing was delivered, and a server carries on.
                return
            headers: dict[str, str] = {}
            while (line := (await reader.readline()).decode().strip()) != "":
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.received.append(Received(request_line.split()[1], headers, body))
            answer = self.answers.pop(0) if self.answers else 200
            if answer == HANG:
                await self._stopping.wait()
                return
            writer.write(
                f"HTTP/1.1 {answer} X\r\nContent-Length: {len(self.answer_body)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + self.answer_body
            )
            await writer.drain()
        finally:
            writer.close()


@asynccontextmanager
async def webhook_receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    server = await asyncio.start_server(receiver._handle, "127.0.0.1", 0)
    receiver.port = server.sockets[0].getsockname()[1]
    try:
        yield receiver
    finally:
        receiver._stopping.set()
        server.close()
        await server.wait_closed()
