"""Import a gen4d result folder as one animated Gaussian object.

Headless-safe: uses only ``bpy.data`` (no operators, no context overrides), so plain
``bpy`` scripts, the demo and the tests can call :func:`import_result` directly.
"""

from __future__ import annotations

import os
from pathlib import Path

import bpy

from . import manifest as _manifest
from .frame_split import splat_attributes, split_frames
from .material import build_material
from .nodes import FRAME_INPUT, SIZE_INPUT, build_tree, input_identifier

MODIFIER_NAME = "gen4d"
MIN_VERSION = (4, 2, 0)
#: First version with the Import PLY geometry node; older ones play per-frame meshes.
PLY_NODE_VERSION = (4, 5, 0)
PLAYBACK_MODES = ("auto", "ply_node", "meshes")

__all__ = ["import_result", "import_ply_sequence", "import_manifest", "frame_data_path", "evaluated_centres",
           "FRAME_INPUT", "SIZE_INPUT", "MODIFIER_NAME"]


def _default_cache_dir(name: str) -> tuple[Path, str]:
    """(absolute dir, dir as written in the node tree) for an object called ``name``."""
    if bpy.data.filepath:
        rel = f"//gen4d_cache/{bpy.path.clean_name(name)}/"
        return Path(bpy.path.abspath(rel)), rel
    import tempfile
    path = Path(tempfile.gettempdir()) / "gen4d_cache" / bpy.path.clean_name(name)
    return path, path.as_posix() + "/"


def import_result(result_dir, name: str = "gen4d_asset", cache_dir=None,
                  collection=None, start_frame: int | None = None, playback: str = "auto") -> "bpy.types.Object":
    """Import a gen4d result folder as one object that plays the per-frame PLYs.

    The frames are converted to splat attributes (:mod:`.frame_split`); lean per-frame
    files (``x y z`` plus the attributes that change over time) are written into a cache
    folder as ``frame_<i>.ply``, and the constant attributes become point attributes of
    the object's mesh. The cache folder is
    ``cache_dir`` when given (used as an absolute path), else ``//gen4d_cache/<object
    name>/`` beside the saved .blend (stored relative), else a temp folder for an unsaved
    file. The object (a mesh of N vertices holding the constant properties) gets a
    Geometry Nodes modifier named ``gen4d`` whose float input **Frame** selects the clip frame (0-based, clamped to [0, T−1],
    fractional values blend positions). By default a driver sets
    ``Frame = scene frame − start_frame`` (``start_frame`` defaults to the scene's
    ``frame_start``); remove it and keyframe Frame to retime (:func:`frame_data_path`).
    The scene's render settings are never changed.

    Args:
        result_dir: folder with ``manifest.json`` and the frame PLYs (world frame: Blender,
            Z up, metres).
        name: object name (Blender may add a suffix; the cache folder follows the
            final name).
        cache_dir: optional cache folder.
        collection: collection to link into (default: the scene collection).
        start_frame: scene frame that shows clip frame 0.
        playback: "auto", "ply_node" or "meshes" (see :func:`import_manifest`).

    Returns:
        the new object. Custom properties ``gen4d_frame_count``, ``gen4d_fps`` and
        ``gen4d_cache_dir`` describe it.

    Raises:
        FileNotFoundError / ValueError: not a valid result folder (see
            :func:`manifest.read_manifest`).
        RuntimeError: Blender older than 4.2 (see :func:`import_manifest` for ``playback``).
    """
    return import_manifest(_manifest.read_manifest(result_dir), name, cache_dir, collection, start_frame, playback)


def import_ply_sequence(path, name: str = "gaussian_sequence", fps: float = 24.0, cache_dir=None,
                        collection=None, start_frame: int | None = None) -> "bpy.types.Object":
    """Import a numbered per-frame 3DGS PLY sequence from any tool (see
    :func:`manifest.sequence_manifest`) exactly like a gen4d result.

    Raises:
        FileNotFoundError / ValueError: no sequence at ``path``, unreadable frames, or
            frames with different Gaussian counts.
        RuntimeError: Blender older than 4.2.
    """
    return import_manifest(_manifest.sequence_manifest(path, fps), name, cache_dir, collection, start_frame)


