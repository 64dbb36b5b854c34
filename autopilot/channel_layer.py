"""The embedded default's channel layer: channels-lite's SQLite layer, with its poller made reliable.

channels-lite delivers messages for process-specific channels (every websocket consumer's
`specific.<process>!<id>`) through ONE background task per process, started by the first
`receive()` on such a channel and inheriting that caller's context. The library's database calls are
Django async ORM calls, i.e. thread-sensitive `sync_to_async`. If the first receiver ran inside a
request (a CurrentThreadExecutor or a ThreadSensitiveContext in its context), the poller keeps sending
its queries to that request's executor after the request has ended: every poll then fails with
"CurrentThreadExecutor already quit or is broken" and no websocket in the process gets another message.

The fix: the poller runs in a fresh context of its own and, through asgiref's
`ThreadSensitiveContext(executor=...)`, sends all of its database work to one dedicated thread owned
by the layer. It no longer depends on who started it, and it never competes with request threads.
"""

from __future__ import annotations

import asyncio
import contextvars
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext
from channels_lite.layers.core import SQLiteChannelLayer as _LiteLayer


class SQLiteChannelLayer(_LiteLayer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._poller_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="channel-layer-poller")

    async def _poll_and_distribute(self, prefix):
        # Called as the body of the poller task. Run the real loop in a task with an empty context
        # (nothing inherited from the request or consumer that happened to start it); cancelling
        # this task (layer.close()) cancels the inner one it awaits.
        inner = asyncio.get_running_loop().create_task(
            self._isolated_poll(prefix), context=contextvars.Context()
        )
        try:
            await inner
        finally:
            inner.cancel()

    async def _isolated_poll(self, prefix):
        async with ThreadSensitiveContext(executor=self._poller_executor):
            await super()._poll_and_distribute(prefix)
