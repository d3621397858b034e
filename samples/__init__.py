"""Deterministic, procedurally built sample footage rendered with Blender (Cycles, CPU).

The scenes are the project's "real input": synchronized multi-view footage of an
animated object in the NeRF-synthetic / D-NeRF ``transforms_*.json`` format.

Use ``from samples.make_scene import make_scene`` (renders in this process, resets
``bpy``), ``from samples.make_scene import make_scene_subprocess`` (renders in a fresh
interpreter), or ``python -m samples.make_scene --help``.

Importing this package does not import ``bpy``; only rendering does.
"""

SCENES = ("wobble", "rigid", "articulated")
