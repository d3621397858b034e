"""The Geometry Nodes tree that plays a per-frame PLY sequence (Import PLY node on Blender ≥ 4.5,
per-frame meshes in an excluded collection on 4.2–4.4).

Group interface (look identifiers up with :func:`input_identifier`, never hard-code
``Socket_N``):

* ``Frame`` (float): clip frame index, 0-based. A fractional value blends positions
  linearly and rotations spherically (slerp, shorter arc; Mix node) between the two
  neighbouring frames (N and the order are fixed over time); everything else comes from
  the lower frame.
* ``Retime`` (int, keyable): what Frame does outside ``[0, T-1]``. 0 **hold**: clamped
  to the first / last frame; 1 **loop**: wrapped into ``[0, T)``, blending frame T−1
  into frame 0; 2 **ping-pong**: plays forward then backward (``pingpong(Frame, T−1)``).
* ``Splat Size`` (float, default 1): multiplier on the 3σ instance size.
* ``Opacity Threshold`` (float, default 0): splats with ``sigmoid(opacity)`` below it are
  removed (viewport and render).
* ``Viewport Display`` (factor, default 1): fraction of the splats drawn in the viewport
  (a fixed, seeded random subset); renders always draw every splat.
* input ``Geometry`` (the object's mesh): N points carrying the splat attributes that
  are the same in every frame (:mod:`.frame_split`: ``gen4d_rotation``, ``gen4d_color``,
  ``gen4d_alpha``, ``gen4d_scale``, ``gen4d_sh_<k>``, already converted from the PLY
  properties at import). The splats are instanced on these points, so constant
  attributes cost nothing per frame.
* the frame files (or frame meshes) hold ``x y z`` and the components of the attributes
  that change; the tree samples them by index onto the points: positions by Set Position,
  rotations straight into Instance on Points, anything else (rare) by Store Named
  Attribute.
* ``Camera-Facing Render`` (bool, default on): final renders draw each splat as its
  projected footprint facing the active camera (below); off, they draw the viewport's
  icospheres.
* output ``Geometry``: one instance per Gaussian, carrying the other attributes for the
  material (:func:`_splat_shapes`):

  - in the viewport: a subdivision-1 icosphere (radius 1) scaled by
    ``gen4d_scale·Splat Size`` (3σ half-axes) and rotated by ``gen4d_rotation``
    (w, x, y, z); its faces lie at 0.795 (2.38σ), and Cycles composites icospheres in the
    order their surfaces are hit along each ray, which departs from the rasterizer's
    centre-depth order where splats overlap (measured on the demo asset: Cycles vs the
    backend 32.56 dB, vs ground truth 1.1 dB below the backend's; an icosahedron enclosing
    3σ was worse, 31.31 dB);
  - in final renders (Cycles and Eevee, F12 or animation): a rectangle through the centre,
    parallel to the active camera's image plane, bounding the Gaussian's projected (EWA)
    footprint out to where its alpha reaches 1/255, as the rasterizers form it (demo:
    Cycles vs the backend 39.94 dB, vs ground truth 0.19 dB below the backend's). The
    rectangles face the scene's active camera, so a render from any other viewpoint
    (a stereo pair's second eye, reflections) sees them at an angle: turn Camera-Facing
    Render off there.

The file path is built from Frame inside the tree: ``frame + 10**W`` → Value to String
→ Slice String (drops the leading 1) → Replace String into a path template. The tree
never reads Scene Time; Frame is driven or keyframed from outside.
"""

from __future__ import annotations

import bpy

from .frame_split import ALPHA_ATTR, COLOR_ATTR, ROTATION_ATTR, SCALE_ATTR, SplatAttribute, sh_attribute
from .manifest import FRAME_TOKEN

