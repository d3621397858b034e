"""The Geometry Nodes tree that plays a per-frame PLY sequence (Blender ≥ 4.5).

Group interface (look identifiers up with :func:`input_identifier`, never hard-code
``Socket_N``):

* ``Frame`` (float): clip frame index, 0-based. Clamped to ``[0, T-1]``. A fractional
  value blends positions linearly between the two neighbouring frames (N and the order
  are fixed over time); everything else comes from the lower frame.
* ``Splat Size`` (float, default 1): multiplier on the 3σ instance size.
* output ``Geometry``: one instance of a subdivision-1 icosphere (radius 1) per Gaussian,
  scaled by ``3·exp(scale_i)·Splat Size`` per axis and rotated by the quaternion
  ``(rot_0..rot_3) = (w, x, y, z)``. Instance attributes ``gen4d_color`` (colour,
  ``max(0, 0.5 + C0·f_dc)``) and ``gen4d_alpha`` (``sigmoid(opacity)``) feed the
  material; the PLY properties (``f_dc_*``, ``opacity``, ``scale_*``, ``rot_*``) stay on
  the instances under their PLY names.

The file path is built from Frame inside the tree: ``frame + 10**W`` → Value to String
→ Slice String (drops the leading 1) → Replace String into a path template. The tree
never reads Scene Time; Frame is driven or keyframed from outside.
"""

from __future__ import annotations

import bpy

from .manifest import FRAME_TOKEN

SH_C0 = 0.28209479177387814
COLOR_ATTR = "gen4d_color"
ALPHA_ATTR = "gen4d_alpha"
FRAME_INPUT = "Frame"
SIZE_INPUT = "Splat Size"


def _sock(sockets, name, enabled_only=True):
    """The first (enabled) socket called ``name`` (a str, or a tuple of names that differ
    between versions, e.g. ``("Factor", "Fac")``); identifiers vary by version."""
    names = (name,) if isinstance(name, str) else tuple(name)
    for s in sockets:
        if s.name in names and (s.enabled or not enabled_only):
            return s
    raise KeyError(f"no socket {name!r} among {[s.name for s in sockets]}")


class _Builder:
    """Tiny helper around a node tree: nodes with values, links by socket name."""

    def __init__(self, tree):
        self.tree = tree
        self.x = 0

    def node(self, kind, inputs=None, **props):
        n = self.tree.nodes.new(kind)
        for key, value in props.items():
            setattr(n, key, value)
        n.location = (self.x, 0)
        self.x += 40
        for key, value in (inputs or {}).items():
            sock = n.inputs[key] if isinstance(key, int) else _sock(n.inputs, key)
            if hasattr(value, "node") and hasattr(value, "is_output"):
                self.tree.links.new(value, sock)
            else:
                sock.default_value = value
        return n

    def out(self, node, name=None):
        if name is None:
            return next(s for s in node.outputs if s.enabled)
        return _sock(node.outputs, name)

    def math(self, op, a, b=None):
        inputs = {0: a} if b is None else {0: a, 1: b}
        return self.out(self.node("ShaderNodeMath", inputs, operation=op))

    def vmath(self, op, a, b=None, out="Vector", more=None):
        inputs = {0: a} if b is None else {0: a, 1: b}
        inputs.update(more or {})
        return self.out(self.node("ShaderNodeVectorMath", inputs, operation=op), out)

    def attr(self, name):
        return self.out(self.node("GeometryNodeInputNamedAttribute", {"Name": name},
                                  data_type="FLOAT"), "Attribute")


def _frame_path(b, frame, template, width):
    """String socket: ``template`` with FRAME_TOKEN replaced by ``frame`` zero-padded."""
    shifted = b.math("ADD", frame, float(10 ** width))
    text = b.out(b.node("FunctionNodeValueToString", {"Value": shifted, "Decimals": 0}))
    digits = b.out(b.node("FunctionNodeSliceString",
                          {"String": text, "Position": 1, "Length": width}))
    return b.out(b.node("FunctionNodeReplaceString",
                        {"String": template, "Find": FRAME_TOKEN, "Replace": digits}))


