"""Group commit: requests that arrive while a commit is under way share the next transaction.

One fsync then serves them all, and each caller still returns only after the transaction holding
its own request is durable. A failed commit fails every request in it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from sqlalchemy import Connection

Request = TypeVar("Request")
Result = TypeVar("Result")
Run = Callable[[Callable[[Connection], list[Result]]], Awaitable[list[Result]]]


class GroupCommit(Generic[Request, Result]):
    """`work(connection, requests=[...])` handles a group in one transaction, a result per request."""

    def __init__(self, run: Run[Result], work: Callable[..., list[Result]],
                 most: int, cancelled: Callable[[], Exception]) -> None:  # fmt: skip
        self._run, self._work, self._most, self._cancelled = run, work, most, cancelled
        self._queued: list[tuple[Request, asyncio.Future[Result]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, request: Request) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queued.append((request, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_queued())
        return await asyncio.shield(future)

    async def drain(self) -> None:
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)

    async def _write_queued(self) -> None:
        while self._queued:
            group, self._queued = self._queued[: self._most], self._queued[self._most :]
            requests = [request for request, _ in group]
            try:
                results = await self._run(functools.partial(self._work, requests=requests))
            except BaseException as error:
                for _, future in group:
                    if not future.done():
                        future.set_exception(error if isinstance(error, Exception) else self._cancelled())
                if not isinstance(error, Exception):
                    raise
                continue
            for (_, future), result in zip(group, results, strict=True):
                if not future.done():
                    future.set_result(result)
