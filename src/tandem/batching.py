"""One round trip for the calls made together: `Batcher`.

A process under load makes many small Redis calls at once (the credential epoch's read, the
rate limit's script), each costing ~0.1 ms of CPU in the client, more than the request's own
work. A `Batcher` sends a call at once when none is under way; the calls made meanwhile wait
and go together in the next one, sent as soon as it returns. So each waits at most one round
trip more, the client works once per round trip instead of once per request, and every call
is still answered by a round trip sent after it was made.
"""

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


class Batcher(Generic[In, Out]):
    """`await batcher(item)`: `send([item, ...])` answers each item of a batch in order
    (a list as long as the batch). An exception it raises reaches every caller of the batch."""

    def __init__(self, send: Callable[[Sequence[In]], Awaitable[Sequence[Out]]]) -> None:
        self._send = send
        self._in_flight = False
        self._waiting: list[tuple[In, asyncio.Future[Out]]] = []
        # Held here: the event loop keeps only a weak reference to a task.
        self._drain: asyncio.Task[None] | None = None

    async def __call__(self, item: In) -> Out:
        if self._in_flight:
            answer: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
            self._waiting.append((item, answer))
            # Shielded: a caller that goes away must not cancel the others' batch.
            return await asyncio.shield(answer)
        self._in_flight = True
        try:
            (out,) = await self._send([item])
            return out
        finally:
            if self._waiting:
                self._drain = asyncio.create_task(self._send_waiting())
            else:
                self._in_flight = False

    async def _send_waiting(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    outs = await self._send([item for item, _ in batch])
                    if len(outs) != len(batch):  # a bug: fail them rather than leave some waiting
                        raise ValueError(f"{len(outs)} answers for a batch of {len(batch)}")
                except BaseException as exc:
                    _fail(batch, exc)
                    if not isinstance(exc, Exception):  # cancelled with the loop
                        _fail(self._waiting, exc)
                        self._waiting = []
                        raise
                    continue
                for (_, answer), out in zip(batch, outs, strict=True):
                    if not answer.done():
                        answer.set_result(out)
        finally:
            self._in_flight = False


def _fail(batch: Sequence[tuple[object, "asyncio.Future[Out]"]], exc: BaseException) -> None:
    for _, answer in batch:
        if answer.done():
            continue
        if isinstance(exc, asyncio.CancelledError):
            answer.cancel()
        else:
            answer.set_exception(exc)
            # Retrieved here: a caller that went away must not leave "never retrieved" logs.
            answer.exception()
