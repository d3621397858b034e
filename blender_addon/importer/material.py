"""The splat material: emission colour with Gaussian alpha, for Cycles and Eevee.

Per instance (in the viewport a radius-1 icosphere scaled to 3σ and rotated by the
Gaussian's quaternion; in final renders a rectangle through the centre facing the active
camera: :func:`.nodes._splat_shapes`):

* colour = instance/point attribute ``gen4d_color`` (``max(0, 0.5 + C0·f_dc)``), an
  sRGB-encoded value like the training images, converted to scene-linear for emission
  (exact sRGB EOTF). Cycles and Eevee then composite the splats in linear light and the
  view transform encodes the result: exactly the backend's ``"blender"`` image formation
  (``backend.render.image_formation``: decode each Gaussian's colour, composite in
  linear light, encode at the end), which the fit uses by default. An asset fitted with
  the standard ``"3dgs"`` formation (sRGB values composited as they are; the manifest's
  ``image_formation``, stored on the object as ``gen4d_image_formation``) renders lighter
  than its fit where splats overlap: no material can composite in sRGB values;
* alpha = ``gen4d_alpha`` (``sigmoid(opacity)``) × Gaussian falloff:

  - on an icosphere (viewport), evaluated in the instance's own (unit-sphere) space: with
    ``P`` the hit point in object coordinates and ``D`` the normalized view ray in the
    same space, the ray passes the centre at ``d² = |P|² − (P·D)²`` (radius 1 = 3σ), so
    falloff = ``exp(−0.5·9·d²)``, the 3D Gaussian's maximum along the ray; exact for the
    anisotropic ellipsoid, not only for spheres;
  - on a camera-facing rectangle (final renders; the instance attribute
    ``gen4d_square_extent`` ``E`` > 0), the projected 2D Gaussian at the hit point
    ``(u, v)`` in the rectangle's coordinates: ``exp(−0.5·E²·(u² + v²))``, which is the
    rasterizer's value at that pixel;
* as in the rasterizers (``backend.render``, gsplat), alpha below 1/255 is dropped and
  alpha is clamped to 0.999;
* back faces are fully transparent so each splat counts once.

The attributes are read with both ``GEOMETRY`` and ``INSTANCER`` Attribute nodes and
summed (an absent attribute reads as 0), so the material works on instances and on
realized geometry. Eevee uses ``surface_render_method = 'DITHERED'``. Cycles needs many
transparent bounces; this module never changes scene settings.
"""

from __future__ import annotations

import bpy

from .frame_split import ALPHA_ATTR, COLOR_ATTR, sh_attribute
from .nodes import SQUARE_EXTENT_ATTR, _Builder


def _attribute(b, name, kind, output):
    return b.out(b.node("ShaderNodeAttribute", attribute_name=name, attribute_type=kind), output)


def _srgb_to_linear(b, color):
    """Shader sockets: the exact sRGB EOTF per channel.

    Splat colours are sRGB-encoded like the training images, while Blender's shading is
    scene-linear: without this, a Standard view transform would encode them twice.
    """
    sep = b.node("ShaderNodeSeparateXYZ", {"Vector": color})
    channels = []
    for axis in ("X", "Y", "Z"):
        c = b.math("MAXIMUM", b.out(sep, axis), 0.0)
        low = b.math("DIVIDE", c, 12.92)
        high = b.math("POWER", b.math("DIVIDE", b.math("ADD", c, 0.055), 1.055), 2.4)
        use_high = b.math("GREATER_THAN", c, 0.04045)
        channels.append(b.math("ADD", low, b.math("MULTIPLY", use_high, b.math("SUBTRACT", high, low))))
    return b.out(b.node("ShaderNodeCombineXYZ", {"X": channels[0], "Y": channels[1], "Z": channels[2]}))


#: Real SH basis constants of the 3DGS reference code (degrees 1–3).
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
         -0.4570457994644658, 1.445305721320277, -0.5900435899266435)


def _sh_basis(b, direction, degree: int) -> list:
    """Shader sockets Y_1 … Y_{K−1} of the real SH basis (3DGS order and signs) for the unit
    ``direction`` (world space, camera → splat)."""
    sep = b.node("ShaderNodeSeparateXYZ", {"Vector": direction})
    x, y, z = (b.out(sep, axis) for axis in "XYZ")
    mul = lambda *f: f[0] if len(f) == 1 else b.math("MULTIPLY", f[0], mul(*f[1:]))  # noqa: E731
    basis = [mul(-SH_C1, y), mul(SH_C1, z), mul(-SH_C1, x)]
    if degree >= 2:
        xx, yy, zz = mul(x, x), mul(y, y), mul(z, z)
        xy, yz, xz = mul(x, y), mul(y, z), mul(x, z)
        basis += [mul(SH_C2[0], xy), mul(SH_C2[1], yz),
                  mul(SH_C2[2], b.math("SUBTRACT", b.math("MULTIPLY", zz, 2.0), b.math("ADD", xx, yy))),
                  mul(SH_C2[3], xz), mul(SH_C2[4], b.math("SUBTRACT", xx, yy))]
    if degree >= 3:
        four_zz_minus = b.math("SUBTRACT", b.math("MULTIPLY", zz, 4.0), b.math("ADD", xx, yy))
        basis += [mul(SH_C3[0], y, b.math("SUBTRACT", b.math("MULTIPLY", xx, 3.0), yy)),
                  mul(SH_C3[1], xy, z),
                  mul(SH_C3[2], y, four_zz_minus),
                  mul(SH_C3[3], z, b.math("SUBTRACT", b.math("MULTIPLY", zz, 2.0),
                                          b.math("MULTIPLY", b.math("ADD", xx, yy), 3.0))),
                  mul(SH_C3[4], x, four_zz_minus),
                  mul(SH_C3[5], z, b.math("SUBTRACT", xx, yy)),
                  mul(SH_C3[6], x, b.math("SUBTRACT", xx, b.math("MULTIPLY", yy, 3.0)))]
    return basis