def build_tree(name: str, template: str, frame_count: int, width: int,
               material) -> "bpy.types.GeometryNodeTree":
    """Create the player node group.

    Args:
        name: node group name (Blender may add a suffix).
        template: cache file path with :data:`FRAME_TOKEN` where the zero-padded frame
            number goes, e.g. ``//gen4d_cache/asset/frame_@FRAME@.ply``.
        frame_count: ``T``; Frame is clamped to ``[0, T-1]``.
        width: digits of the zero-padded frame number.
        material: material put on the splat instances (or None).
    """
    if FRAME_TOKEN in template.replace(FRAME_TOKEN, "", 1):
        raise ValueError(f"path template {template!r} contains {FRAME_TOKEN!r} twice")
    tree = bpy.data.node_groups.new(name, "GeometryNodeTree")
    iface = tree.interface
    iface.new_socket(FRAME_INPUT, in_out="INPUT", socket_type="NodeSocketFloat")
    size = iface.new_socket(SIZE_INPUT, in_out="INPUT", socket_type="NodeSocketFloat")
    size.default_value, size.min_value = 1.0, 0.0
    iface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    b = _Builder(tree)
    group_in = b.node("NodeGroupInput")
    last = float(frame_count - 1)

    frame = b.out(b.node("ShaderNodeClamp", {"Value": b.out(group_in, FRAME_INPUT),
                                             "Min": 0.0, "Max": last}))
    fa = b.math("FLOOR", frame)
    weight = b.math("SUBTRACT", frame, fa)
    fb = b.math("MINIMUM", b.math("ADD", fa, 1.0), last)
    geo_a = b.out(b.node("GeometryNodeImportPLY", {"Path": _frame_path(b, fa, template, width)}))
    geo_b = b.out(b.node("GeometryNodeImportPLY", {"Path": _frame_path(b, fb, template, width)}))

    # Fractional Frame: lerp positions with frame b (same N and order). The switch is
    # lazy, so frame b is not even read when the weight is 0.
    pos = b.out(b.node("GeometryNodeInputPosition"))
    pos_b = b.out(b.node("GeometryNodeSampleIndex", {"Geometry": geo_b, "Value": pos,
                                                     "Index": b.out(b.node("GeometryNodeInputIndex"))},
                         data_type="FLOAT_VECTOR", domain="POINT"))
    mixed = b.out(b.node("ShaderNodeMix", {"Factor": weight, "A": pos, "B": pos_b},
                         data_type="VECTOR"))
    blended = b.out(b.node("GeometryNodeSetPosition", {"Geometry": geo_a, "Position": mixed}))
    is_frac = b.out(b.node("FunctionNodeCompare", {"A": weight, "B": 0.0},
                           data_type="FLOAT", operation="GREATER_THAN"))
    points = b.out(b.node("GeometryNodeSwitch", {"Switch": is_frac, "False": geo_a,
                                                  "True": blended}, input_type="GEOMETRY"))
    points = b.out(b.node("GeometryNodeRemoveAttribute",
                          {"Geometry": points, "Name": "f_rest_*", "Pattern Mode": "Wildcard"}))

    # Shading attributes: colour = max(0, 0.5 + C0·f_dc), alpha = sigmoid(opacity).
    dc = b.out(b.node("ShaderNodeCombineXYZ", {"X": b.attr("f_dc_0"), "Y": b.attr("f_dc_1"),
                                               "Z": b.attr("f_dc_2")}))
    color = b.vmath("MAXIMUM", b.vmath("MULTIPLY_ADD", dc, (SH_C0,) * 3, more={2: (0.5,) * 3}),
                    (0.0, 0.0, 0.0))
    alpha = b.math("DIVIDE", 1.0, b.math("ADD", 1.0, b.math("EXPONENT",
                                                            b.math("MULTIPLY", b.attr("opacity"), -1.0))))
    points = b.out(b.node("GeometryNodeStoreNamedAttribute",
                          {"Geometry": points, "Name": COLOR_ATTR, "Value": color},
                          data_type="FLOAT_COLOR", domain="POINT"))
    points = b.out(b.node("GeometryNodeStoreNamedAttribute",
                          {"Geometry": points, "Name": ALPHA_ATTR, "Value": alpha},
                          data_type="FLOAT", domain="POINT"))

    # Instances: 3σ ellipsoids rotated by the wxyz quaternion.
    sigma = b.out(b.node("ShaderNodeCombineXYZ", {axis: b.math("EXPONENT", b.attr(f"scale_{i}"))
                                                  for i, axis in enumerate("XYZ")}))
    scale = b.vmath("SCALE", sigma, None, more={"Scale": b.math("MULTIPLY", b.out(group_in, SIZE_INPUT), 3.0)})
    rot = b.out(b.node("FunctionNodeQuaternionToRotation",
                       {k: b.attr(f"rot_{i}") for i, k in enumerate("WXYZ")}))
    shape = b.out(b.node("GeometryNodeMeshIcoSphere", {"Radius": 1.0, "Subdivisions": 1}), "Mesh")
    if material is not None:
        shape = b.out(b.node("GeometryNodeSetMaterial", {"Geometry": shape, "Material": material}))
    inst = b.node("GeometryNodeInstanceOnPoints", {"Points": points, "Instance": shape,
                                                   "Rotation": rot, "Scale": scale})
    group_out = b.node("NodeGroupOutput")
    tree.links.new(b.out(inst, "Instances"), group_out.inputs[0])
    return tree


def input_identifier(tree, name: str) -> str:
    """Identifier (``Socket_N``) of the group input called ``name``.

    Raises:
        KeyError: no such input.
    """
    for item in tree.interface.items_tree:
        if getattr(item, "in_out", None) == "INPUT" and item.name == name:
            return item.identifier
    raise KeyError(f"node group {tree.name!r} has no input {name!r}")