__all__ = ["build_tree", "input_identifier", "sh_attribute", "COLOR_ATTR", "ALPHA_ATTR", "RETIME_MODES"]
FRAME_INPUT = "Frame"
SIZE_INPUT = "Splat Size"
RETIME_INPUT = "Retime"
OPACITY_THRESHOLD_INPUT = "Opacity Threshold"
VIEWPORT_FRACTION_INPUT = "Viewport Display"
CAMERA_FACING_INPUT = "Camera-Facing Render"
#: per-splat float: 0 on the viewport's icospheres; on the final render's camera-facing
#: rectangles the half-size in σ of the projected footprint (:func:`_splat_shapes`).
SQUARE_EXTENT_ATTR = "gen4d_square_extent"
#: largest half-size in σ: sqrt(2·ln 255), where an opaque Gaussian's alpha reaches the
#: rasterizers' 1/255 cut.
SQUARE_EXTENT_SIGMA = 3.3290
#: splats nearer the camera than this (metres, along its view axis) are not drawn in final
#: renders, the rasterizers' near plane.
NEAR_PLANE = 0.01
#: values of the Retime input.
RETIME_MODES = {"HOLD": 0, "LOOP": 1, "PING_PONG": 2}


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

    def attr(self, name, data_type="FLOAT"):
        """Field of the attribute ``name`` on the geometry it is evaluated on."""
        return self.out(self.node("GeometryNodeInputNamedAttribute", {"Name": name},
                                  data_type=data_type), "Attribute")

    def sample(self, geometry, value, data_type):
        """``value`` (a field on ``geometry``) at the same point index, as a field on the
        points being evaluated (the frame and the object's mesh share N and order)."""
        return self.out(self.node("GeometryNodeSampleIndex", {
            "Geometry": geometry, "Value": value, "Index": self.out(self.node("GeometryNodeInputIndex"))},
            data_type=data_type, domain="POINT"))


def _frame_path(b, frame, template, width):
    """String socket: ``template`` with FRAME_TOKEN replaced by ``frame`` zero-padded."""
    shifted = b.math("ADD", frame, float(10 ** width))
    text = b.out(b.node("FunctionNodeValueToString", {"Value": shifted, "Decimals": 0}))
    digits = b.out(b.node("FunctionNodeSliceString",
                          {"String": text, "Position": 1, "Length": width}))
    return b.out(b.node("FunctionNodeReplaceString",
                        {"String": template, "Find": FRAME_TOKEN, "Replace": digits}))


def _frame_attribute(b, attr: SplatAttribute):
    """Field: ``attr`` assembled from its per-component float columns on a frame geometry."""
    parts = [b.attr(column) for column in attr.columns]
    if attr.data_type == "FLOAT":
        return parts[0]
    if attr.data_type == "QUATERNION":
        return b.out(b.node("FunctionNodeQuaternionToRotation", dict(zip("WXYZ", parts))))
    return b.out(b.node("ShaderNodeCombineXYZ", dict(zip("XYZ", parts))))


def _field_switch(b, condition, data_type, if_false, if_true):
    """Switch node on fields; lazy, so the branch not taken (and the frame file only it
    reads) is never evaluated."""
    return b.out(b.node("GeometryNodeSwitch", {"Switch": condition, "False": if_false, "True": if_true},
                        input_type=data_type))


def _viewport_filter(b, points, alpha, threshold, fraction):
    """Delete splats with ``alpha < threshold`` and, in the viewport only, keep a fixed random
    ``fraction`` of them (a seeded per-index draw, so the same splats stay while scrubbing).
    Behind a lazy Switch: with the defaults (0, 1) nothing is evaluated."""
    is_viewport = b.out(b.node("GeometryNodeIsViewport"))
    thin = b.math("MULTIPLY", is_viewport, b.math("LESS_THAN", fraction, 1.0))
    active = b.math("MAXIMUM", b.math("GREATER_THAN", threshold, 0.0), thin)
    keep_draw = b.out(b.node("FunctionNodeRandomValue", {"Probability": fraction, "Seed": 7},
                             data_type="BOOLEAN"), "Value")
    dropped_draw = b.math("MULTIPLY", is_viewport, b.math("SUBTRACT", 1.0, keep_draw))
    drop = b.math("MAXIMUM", b.math("LESS_THAN", alpha, threshold), dropped_draw)
    drop_bool = b.out(b.node("FunctionNodeCompare", {"A": drop, "B": 0.5}, data_type="FLOAT",
                             operation="GREATER_THAN"))
    filtered = b.out(b.node("GeometryNodeDeleteGeometry", {"Geometry": points, "Selection": drop_bool},
                            domain="POINT"))
    use = b.out(b.node("FunctionNodeCompare", {"A": active, "B": 0.5}, data_type="FLOAT", operation="GREATER_THAN"))
    return b.out(b.node("GeometryNodeSwitch", {"Switch": use, "False": points, "True": filtered},
                        input_type="GEOMETRY"))


