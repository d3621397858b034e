"""The states of a backend job, shared by the backend's job store, the wire protocol and
the clients.

A job goes ``queued`` → ``running`` → ``completed`` | ``failed`` | ``cancelled`` (and
``queued`` → ``cancelled``; ``running`` → ``queued`` when the backend stops or restarts
while a fit with a checkpoint runs: the job resumes from it). The terminal states are also
the names of the job events
that end a job (:data:`protocol.messages.TERMINAL_EVENTS`).
"""

from __future__ import annotations

__all__ = ["JOB_STATES", "TERMINAL_STATES"]

#: Every job state, in lifecycle order.
JOB_STATES = ("queued", "running", "completed", "failed", "cancelled")
#: States after which a job never changes again.
TERMINAL_STATES = frozenset({"completed", "failed", "cancelled"})
