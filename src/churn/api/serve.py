"""Serve the API with Waitress: ``python -m churn.api.serve`` or the ``churn-api`` script.

Every setting comes from the environment over ``configs/api.yaml`` (see `churn.config`).
On SIGTERM or SIGINT the server stops accepting connections, lets the requests in flight
finish (up to ``GRACE_SECONDS``), flushes the MLflow serving statistics and exits 0.
"""

from __future__ import annotations

import gc
import json
import logging
import select
import signal
import sys
import threading
import time
from collections import deque
from types import FrameType
from typing import Any

from flask import Flask
from waitress import create_server, wasyncore
from waitress.channel import HTTPChannel
from waitress.task import ErrorTask

from churn.api.app import create_app
from churn.api.errors import HTTP_CODES
from churn.api.request_log import QueueDepthSampler, attach_handlers
from churn.api.state import get_state
from churn.config import ApiSettings, SettingsError, load_api_settings

__all__ = ["InlineDispatcher", "freeze_startup_objects", "main", "run", "serve", "waitress_options"]

log = logging.getLogger("churn.api.serve")

#: Longest wait for requests in flight after SIGTERM (Docker's default stop timeout is 10 s).
GRACE_SECONDS = 8.0
#: Headroom over the app's body limit: bodies up to this size reach the app, which answers
#: 413 itself; Waitress refuses anything larger before buffering it (also as a JSON 413).
BODY_HEADROOM = 64 * 1024
#: Waitress warns whenever a request waits for a worker thread; one such line per interval.
QUEUE_WARNING_INTERVAL = 60.0


def waitress_options(settings: ApiSettings) -> dict[str, object]:
    """Return the Waitress adjustments for ``settings``."""
    return {
        "host": settings.host,
        "port": settings.port,
        # 0 (inline, see `InlineDispatcher`): Waitress's own thread count is then unused.
        "threads": max(1, settings.threads),
        "channel_timeout": settings.channel_timeout,
        "max_request_body_size": settings.max_body_bytes + BODY_HEADROOM,
        # The API sits behind no trusted proxy: drop X-Forwarded-* and friends.
        "clear_untrusted_proxy_headers": True,
        "ident": "churn-api",
        "asyncore_use_poll": True,
    }


class JsonErrorTask(ErrorTask):
    """Waitress's own error answers in the contract's JSON shape instead of plain text.

    Waitress answers these before the app sees the request: a body far over the limit,
    headers too large, malformed HTTP.
    """

    def execute(self) -> None:
        """Write the error as JSON and close the connection, as Waitress does."""
        error = self.request.error
        code = HTTP_CODES.get(error.code, "http_error")
        message = f"{error.reason}: {error.body}".strip().rstrip(":")
        body = json.dumps({"error": {"code": code, "message": message, "details": []}}).encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class JsonErrorChannel(HTTPChannel):
    """An HTTP channel whose protocol-level errors are answered by `JsonErrorTask`."""

    error_task_class = JsonErrorTask


class InlineDispatcher:
    """Waitress's task dispatcher without threads: requests run on the I/O thread, in turn.

    Used when the ``threads`` setting is 0 (the default). Waitress hands each request from its
    I/O thread to a worker thread. The app is CPU-bound and holds the interpreter lock while it
    runs, so worker threads add no parallelism, only a hand-off per request through a
    condition variable and the lock: on 2 shared cores that cost about 29 ``futex`` calls per
    request and 3-4x the CPU a request costs alone (docs/performance.md). Here the I/O loop
    reads the requests of one poll, `run_pending` serves them one after another on the same
    thread (no lock changes hands), and the next poll writes the answers back.

    The price: a long request (a 1,000-record batch, ~15 ms) delays the others of its poll
    instead of sharing the interpreter lock with them in 5 ms slices.
    """

    def __init__(self) -> None:
        self.queue: deque[Any] = deque()
        #: requests running now (0 or 1), for the busy-threads gauge
        self.active_count = 0

    def add_task(self, task: Any) -> None:
        """Queue a channel whose request is complete; `run_pending` serves it."""
        self.queue.append(task)

    def run_pending(self) -> None:
        """Serve every queued request (a channel re-queues itself for a pipelined one)."""
        queue = self.queue
        while queue:
            task = queue.popleft()
            self.active_count = 1
            try:
                task.service()
            except BaseException:  # as Waitress's own worker threads do
                log.exception("exception when serving %r", task)
            finally:
                self.active_count = 0

    def set_thread_count(self, count: int) -> None:
        """No threads to start or stop (Waitress's interface)."""

    def shutdown(self, cancel_pending: bool = True, timeout: float = 5) -> bool:
        """Drop what is still queued (Waitress's interface); True when nothing was."""
        dropped = len(self.queue)
        if cancel_pending:
            self.queue.clear()
        return dropped == 0