def import_manifest(info, name: str = "gen4d_asset", cache_dir=None, collection=None,
                    start_frame: int | None = None, playback: str = "auto") -> "bpy.types.Object":
    """Import the frames of a :class:`manifest.ResultManifest` (see :func:`import_result`).

    ``playback``: ``"ply_node"`` reads the cache files with the Import PLY geometry node
    (Blender ≥ 4.5); ``"meshes"`` stores one mesh per frame in an excluded collection
    ``<name>_frames`` (zero-padded names, picked by index with Collection Info), the
    Blender 4.2–4.4 path; ``"auto"`` picks by version.

    Raises:
        RuntimeError: Blender older than 4.2, or ``"ply_node"`` before 4.5.
        ValueError: unknown ``playback``; unreadable or inconsistent frames.
    """
    if playback not in PLAYBACK_MODES:
        raise ValueError(f"playback must be one of {PLAYBACK_MODES}, got {playback!r}")
    if bpy.app.version < MIN_VERSION:
        raise RuntimeError(f"gen4d import needs Blender 4.2 or newer; this is {bpy.app.version_string}")
    if playback == "auto":
        playback = "ply_node" if bpy.app.version >= PLY_NODE_VERSION else "meshes"
    if playback == "ply_node" and bpy.app.version < PLY_NODE_VERSION:
        raise RuntimeError("the Import PLY geometry node needs Blender 4.5; use playback='meshes'")
    scene = bpy.context.scene
    frames_collection = None
    mesh = bpy.data.meshes.new(name)
    obj = bpy.data.objects.new(name, mesh)
    (collection or scene.collection).objects.link(obj)
    try:
        if cache_dir is not None:
            cache_abs = Path(cache_dir).resolve()
            cache_text = cache_abs.as_posix() + "/"
        else:
            cache_abs, cache_text = _default_cache_dir(obj.name)
        width = _manifest.pad_width(info.frame_count)
        cache_abs.mkdir(parents=True, exist_ok=True)
        split = split_frames(info.frame_files, [cache_abs / _manifest.cache_file_name(i, width)
                                                for i in range(info.frame_count)])
        _fill_static_mesh(mesh, split)
        if playback == "meshes":
            frames_collection = _frame_meshes(obj.name, split, width, scene)
        template = cache_text + "frame_" + _manifest.FRAME_TOKEN + ".ply"
        material = build_material(f"{obj.name}_splat", sh_degree=split.sh_degree)
        tree = build_tree(f"{obj.name}_player", template, info.frame_count, width, material,
                          dynamic=split.dynamic, frames_collection=frames_collection)
        mesh.materials.append(material)
        mod = obj.modifiers.new(MODIFIER_NAME, "NODES")
        mod.node_group = tree
    except Exception:
        if frames_collection is not None:
            for child in list(frames_collection.objects):
                child_mesh = child.data
                bpy.data.objects.remove(child)
                bpy.data.meshes.remove(child_mesh)
            bpy.data.collections.remove(frames_collection)
        bpy.data.objects.remove(obj)
        bpy.data.meshes.remove(mesh)
        raise
    obj["gen4d_playback"] = playback
    obj["gen4d_sh_degree"] = split.sh_degree
    obj["gen4d_image_formation"] = getattr(info, "image_formation", "3dgs")
    obj["gen4d_frame_count"] = info.frame_count
    obj["gen4d_fps"] = info.fps
    obj["gen4d_cache_dir"] = cache_text
    start = scene.frame_start if start_frame is None else int(start_frame)
    fcurve = obj.driver_add(frame_data_path(obj))
    fcurve.driver.type = "SCRIPTED"
    fcurve.driver.expression = f"frame - {start}"  # a simple expression: no Python needed
    return obj


