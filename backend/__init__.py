"""gen4d backend: job server, pipeline stages, 4D Gaussians and rendering.

See ``docs/design.md`` for the architecture. Entry point: ``python -m backend``.
"""
