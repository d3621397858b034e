"""Futures whose callbacks run on Blender's main thread (the Dream Textures pattern).

A request to the backend returns a :class:`Future` at once; the background thread that
serves the request completes it (:meth:`Future.set_result` / :meth:`Future.set_exception`)
and posts the request's intermediate events (:meth:`Future.post_event`: job progress,
previews, download progress). Callbacks never run on that thread: every callback is put on
a :class:`MainThreadQueue`, and they run, in the order they were posted, only when the main
thread calls :meth:`MainThreadQueue.drain` (the add-on's ``bpy.app.timers`` tick, see
``timer.py``). So a callback may touch ``bpy`` and the panel state freely, and the UI never
waits for the network.

Plain Python (no ``bpy``), thread-safe, unit-tested in ``tests/addon/test_futures.py``.
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import CancelledError
from typing import Any, Callable

__all__ = ["CancelledError", "Future", "MainThreadQueue"]


class MainThreadQueue:
    """A thread-safe FIFO of callbacks that only :meth:`drain` runs.

    Args:
        on_error: called as ``on_error(exc)`` (in :meth:`drain`, on the draining thread)
            when a callback raises; the exception is swallowed and draining goes on. None:
            the exception is dropped.
    """

    def __init__(self, on_error: Callable[[BaseException], None] | None = None):
        self._items: deque = deque()
        self._lock = threading.Lock()
        self.on_error = on_error

    def post(self, fn: Callable, *args) -> None:
        """Queue ``fn(*args)`` to run at the next :meth:`drain` (any thread)."""
        with self._lock:
            self._items.append((fn, args))

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def drain(self, max_items: int | None = None) -> int:
        """Run queued callbacks in posting order on the calling thread.

        Callbacks posted while draining run in the same call (up to ``max_items``).

        Args:
            max_items: stop after this many (None: until the queue is empty); the rest
                stay queued for the next drain, so one tick stays short.

        Returns:
            How many callbacks ran.

        Raises:
            ValueError: ``max_items`` is negative.
        """
        if max_items is not None and max_items < 0:
            raise ValueError(f"max_items must be >= 0, got {max_items}")
        ran = 0
        while max_items is None or ran < max_items:
            with self._lock:
                if not self._items:
                    break
                fn, args = self._items.popleft()
            ran += 1
            self.call(fn, *args)
        return ran

    def call(self, fn: Callable, *args) -> None:
        """Run ``fn(*args)`` now, handing an exception to :attr:`on_error` (never raises
        an ``Exception``; used by :meth:`drain` and by futures for each callback)."""
        try:
            fn(*args)
        except Exception as exc:  # a bad callback must not stop the others (or the timer)
            if self.on_error is not None:
                try:
                    self.on_error(exc)
                except Exception:
                    pass

    def clear(self) -> None:
        """Drop everything queued (on shutdown)."""
        with self._lock:
            self._items.clear()


_PENDING, _DONE, _CANCELLED = "pending", "done", "cancelled"


class Future:
    """The outcome of one request, plus the events it produces on the way.

    The producer (the connection's thread) calls :meth:`set_result`,
    :meth:`set_exception` and :meth:`post_event`; the consumer (the main thread) adds
    callbacks. Every callback runs through ``dispatcher`` (a :class:`MainThreadQueue`),
    never inline: done callbacks get the future, event callbacks get the event dict.
    Callbacks and events keep their order: an event posted before :meth:`set_result` is
    delivered before the done callbacks. Events may also be posted after the future is
    done (a job future: done when the backend accepted the job, events until the job ends);
    event callbacks receive them as well.

    Args:
        dispatcher: the queue the main thread drains.
        description: a short name for messages (e.g. ``"submit"``).
    """

    def __init__(self, dispatcher: MainThreadQueue, description: str = ""):
        self._dispatcher = dispatcher
        self.description = description
        self._lock = threading.Lock()
        self._finished = threading.Event()
        self._state = _PENDING
        self._result: Any = None
        self._exception: BaseException | None = None
        self._done_callbacks: list[Callable[["Future"], None]] = []
        self._event_callbacks: list[Callable[[dict], None]] = []
        self._done_delivered = False

    def __repr__(self) -> str:
        return f"<Future {self.description or hex(id(self))} {self._state}>"

    # -- consumer side (main thread) --------------------------------------------------

    def add_done_callback(self, fn: Callable[["Future"], None]) -> None:
        """Call ``fn(future)`` on the main thread once the future is done or cancelled
        (at the next drain if it already is)."""
        with self._lock:
            if not self._done_delivered:
                self._done_callbacks.append(fn)
                return
        self._dispatcher.post(fn, self)

    def add_event_callback(self, fn: Callable[[dict], None]) -> None:
        """Call ``fn(event)`` on the main thread for each event posted from now on (events
        still queued for the main thread are delivered too)."""
        with self._lock:
            self._event_callbacks.append(fn)

    def done(self) -> bool:
        """True once a result or exception is set, or the future was cancelled."""
        return self._state != _PENDING

    def cancelled(self) -> bool:
        """True if :meth:`cancel` succeeded."""
        return self._state == _CANCELLED

    def cancel(self) -> bool:
        """Cancel the request if it has not finished: the producer skips it (or drops its
        outcome), done callbacks run with a cancelled future and no further events are
        delivered.

        Returns:
            True if the future is now cancelled; False if it had already finished.
        """
        with self._lock:
            if self._state == _DONE:
                return False
            if self._state == _CANCELLED:
                return True
            self._state = _CANCELLED
        self._finish()
        return True

    def result(self, timeout: float | None = 0.0) -> Any:
        """The result.

        Args:
            timeout: seconds to wait for it; 0 (default) never blocks (the UI's case),
                None waits for ever (tests, scripts).

        Raises:
            TimeoutError: not done within ``timeout``.
            CancelledError: the future was cancelled.
            Exception: the request's own error (as :meth:`set_exception` got it).
        """
        if not self._finished.wait(timeout):
            raise TimeoutError(f"{self.description or 'request'} is not done yet")
        if self._state == _CANCELLED:
            raise CancelledError(f"{self.description or 'request'} was cancelled")
        if self._exception is not None:
            raise self._exception
        return self._result

    def exception(self, timeout: float | None = 0.0) -> BaseException | None:
        """The request's error, or None if it succeeded.

        Raises:
            TimeoutError: not done within ``timeout`` (see :meth:`result`).
            CancelledError: the future was cancelled.
        """
        if not self._finished.wait(timeout):
            raise TimeoutError(f"{self.description or 'request'} is not done yet")
        if self._state == _CANCELLED:
            raise CancelledError(f"{self.description or 'request'} was cancelled")
        return self._exception

    # -- producer side (any thread) ---------------------------------------------------

    def set_result(self, value: Any) -> bool:
        """Complete the future with ``value``.

        Returns:
            False (and does nothing) if it was cancelled.

        Raises:
            RuntimeError: it already has a result or exception.
        """
        return self._complete(value, None)

    def set_exception(self, exc: BaseException) -> bool:
        """Complete the future with the error ``exc``.

        Returns:
            False (and does nothing) if it was cancelled.

        Raises:
            TypeError: ``exc`` is not an exception.
            RuntimeError: it already has a result or exception.
        """
        if not isinstance(exc, BaseException):
            raise TypeError(f"set_exception needs an exception, got {type(exc).__name__}")
        return self._complete(None, exc)

    def post_event(self, event: dict) -> bool:
        """Deliver ``event`` to the event callbacks on the main thread.

        Returns:
            False (and drops the event) if the future was cancelled.
        """
        if self._state == _CANCELLED:
            return False
        self._dispatcher.post(self._deliver_event, event)
        return True

    # -- internals --------------------------------------------------------------------

    def _complete(self, value, exc) -> bool:
        with self._lock:
            if self._state == _CANCELLED:
                return False
            if self._state == _DONE:
                raise RuntimeError(f"{self!r} already has its outcome")
            self._result, self._exception, self._state = value, exc, _DONE
        self._finish()
        return True

    def _finish(self) -> None:
        self._finished.set()
        self._dispatcher.post(self._deliver_done)

    def _deliver_done(self) -> None:
        with self._lock:
            callbacks, self._done_callbacks = self._done_callbacks, []
            self._done_delivered = True
        for fn in callbacks:
            self._dispatcher.call(fn, self)

    def _deliver_event(self, event: dict) -> None:
        if self._state == _CANCELLED:
            return
        with self._lock:
            callbacks = list(self._event_callbacks)
        for fn in callbacks:
            self._dispatcher.call(fn, event)