def _splat_shapes(b, points, rotation, scale, alpha, camera_facing):
    """The instance shape of every splat, its rotation and scale, and the point attribute
    :data:`SQUARE_EXTENT_ATTR` the material reads (see :mod:`.material`).

    * viewport (or ``camera_facing`` off): a radius-1 subdivision-1 icosphere rotated by the
      Gaussian's quaternion and scaled to its 3σ half-axes ``scale``; it looks right from any
      view, and the material evaluates the 3D Gaussian's maximum along each ray;
      :data:`SQUARE_EXTENT_ATTR` is 0;
    * final renders (Cycles, Eevee): the Gaussian's EWA footprint as the rasterizers form it
      (Zwicker et al. 2002; gsplat ``fully_fused_projection``, ``backend.render``): a
      rectangle in the plane through the centre parallel to the active camera's image plane,
      along the principal axes of the projected covariance ``Σ' = J·W·Σ·Wᵀ·Jᵀ`` (``W`` the
      camera rotation, ``J = [[1, 0, x/d], [0, 1, y/d]]`` the projection's Jacobian at the
      centre in plane units, ``(x, y, −d)`` the centre in camera coordinates), with
      half-sizes ``E·√λ₁``, ``E·√λ₂``, where ``E = √(2·ln(255·α))`` (≤ 3.33σ) is where the
      splat's alpha falls to the rasterizers' 1/255 cut. On a plane parallel to the image
      the plane → pixel map is a uniform scale, so the material's
      ``α·exp(−½·E²·(u² + v²))`` at the hit point ``(u, v)`` (the rectangle's own
      coordinates) *is* the rasterizer's 2D Gaussian at that pixel, and every ray meets the
      splats at the depths of their centres along the view axis, the order the rasterizers
      sort by. :data:`SQUARE_EXTENT_ATTR` holds ``E``.

    The camera is read relative to this object (its own transform may be anything without
    shear). Measured on the demo asset (benchmarks/blender_fidelity.py): the icosphere's
    surfaces order overlapping splats differently from the rasterizer along a ray, and its
    facets cut the Gaussian at 2.38σ; an icosahedron enclosing 3σ ordered worse
    (−1.25 dB); a 3.33σ camera-facing square of the largest axis rendered 15× slower and
    overran Cycles' 256 transparent bounces at grazing silhouettes (black patches).
    """
    is_viewport = b.out(b.node("GeometryNodeIsViewport"))
    not_viewport = b.out(b.node("FunctionNodeBooleanMath", {0: is_viewport}, operation="NOT"))
    facing = b.out(b.node("FunctionNodeBooleanMath", {0: not_viewport, 1: camera_facing}, operation="AND"))
    camera = b.node("GeometryNodeObjectInfo", {"Object": b.out(b.node("GeometryNodeInputActiveCamera"))},
                    transform_space="RELATIVE")
    cam_rotation, cam_location = b.out(camera, "Rotation"), b.out(camera, "Location")
    to_camera = b.out(b.node("FunctionNodeInvertRotation", {"Rotation": cam_rotation}))

    def rotate(vector, by):
        return b.out(b.node("FunctionNodeRotateVector", {"Vector": vector, "Rotation": by}))

    def xyz(vector):
        parts = b.node("ShaderNodeSeparateXYZ", {"Vector": vector})
        return b.out(parts, "X"), b.out(parts, "Y"), b.out(parts, "Z")

    # centre in camera coordinates: (x, y, −d); Jacobian terms x/d, y/d
    cx, cy, cz = xyz(rotate(b.vmath("SUBTRACT", b.out(b.node("GeometryNodeInputPosition")), cam_location), to_camera))
    depth = b.math("MAXIMUM", b.math("MULTIPLY", cz, -1.0), 1e-6)
    gx, gy = b.math("DIVIDE", cx, depth), b.math("DIVIDE", cy, depth)
    # the Gaussian's σ-scaled axes in camera coordinates, projected: p_i = J·W·R·σ_i·e_i
    to_camera_frame = b.out(b.node("FunctionNodeRotateRotation", {"Rotation": rotation, "Rotate By": to_camera},
                                   rotation_space="GLOBAL"))
    sx, sy, sz = xyz(b.vmath("SCALE", scale, None, more={"Scale": 1.0 / 3.0}))
    zero = 0.0
    projected = []
    for axis in (b.out(b.node("ShaderNodeCombineXYZ", {"X": sx, "Y": zero, "Z": zero})),
                 b.out(b.node("ShaderNodeCombineXYZ", {"X": zero, "Y": sy, "Z": zero})),
                 b.out(b.node("ShaderNodeCombineXYZ", {"X": zero, "Y": zero, "Z": sz}))):
        ax, ay, az = xyz(rotate(axis, to_camera_frame))
        projected.append((b.math("ADD", ax, b.math("MULTIPLY", az, gx)), b.math("ADD", ay, b.math("MULTIPLY", az, gy))))

    def total(terms):
        out = terms[0]
        for term in terms[1:]:
            out = b.math("ADD", out, term)
        return out

    cov_xx = total([b.math("MULTIPLY", u, u) for u, _ in projected])
    cov_xy = total([b.math("MULTIPLY", u, v) for u, v in projected])
    cov_yy = total([b.math("MULTIPLY", v, v) for _, v in projected])
    half_diff = b.math("MULTIPLY", b.math("SUBTRACT", cov_xx, cov_yy), 0.5)
    radius = b.math("SQRT", b.math("ADD", b.math("MULTIPLY", half_diff, half_diff), b.math("MULTIPLY", cov_xy, cov_xy)))
    mean = b.math("MULTIPLY", b.math("ADD", cov_xx, cov_yy), 0.5)
    major = b.math("SQRT", b.math("MAXIMUM", b.math("ADD", mean, radius), 1e-20))
    minor = b.math("SQRT", b.math("MAXIMUM", b.math("SUBTRACT", mean, radius), 1e-20))
    angle = b.math("MULTIPLY", b.math("ARCTAN2", b.math("MULTIPLY", cov_xy, 2.0),
                                      b.math("SUBTRACT", cov_xx, cov_yy)), 0.5)
    in_plane = b.out(b.node("FunctionNodeEulerToRotation", {
        "Euler": b.out(b.node("ShaderNodeCombineXYZ", {"X": zero, "Y": zero, "Z": angle}))}))
    square_rotation = b.out(b.node("FunctionNodeRotateRotation", {"Rotation": in_plane, "Rotate By": cam_rotation},
                                   rotation_space="GLOBAL"))
    # E = sqrt(2 ln(255 α)), in [1e-3, 3.329]: where alpha reaches 1/255
    log_term = b.math("MULTIPLY", b.math("LOGARITHM", b.math("MAXIMUM", b.math("MULTIPLY", alpha, 255.0), 1.0),
                                         2.718281828459045), 2.0)
    extent = b.math("MINIMUM", b.math("MAXIMUM", b.math("SQRT", log_term), 1e-3), SQUARE_EXTENT_SIGMA)
    # splats closer than the rasterizers' near plane (0.01 m) or behind the camera are culled
    # (zero size), as gsplat and backend.render do
    visible = b.math("GREATER_THAN", b.math("MULTIPLY", cz, -1.0), NEAR_PLANE)
    size = b.math("MULTIPLY", extent, visible)
    square_scale = b.out(b.node("ShaderNodeCombineXYZ", {"X": b.math("MULTIPLY", size, major),
                                                         "Y": b.math("MULTIPLY", size, minor), "Z": 1.0}))
    points = b.out(b.node("GeometryNodeStoreNamedAttribute", {
        "Geometry": points, "Name": SQUARE_EXTENT_ATTR, "Value": _field_switch(b, facing, "FLOAT", 0.0, extent)},
        data_type="FLOAT", domain="POINT"))
    ico = b.out(b.node("GeometryNodeMeshIcoSphere", {"Radius": 1.0, "Subdivisions": 1}), "Mesh")
    square = b.out(b.node("GeometryNodeMeshGrid", {"Size X": 2.0, "Size Y": 2.0, "Vertices X": 2, "Vertices Y": 2}),
                   "Mesh")
    shape = b.out(b.node("GeometryNodeSwitch", {"Switch": facing, "False": ico, "True": square},
                         input_type="GEOMETRY"))
    return (points, shape, _field_switch(b, facing, "ROTATION", rotation, square_rotation),
            _field_switch(b, facing, "VECTOR", scale, square_scale))


