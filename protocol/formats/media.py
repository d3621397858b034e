"""Which image files footage may hold.

Footage images are named by a transforms file's ``file_path`` (see :mod:`.transforms`),
with or without one of these extensions. The backend's ingest decodes all of them and the
client uploads all of them.
"""

from __future__ import annotations

__all__ = ["IMAGE_EXTENSIONS", "is_image_name"]

#: Image file extensions footage may use (lower case, with the dot), in the order an
#: extension-less ``file_path`` is tried.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".exr", ".webp")


def is_image_name(name: str) -> bool:
    """True when ``name`` (a file name or path) ends in one of :data:`IMAGE_EXTENSIONS`,
    ignoring case (``"r_000.JPG"`` is an image name, ``"r_000"`` is not)."""
    return str(name).lower().endswith(IMAGE_EXTENSIONS)
