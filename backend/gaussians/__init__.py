"""Gaussian representations: :class:`Gaussians` (3D) and 4D models behind ``at(t)``."""