def _busy(server: object) -> bool:
    """Tell whether any connection has a request being read, run or written back."""
    channels = getattr(server, "active_channels", {})
    return any(
        ch.requests or ch.total_outbufs_len or getattr(ch, "request", None) is not None
        for ch in list(channels.values())
    )


def _stop_listening(server: Any) -> None:
    """Serve the connections already queued in the kernel, then close the listening socket.

    Only clearing ``accepting`` would leave the socket listening: the kernel would keep taking
    connections during the grace period and reset them at exit, after their clients had sent
    their requests. Closed, new connections are refused at once; queued ones are served.
    """
    sock = server.socket
    if sock is None:
        return
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    for _ in range(server.adj.backlog):
        if not poller.poll(0):
            break
        server.handle_accept()
    # The dispatcher's own close: BaseWSGIServer.close would also close the trigger that
    # wakes the loop when responses in flight are ready.
    wasyncore.dispatcher.close(server)


def freeze_startup_objects() -> int:
    """Exempt every object that exists now (app, models, libraries) from garbage collection.

    The collector's full passes scan every tracked object: about 110,000 once the app and
    its libraries are loaded, 60-80 ms during which no request moves (measured: one such pass
    per ~10,000 requests, enough to set the p99 latency). Objects made after start-up, what
    requests leave behind, are still collected. Returns how many objects were frozen.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def run(settings: ApiSettings, stop: threading.Event | None = None) -> None:
    """Build the app and serve it until ``stop`` is set (or SIGTERM/SIGINT in the main thread).

    Raises:
        SettingsError: a setting is invalid.
        OSError: the address cannot be bound.

    """
    serve(create_app(settings), settings, stop)


def serve(app: Flask, settings: ApiSettings, stop: threading.Event | None = None) -> None:
    """Serve ``app`` with Waitress until ``stop`` is set, then stop gracefully.

    In the main thread SIGTERM and SIGINT set ``stop`` too. Requests in flight finish (up to
    `GRACE_SECONDS`) before the connections close; then the MLflow statistics are flushed.

    Raises:
        OSError: the address cannot be bound.

    """
    stop = stop or threading.Event()
    churn_handlers = [h for h in logging.getLogger("churn").handlers]
    attach_handlers(logging.getLogger("waitress"), churn_handlers, settings.log_level)
    queue_log = logging.getLogger("waitress.queue")
    for old in [f for f in queue_log.filters if isinstance(f, QueueDepthSampler)]:
        queue_log.removeFilter(old)
    queue_log.addFilter(QueueDepthSampler(QUEUE_WARNING_INTERVAL))

    inline = InlineDispatcher() if settings.threads == 0 else None
    server = create_server(app, _dispatcher=inline, **waitress_options(settings))
    server.channel_class = JsonErrorChannel  # type: ignore[union-attr]
    dispatcher = server.task_dispatcher  # type: ignore[union-attr]
    get_state(app).metrics.watch_waitress(
        lambda: len(dispatcher.queue), lambda: dispatcher.active_count
    )
    # The one-thread server scores shadow work itself, between polls (see churn.api.shadow).
    shadow = get_state(app).router.shadow if inline is not None else None
    if shadow is not None:
        shadow.run_inline()
    frozen = freeze_startup_objects()
    if threading.current_thread() is threading.main_thread():

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("received %s, stopping", signal.Signals(signum).name)
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    socket_map = server._map  # type: ignore[attr-defined]  # waitress keeps its map there
    log.info(
        "serving on http://%s:%s",
        server.effective_host,  # type: ignore[union-attr]
        server.effective_port,  # type: ignore[union-attr]
        extra={"threads": settings.threads, "gc_frozen_objects": frozen},
    )
    try:
        while not stop.is_set():
            wasyncore.loop(timeout=0.2, use_poll=True, map=socket_map, count=1)
            if shadow is not None:  # the answers of the last round were just written
                shadow.run_pending()
            if inline is not None:
                inline.run_pending()
        # Graceful stop: take no new connections, finish and send what is in flight.
        _stop_listening(server)
        deadline = time.monotonic() + GRACE_SECONDS
        while _busy(server) and time.monotonic() < deadline:
            wasyncore.loop(timeout=0.05, use_poll=True, map=socket_map, count=1)
            if inline is not None:
                inline.run_pending()
    finally:
        server.task_dispatcher.shutdown(timeout=2)  # type: ignore[union-attr]
        wasyncore.close_all(socket_map)
        stats = get_state(app).stats
        if stats is not None:
            stats.stop(timeout=2)
        log.info("stopped")


def main() -> int:
    """Entry point of ``churn-api``: serve until SIGTERM; exit 2 on invalid settings."""
    try:
        settings = load_api_settings()
        run(settings)
    except SettingsError as exc:
        print(f"churn-api: invalid settings: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"churn-api: cannot serve: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
