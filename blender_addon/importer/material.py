"""The splat material: emission colour with Gaussian alpha, for Cycles and Eevee.

Per instance (a radius-1 icosphere scaled to 3σ and rotated by the Gaussian's quaternion):

* colour = instance/point attribute ``gen4d_color`` (``max(0, 0.5 + C0·f_dc)``), an
  sRGB-encoded value like the training images, converted to scene-linear for emission;
* alpha = ``gen4d_alpha`` (``sigmoid(opacity)``) × Gaussian falloff, where the falloff is
  evaluated in the instance's own (unit-sphere) space: with ``P`` the hit point in object
  coordinates and ``D`` the normalized view ray in the same space, the ray passes the
  centre at ``d² = |P|² − (P·D)²`` (radius 1 = 3σ), so falloff = ``exp(−0.5·9·d²)``;
  this is exact for the anisotropic ellipsoid, not only for spheres;
* back faces are fully transparent so each splat counts once.

The attributes are read with both ``GEOMETRY`` and ``INSTANCER`` Attribute nodes and
summed (an absent attribute reads as 0), so the material works on instances and on
realized geometry. Eevee uses ``surface_render_method = 'DITHERED'``. Cycles needs many
transparent bounces; this module never changes scene settings.
"""

from __future__ import annotations

import bpy

from .nodes import ALPHA_ATTR, COLOR_ATTR, _Builder


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


def build_material(name: str = "gen4d_splat") -> "bpy.types.Material":
    """Create a new splat material (Blender may add a numeric suffix to ``name``)."""
    mat = bpy.data.materials.new(name)
    if hasattr(mat, "use_nodes") and not mat.use_nodes:
        mat.use_nodes = True  # deprecated (always on) in 5.0, needed in 4.x
    tree = mat.node_tree
    tree.nodes.clear()
    b = _Builder(tree)
    color = b.vmath("ADD", _attribute(b, COLOR_ATTR, "GEOMETRY", "Vector"),
                    _attribute(b, COLOR_ATTR, "INSTANCER", "Vector"))
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
    front = b.math("SUBTRACT", 1.0, b.out(geometry, "Backfacing"))
    alpha = b.math("MULTIPLY", b.math("MULTIPLY", alpha, falloff), front)
    alpha = b.math("MINIMUM", alpha, 1.0)

    emission = b.node("ShaderNodeEmission", {"Color": _srgb_to_linear(b, color), "Strength": 1.0})
    transparent = b.node("ShaderNodeBsdfTransparent")
    mix = b.node("ShaderNodeMixShader", {0: alpha, 1: b.out(transparent), 2: b.out(emission)})
    output = b.node("ShaderNodeOutputMaterial")
    tree.links.new(b.out(mix), output.inputs["Surface"])

    if hasattr(mat, "surface_render_method"):
        mat.surface_render_method = "DITHERED"
    mat.use_backface_culling = True  # Eevee; Cycles uses the Backfacing term above
    return mat
