"""Replay protection for signed requests: a timestamp window plus a bounded digest history.

A captured request is still correctly signed, so the signature alone would let anyone who
saw it on the wire send it again (four replays of one ``submit`` made four jobs). As in
Jupyter's kernel protocol (``Session.digest_history``), the server remembers the
signatures it has accepted and refuses one it has seen; unlike Jupyter, the history is
bounded in time as well as size: every request carries ``sent_at`` (the sender's clock),
requests outside ``±window_s`` of the server's clock are refused, so a signature only
needs remembering for ``2·window_s``. When the history is full, the oldest entries are
forgotten and everything sent at or before the newest forgotten ``sent_at`` is refused
too, so memory stays bounded without ever accepting a replay.
"""

from __future__ import annotations

import heapq
import time
from typing import Callable, Optional

from protocol import ProtocolError

#: default tolerance between the client's and the server's clock, in seconds.
DEFAULT_WINDOW_S = 300.0
#: default number of signatures remembered (about 150 bytes each).
DEFAULT_HISTORY = 200_000


class ReplayGuard:
    """Accept each signed request once, and only while its ``sent_at`` is recent.

    Args:
        window_s: accepted distance between ``sent_at`` and the server's clock, seconds.
        max_history: most signatures remembered at once.
        clock: ``clock() -> Unix seconds`` (tests pass a fake one).
    """

    def __init__(self, window_s: float = DEFAULT_WINDOW_S, max_history: int = DEFAULT_HISTORY,
                 clock: Callable[[], float] = time.time):
        if window_s <= 0 or max_history < 1:
            raise ValueError("window_s must be > 0 and max_history >= 1")
        self.window_s, self.max_history, self.clock = float(window_s), int(max_history), clock
        self._seen: dict[bytes, float] = {}
        self._expiry: list[tuple[float, bytes]] = []  # heap of (sent_at, digest)
        self._floor = float("-inf")  # requests sent at or before this are refused (history overflow)

    def __len__(self) -> int:
        return len(self._seen)

    def check(self, digest: bytes, sent_at: float, header: Optional[dict] = None) -> None:
        """Accept a request (remember its signature) or refuse it.

        Args:
            digest: the request's signature frame.
            sent_at: the request's ``sent_at`` (Unix seconds, finite).
            header: attached to the error.

        Raises:
            ProtocolError: ``stale_message`` when ``sent_at`` is outside the window (the
                message names the clock difference), ``replayed`` when the signature was
                accepted before or the request predates what the history still holds.
        """
        now = self.clock()
        self._forget(now - self.window_s)
        if abs(now - sent_at) > self.window_s:
            raise ProtocolError("stale_message",
                                f"the request was sent {now - sent_at:+.0f} s from the backend's clock; at "
                                f"most {self.window_s:g} s apart are accepted: check both machines' clocks "
                                f"(NTP) or whether this is a replayed message", header)
        if digest in self._seen or sent_at <= self._floor:
            raise ProtocolError("replayed", "this request was already received; a replayed message is refused",
                                header)
        self._seen[digest] = sent_at
        heapq.heappush(self._expiry, (sent_at, digest))
        while len(self._seen) > self.max_history:
            old_sent, old = heapq.heappop(self._expiry)
            self._seen.pop(old, None)
            self._floor = max(self._floor, old_sent)

    def remember(self, digest: bytes, sent_at: float) -> None:
        """Record a signature accepted earlier (e.g. by this server before a restart: the
        ``submit`` signatures the job store keeps), so it is refused if it comes again.
        Ignored when already outside the window."""
        if sent_at < self.clock() - self.window_s or digest in self._seen:
            return
        self._seen[digest] = sent_at
        heapq.heappush(self._expiry, (sent_at, digest))

    def _forget(self, before: float) -> None:
        while self._expiry and self._expiry[0][0] < before:
            _, old = heapq.heappop(self._expiry)
            self._seen.pop(old, None)