def _index_switch(b, index, data_type, values):
    """Index Switch node: ``values[index]`` (clamped to the last item by Blender when out of range)."""
    node = b.tree.nodes.new("GeometryNodeIndexSwitch")
    node.data_type = data_type
    while len(node.index_switch_items) < len(values):
        node.index_switch_items.new()
    b.tree.links.new(index, node.inputs[0])
    for i, value in enumerate(values):
        b.tree.links.new(value, node.inputs[i + 1])
    return b.out(node)


def _collection_frame(b, info, index):
    """Geometry socket: the realized ``index``-th instance of ``info`` (a Collection Info
    output with separated children, sorted by name, which is why frame objects have
    zero-padded names)."""
    other = b.out(b.node("FunctionNodeCompare", {"A": b.out(b.node("GeometryNodeInputIndex")), "B": index},
                         data_type="INT", operation="NOT_EQUAL"))
    one = b.out(b.node("GeometryNodeDeleteGeometry", {"Geometry": info, "Selection": other}, domain="INSTANCE"))
    return b.out(b.node("GeometryNodeRealizeInstances", {"Geometry": one}))


def build_tree(name: str, template: str, frame_count: int, width: int,
               material, dynamic: "list[SplatAttribute]" = (),
               frames_collection=None) -> "bpy.types.GeometryNodeTree":
    """Create the player node group.

    Args:
        name: node group name (Blender may add a suffix).
        template: cache file path with :data:`FRAME_TOKEN` where the zero-padded frame
            number goes, e.g. ``//gen4d_cache/asset/frame_@FRAME@.ply``.
        frame_count: ``T``; Frame is held, looped or ping-ponged into ``[0, T-1]``
            by the Retime input.
        width: digits of the zero-padded frame number.
        material: material put on the splat instances (or None).
        dynamic: the splat attributes that change over time (:class:`.frame_split.SplitFrames`
            ``.dynamic``), read from the frame files; every other attribute is a point
            attribute of the modifier's input geometry (the object's mesh).
        frames_collection: Blender 4.2–4.4 playback (no Import PLY node): a collection of
            one mesh object per frame, named in frame order; the tree picks frames from it
            instead of reading ``template`` files.
    """
    if FRAME_TOKEN in template.replace(FRAME_TOKEN, "", 1):
        raise ValueError(f"path template {template!r} contains {FRAME_TOKEN!r} twice")
    tree = bpy.data.node_groups.new(name, "GeometryNodeTree")
    iface = tree.interface
    iface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    iface.new_socket(FRAME_INPUT, in_out="INPUT", socket_type="NodeSocketFloat")
    size = iface.new_socket(SIZE_INPUT, in_out="INPUT", socket_type="NodeSocketFloat")
    size.default_value, size.min_value = 1.0, 0.0
    retime = iface.new_socket(RETIME_INPUT, in_out="INPUT", socket_type="NodeSocketInt")
    retime.default_value, retime.min_value, retime.max_value = RETIME_MODES["HOLD"], 0, len(RETIME_MODES) - 1
    retime.description = "0 hold, 1 loop, 2 ping-pong: what Frame does outside the clip"
    threshold = iface.new_socket(OPACITY_THRESHOLD_INPUT, in_out="INPUT", socket_type="NodeSocketFloat")
    threshold.default_value, threshold.min_value, threshold.max_value = 0.0, 0.0, 1.0
    threshold.description = "Hide splats whose opacity is below this (viewport and render)"
    fraction = iface.new_socket(VIEWPORT_FRACTION_INPUT, in_out="INPUT", socket_type="NodeSocketFloat")
    fraction.default_value, fraction.min_value, fraction.max_value = 1.0, 0.0, 1.0
    fraction.subtype = "FACTOR"
    fraction.description = "Fraction of the splats drawn in the viewport (renders draw all)"
    facing_in = iface.new_socket(CAMERA_FACING_INPUT, in_out="INPUT", socket_type="NodeSocketBool")
    facing_in.default_value = True
    facing_in.description = ("Final renders draw each splat as a square facing the active camera, composited "
                             "in the fitted order; off: the viewport's ellipsoid meshes")
    iface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    b = _Builder(tree)
    group_in = b.node("NodeGroupInput")
    last = float(frame_count - 1)
    count = float(frame_count)

    raw = b.out(group_in, FRAME_INPUT)
    mode = b.out(group_in, RETIME_INPUT)
    held = b.out(b.node("ShaderNodeClamp", {"Value": raw, "Min": 0.0, "Max": last}))
    looped = b.out(b.node("ShaderNodeMath", {0: raw, 1: count, 2: 0.0}, operation="WRAP"))
    ponged = b.math("PINGPONG", raw, last)
    frame = _index_switch(b, mode, "FLOAT", [held, looped, ponged])
    fa = b.math("FLOOR", frame)
    weight = b.math("SUBTRACT", frame, fa)
    next_held = b.math("MINIMUM", b.math("ADD", fa, 1.0), last)
    next_looped = b.out(b.node("ShaderNodeMath", {0: b.math("ADD", fa, 1.0), 1: count, 2: 0.0},
                               operation="WRAP"))
    fb = _index_switch(b, mode, "FLOAT", [next_held, next_looped, next_held])
    if frames_collection is None:
        geo_a = b.out(b.node("GeometryNodeImportPLY", {"Path": _frame_path(b, fa, template, width)}))
        geo_b = b.out(b.node("GeometryNodeImportPLY", {"Path": _frame_path(b, fb, template, width)}))
    else:
        info = b.out(b.node("GeometryNodeCollectionInfo", {"Collection": frames_collection, "Separate Children": True,
                                                           "Reset Children": True}, transform_space="ORIGINAL"))
        geo_a = _collection_frame(b, info, fa)  # one Collection Info feeds both neighbours
        geo_b = _collection_frame(b, info, fb)

    # The splats sit on the object's mesh, which holds the constant attributes. Frame a
    # gives positions (and whatever else changes); a fractional Frame lerps positions and
    # slerps rotations with frame b (same N and order). The switches are lazy, so frame b
    # is not even read when the weight is 0.
    is_frac = b.out(b.node("FunctionNodeCompare", {"A": weight, "B": 0.0},
                           data_type="FLOAT", operation="GREATER_THAN"))
    position = b.out(b.node("GeometryNodeInputPosition"))
    pos_a = b.sample(geo_a, position, "FLOAT_VECTOR")
    mixed = b.out(b.node("ShaderNodeMix", {"Factor": weight, "A": pos_a,
                                           "B": b.sample(geo_b, position, "FLOAT_VECTOR")}, data_type="VECTOR"))
    points = b.out(b.node("GeometryNodeSetPosition", {
        "Geometry": b.out(group_in, "Geometry"),
        "Position": _field_switch(b, is_frac, "VECTOR", pos_a, mixed)}))
    rotation = b.attr(ROTATION_ATTR, "QUATERNION")
    for attr in dynamic:
        if attr.name == ROTATION_ATTR:
            rot_a, rot_b = (b.sample(g, _frame_attribute(b, attr), "QUATERNION") for g in (geo_a, geo_b))
            slerp = b.out(b.node("ShaderNodeMix", {"Factor": weight, "A": rot_a, "B": rot_b},
                                 data_type="ROTATION"))  # spherical, along the shorter arc
            rotation = _field_switch(b, is_frac, "ROTATION", rot_a, slerp)
            continue
        points = b.out(b.node("GeometryNodeStoreNamedAttribute", {
            "Geometry": points, "Name": attr.name,
            "Value": b.sample(geo_a, _frame_attribute(b, attr), attr.data_type)},
            data_type=attr.data_type, domain="POINT"))

    points = _viewport_filter(b, points, b.attr(ALPHA_ATTR), b.out(group_in, OPACITY_THRESHOLD_INPUT),
                              b.out(group_in, VIEWPORT_FRACTION_INPUT))

    scale = b.vmath("SCALE", b.attr(SCALE_ATTR, "FLOAT_VECTOR"), None,
                    more={"Scale": b.out(group_in, SIZE_INPUT)})
    points, shape, inst_rotation, inst_scale = _splat_shapes(
        b, points, rotation, scale, b.attr(ALPHA_ATTR), b.out(group_in, CAMERA_FACING_INPUT))
    if material is not None:
        shape = b.out(b.node("GeometryNodeSetMaterial", {"Geometry": shape, "Material": material}))
    inst = b.node("GeometryNodeInstanceOnPoints", {"Points": points, "Instance": shape,
                                                   "Rotation": inst_rotation, "Scale": inst_scale})
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
