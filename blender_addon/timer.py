"""The add-on's one ``bpy.app.timers`` callback: where main-thread work from the backend runs.

Every :data:`INTERVAL_S` seconds :func:`tick` calls the update function given to
:func:`start` (``session.update``: it drains the future callbacks and checks a starting
local backend) and, if that changed anything, redraws the 3D views so the panel shows it.
The ``bpy`` module runs no event loop, so scripts and tests call :func:`tick` themselves.
"""

from __future__ import annotations

from typing import Callable

import bpy

from . import panel_state

__all__ = ["INTERVAL_S", "start", "stop", "running", "tick"]

#: Seconds between ticks.
INTERVAL_S = 0.2

_update: Callable[[], bool] | None = None


def start(update: Callable[[], bool]) -> None:
    """Register the timer (once) with ``update() -> changed`` as the work of each tick."""
    global _update
    _update = update
    if not bpy.app.timers.is_registered(tick):
        bpy.app.timers.register(tick, first_interval=INTERVAL_S, persistent=True)


def stop() -> None:
    """Unregister the timer (``unregister``)."""
    global _update
    _update = None
    if bpy.app.timers.is_registered(tick):
        bpy.app.timers.unregister(tick)


def running() -> bool:
    """Whether the timer is registered."""
    return bpy.app.timers.is_registered(tick)


def tick() -> float:
    """The timer callback: run the update, redraw 3D views if it changed something.

    Never raises (an error goes to the panel's error line).

    Returns:
        :data:`INTERVAL_S`, the delay to the next call.
    """
    state = panel_state.STATE
    try:
        changed = bool(_update()) if _update is not None else False
    except Exception as exc:  # never let the timer die
        state.error(f"{type(exc).__name__}: {exc}")
        changed = True
    if changed:
        panel_state.STATE.touch()
        try:
            wm = getattr(bpy.context, "window_manager", None)
            for window in (wm.windows if wm else ()):
                for area in window.screen.areas:
                    if area.type == "VIEW_3D":
                        area.tag_redraw()
        except Exception:  # a redraw request must not kill the timer
            pass
    return INTERVAL_S