def _frame_meshes(name: str, split, width: int, scene) -> "bpy.types.Collection":
    """One mesh object per frame (positions + the lean cache columns as float point attributes,
    ``foreach_set`` from float32) in a new collection excluded from every view layer, named
    ``<name>_frame_<i>`` zero-padded so Collection Info lists them in frame order."""
    import numpy as np

    from .frame_split import POSITION, read_vertices

    collection = bpy.data.collections.new(f"{name}_frames")
    scene.collection.children.link(collection)
    for view_layer in scene.view_layers:
        layer = view_layer.layer_collection.children.get(collection.name)
        if layer is not None:
            layer.exclude = True
    columns = split.cache_columns[len(POSITION):]
    for i, path in enumerate(split.cache_files):
        v = read_vertices(path)
        frame_mesh = bpy.data.meshes.new(f"{name}_frame_{i:0{width}d}")
        frame_mesh.vertices.add(len(v))
        frame_mesh.vertices.foreach_set("co", np.stack([v[p] for p in POSITION], -1).astype(np.float32).ravel())
        for column in columns:
            frame_mesh.attributes.new(column, "FLOAT", "POINT").data.foreach_set(
                "value", np.ascontiguousarray(v[column], dtype=np.float32))
        collection.objects.link(bpy.data.objects.new(frame_mesh.name, frame_mesh))
    return collection


def _fill_static_mesh(mesh, split) -> None:
    """Give ``mesh`` N vertices at frame 0's positions carrying the constant splat
    attributes (:mod:`.frame_split`) as point attributes of their own types
    (``foreach_set`` from contiguous float32; no per-point loops)."""
    import numpy as np

    mesh.vertices.add(split.count)
    mesh.vertices.foreach_set("co", np.ascontiguousarray(split.positions).ravel())
    kinds = {attr.name: attr.data_type for attr in splat_attributes(split.sh_degree)}
    for name, values in split.static.items():
        kind = kinds[name]
        if kind == "FLOAT_COLOR":  # RGBA, opaque
            values = np.concatenate([values, np.ones((len(values), 1), np.float32)], 1)
        key = {"FLOAT_COLOR": "color", "FLOAT_VECTOR": "vector"}.get(kind, "value")
        mesh.attributes.new(name, kind, "POINT").data.foreach_set(key, np.ascontiguousarray(values, np.float32).ravel())
    mesh.update()


def frame_data_path(obj, input_name: str = FRAME_INPUT) -> str:
    """Data path (relative to ``obj``) of the modifier input ``input_name``.

    Use it with ``obj.driver_remove(path)`` / ``obj.keyframe_insert(path, frame=...)``.

    Raises:
        KeyError: ``obj`` has no gen4d modifier or no such input.
    """
    mod = obj.modifiers.get(MODIFIER_NAME)
    if mod is None or mod.node_group is None:
        raise KeyError(f"{obj.name!r} has no {MODIFIER_NAME!r} geometry nodes modifier")
    ident = input_identifier(mod.node_group, input_name)
    return f'modifiers["{MODIFIER_NAME}"]["{ident}"]'


def evaluated_centres(obj, depsgraph=None):
    """Gaussian centres of the evaluated object as a float32 ``[N, 3]`` array (metres,
    object space): the translations of the splat instances' ``instance_transform``
    (column-major 4×4), read with ``foreach_get``. Before Blender 4.5 (no
    ``evaluated_geometry``) it walks ``depsgraph.object_instances`` instead: an inspection
    helper for tests and scripts, not used by import or playback."""
    import numpy as np
    depsgraph = depsgraph or bpy.context.evaluated_depsgraph_get()
    evaluated = obj.evaluated_get(depsgraph)
    if not hasattr(evaluated, "evaluated_geometry"):  # Blender < 4.5: walk the depsgraph's instances
        inverse = obj.matrix_world.inverted()
        rows = [(inverse @ inst.matrix_world).translation[:] for inst in depsgraph.object_instances
                if inst.is_instance and inst.parent is not None and inst.parent.original == obj.original]
        return np.asarray(rows, np.float32).reshape(-1, 3)
    geometry = evaluated.evaluated_geometry()
    cloud = geometry.instances_pointcloud()
    if cloud is None or len(cloud.points) == 0:  # 4.5 gives an empty cloud without the attribute
        return np.zeros((0, 3), np.float32)
    matrices = np.empty(len(cloud.points) * 16, np.float32)
    cloud.attributes["instance_transform"].data.foreach_get("value", matrices)
    return np.ascontiguousarray(matrices.reshape(-1, 16)[:, 12:15])
