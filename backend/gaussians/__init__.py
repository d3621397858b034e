"""Gaussian representations: :class:`~backend.gaussians.gaussians.Gaussians` (3D, one
time) and the 4D models behind the :class:`~backend.gaussians.model.Gaussians4D`
interface (``at(t)``): trajectories and HexPlane deformation."""