def build_material(name: str = "gen4d_splat", sh_degree: int = 0) -> "bpy.types.Material":
    """Create a new splat material (Blender may add a numeric suffix to ``name``).

    With ``sh_degree`` > 0 the colour adds the view-dependent terms ``Σ_k Y_k(d)·c_k`` of
    the instance attributes ``gen4d_sh_<k>`` (see :func:`.frame_split.sh_attribute`), with ``d``
    the world-space direction from the camera to the shading point (the negated Incoming
    vector), then clamps at 0, as the 3DGS rasterizers do with the splat centre's direction.
    """

    mat = bpy.data.materials.new(name)
    if hasattr(mat, "use_nodes") and not mat.use_nodes:
        mat.use_nodes = True  # deprecated (always on) in 5.0, needed in 4.x
    tree = mat.node_tree
    tree.nodes.clear()
    b = _Builder(tree)
    color = b.vmath("ADD", _attribute(b, COLOR_ATTR, "GEOMETRY", "Vector"),
                    _attribute(b, COLOR_ATTR, "INSTANCER", "Vector"))
    if sh_degree > 0:
        incoming = b.out(b.node("ShaderNodeNewGeometry"), "Incoming")
        direction = b.vmath("NORMALIZE", b.vmath("SCALE", incoming, None, more={"Scale": -1.0}))
        for k, y_k in enumerate(_sh_basis(b, direction, sh_degree), start=1):
            coeffs = b.vmath("ADD", _attribute(b, sh_attribute(k), "GEOMETRY", "Vector"),
                             _attribute(b, sh_attribute(k), "INSTANCER", "Vector"))
            color = b.vmath("ADD", color, b.vmath("SCALE", coeffs, None, more={"Scale": y_k}))
    alpha = b.math("ADD", _attribute(b, ALPHA_ATTR, "GEOMETRY", ("Factor", "Fac")),
                   _attribute(b, ALPHA_ATTR, "INSTANCER", ("Factor", "Fac")))

    geometry = b.node("ShaderNodeNewGeometry")
    p = b.out(b.node("ShaderNodeTexCoord"), "Object")
    d = b.out(b.node("ShaderNodeVectorTransform", {"Vector": b.out(geometry, "Incoming")},
                     vector_type="VECTOR", convert_from="WORLD", convert_to="OBJECT"))
    d = b.vmath("NORMALIZE", d)
    pd = b.vmath("DOT_PRODUCT", p, d, out="Value")
    pp = b.vmath("DOT_PRODUCT", p, p, out="Value")
    d2 = b.math("MAXIMUM", b.math("SUBTRACT", pp, b.math("MULTIPLY", pd, pd)), 0.0)
    falloff = b.math("EXPONENT", b.math("MULTIPLY", d2, -4.5))
    # camera-facing rectangles (final renders): the projected 2D Gaussian at the hit point
    extent = b.math("ADD", _attribute(b, SQUARE_EXTENT_ATTR, "GEOMETRY", ("Factor", "Fac")),
                    _attribute(b, SQUARE_EXTENT_ATTR, "INSTANCER", ("Factor", "Fac")))
    uv = b.vmath("MULTIPLY", p, None, more={1: (1.0, 1.0, 0.0)})
    planar = b.math("EXPONENT", b.math("MULTIPLY", b.vmath("DOT_PRODUCT", uv, uv, out="Value"),
                                       b.math("MULTIPLY", b.math("MULTIPLY", extent, extent), -0.5)))
    is_square = b.math("GREATER_THAN", extent, 0.0)
    falloff = b.math("ADD", b.math("MULTIPLY", is_square, planar),
                     b.math("MULTIPLY", b.math("SUBTRACT", 1.0, is_square), falloff))
    front = b.math("SUBTRACT", 1.0, b.out(geometry, "Backfacing"))
    alpha = b.math("MULTIPLY", b.math("MULTIPLY", alpha, falloff), front)
    # the rasterizers' cut and clamp (backend.render, gsplat): alpha < 1/255 is skipped,
    # alpha is at most 0.999
    alpha = b.math("MULTIPLY", alpha, b.math("GREATER_THAN", alpha, 1.0 / 255.0))
    alpha = b.math("MINIMUM", alpha, 0.999)

    emission = b.node("ShaderNodeEmission", {"Color": _srgb_to_linear(b, color), "Strength": 1.0})
    transparent = b.node("ShaderNodeBsdfTransparent")
    mix = b.node("ShaderNodeMixShader", {0: alpha, 1: b.out(transparent), 2: b.out(emission)})
    output = b.node("ShaderNodeOutputMaterial")
    tree.links.new(b.out(mix), output.inputs["Surface"])

    if hasattr(mat, "surface_render_method"):
        mat.surface_render_method = "DITHERED"
    mat.use_backface_culling = True  # Eevee; Cycles uses the Backfacing term above
    return mat
