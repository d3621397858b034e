"""Capture the selected animated object as multi-view footage, so any Blender animation can
become a 4D Gaussian asset.

The object's animation is rendered from N cameras spread over a sphere around it (a
golden-angle spiral between −10° and +50° elevation, every camera at every scene frame)
and written in the transforms format the backend reads (``transforms_train.json``:
``camera_angle_x``, frames with ``file_path``, ``transform_matrix`` = the camera's
``matrix_world`` (Blender c2w), ``time`` = i / (T − 1) over the captured frames), then it
is submitted as a footage job.

Rendering goes through ``bpy.ops.render.render`` with the scene's own lights and engine
(or one chosen for the capture). Everything the capture changes is put back afterwards,
also when it fails or is cancelled: render size, film transparency, view transform, output
format, the scene camera, the current frame, and ``hide_render`` of the other objects
(which are hidden so only the selection is captured). The camera it uses is removed.

:func:`iter_capture` yields after every image, so the modal operator renders one image
per timer tick and Blender stays responsive (progress in the panel, Esc cancels); the
same generator runs to completion in scripts and tests (:func:`capture_footage`).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import bpy
from mathutils import Matrix, Vector

from . import panel_state

#: Elevation band of the capture cameras, degrees.
ELEVATION_MIN_DEG, ELEVATION_MAX_DEG = -10.0, 50.0
#: Horizontal field of view of the capture camera, degrees.
CAPTURE_FOV_DEG = 40.0
#: The object's bounding sphere fills at most this fraction of the half-frame.
FILL = 0.8

ENGINES = [("SCENE", "Scene's Engine", "Render with the scene's render engine"),
           ("CYCLES", "Cycles", "Render with Cycles"),
           ("EEVEE", "Eevee", "Render with Eevee"),
           ("WORKBENCH", "Workbench", "Fast solid shading (no lighting); for quick tests")]


def spiral_directions(count: int) -> list[Vector]:
    """``count`` unit vectors on a golden-angle spiral, uniform in sin(elevation) between
    :data:`ELEVATION_MIN_DEG` and :data:`ELEVATION_MAX_DEG` (Blender world frame, Z up)."""
    golden = math.pi * (3.0 - math.sqrt(5.0))
    s0, s1 = math.sin(math.radians(ELEVATION_MIN_DEG)), math.sin(math.radians(ELEVATION_MAX_DEG))
    directions = []
    for i in range(count):
        z = s0 + (s1 - s0) * (i + 0.5) / count
        ring = math.sqrt(max(0.0, 1.0 - z * z))
        directions.append(Vector((ring * math.cos(i * golden), ring * math.sin(i * golden), z)))
    return directions


def look_at(eye: Vector, target: Vector) -> Matrix:
    """``matrix_world`` of a camera at ``eye`` looking at ``target`` (camera −Z forward, +Y up
    as close to world +Z as possible)."""
    rotation = (target - eye).to_track_quat("-Z", "Y")
    return Matrix.Translation(eye) @ rotation.to_matrix().to_4x4()


def captured_objects(obj) -> list:
    """``obj`` and all its descendants (what the capture keeps visible)."""
    return [obj, *obj.children_recursive]


def animation_bounds(scene, objects, frames) -> tuple[Vector, float]:
    """Centre and radius (m) of a sphere holding the evaluated bounding boxes of ``objects``
    at every frame of ``frames`` (world space). Changes the current frame.

    Raises:
        ValueError: no object has geometry.
    """
    points = []
    for frame in frames:
        scene.frame_set(frame)
        depsgraph = bpy.context.evaluated_depsgraph_get()
        for obj in objects:
            evaluated = obj.evaluated_get(depsgraph)
            if obj.type in {"MESH", "CURVE", "SURFACE", "META", "FONT", "CURVES", "POINTCLOUD", "VOLUME"}:
                points.extend(evaluated.matrix_world @ Vector(corner) for corner in evaluated.bound_box)
    if not points:
        raise ValueError("the selection has no geometry to capture")
    lo = Vector(tuple(min(p[i] for p in points) for i in range(3)))
    hi = Vector(tuple(max(p[i] for p in points) for i in range(3)))
    centre = (lo + hi) / 2
    return centre, max(max((p - centre).length for p in points), 1e-3)


class _Restorer:
    """Records attribute values before changing them and puts them back in reverse order."""

    def __init__(self):
        self._saved: list[tuple[object, str, object]] = []

    def set(self, owner, attr: str, value) -> None:
        self._saved.append((owner, attr, getattr(owner, attr)))
        setattr(owner, attr, value)

    def restore(self) -> None:
        for owner, attr, value in reversed(self._saved):
            try:
                setattr(owner, attr, value)
            except (ReferenceError, AttributeError, TypeError, ValueError):
                pass  # the owner was deleted meanwhile; nothing left to restore
        self._saved.clear()


def _eevee_engine_id() -> str:
    return "BLENDER_EEVEE_NEXT" if bpy.app.version < (5, 0, 0) else "BLENDER_EEVEE"


def held_out_directions(count: int, n_cameras: int) -> list[Vector]:
    """``count`` directions for held-out (test) cameras: a spiral of ``count`` turned by half
    the mean azimuth gap of an ``n_cameras`` spiral, so they fall between training cameras."""
    turn = Matrix.Rotation(math.pi / max(n_cameras, 1), 3, "Z")
    return [turn @ d for d in spiral_directions(count)]


def iter_capture(scene, obj, out_dir, n_cameras: int = 16, frame_step: int = 1, size: int = 256,
                 engine: str = "SCENE", samples: int = 32, n_test: int = 0):
    """Render ``obj``'s animation from ``n_cameras`` cameras into transforms footage.

    A generator: yields ``(done, total)`` after each image; when exhausted,
    ``out_dir/transforms_train.json`` exists. Closing it early (``.close()``) stops the
    capture; the scene is restored in every case.

    Args:
        scene: the scene to render (its frame range, lights and world are used).
        obj: the animated object; its descendants are captured with it.
        out_dir: output folder (created): ``transforms_train.json`` and ``train/c<cam>_t<time>.png``.
        n_cameras: cameras on the spiral (≥ 2).
        frame_step: capture every ``frame_step``-th scene frame from ``frame_start`` to
            ``frame_end`` (at least 2 frames).
        size: square image side in pixels.
        engine: a key of :data:`ENGINES`.
        samples: Cycles samples (when rendering with Cycles).
        n_test: extra held-out cameras (:func:`held_out_directions`) written to
            ``transforms_test.json`` and ``test/``, for measuring a reconstruction.

    Raises:
        ValueError: fewer than 2 cameras or frames, or no geometry in the selection.
    """
    if n_cameras < 2:
        raise ValueError("capture needs at least 2 cameras")
    frames = list(range(scene.frame_start, scene.frame_end + 1, max(1, int(frame_step))))
    if len(frames) < 2:
        raise ValueError(f"capture needs at least 2 frames; the scene range {scene.frame_start}-"
                         f"{scene.frame_end} with step {frame_step} gives {len(frames)}")
    out_dir = Path(out_dir)
    (out_dir / "train").mkdir(parents=True, exist_ok=True)
    keep = {o.name for o in captured_objects(obj)}
    restorer = _Restorer()
    camera_data = bpy.data.cameras.new("gen4d_capture_camera")
    camera = bpy.data.objects.new("gen4d_capture_camera", camera_data)
    frame_before = scene.frame_current
    try:
        centre, radius = animation_bounds(scene, [bpy.data.objects[n] for n in keep], frames)
        scene.collection.objects.link(camera)
        camera_data.sensor_fit = "HORIZONTAL"
        camera_data.angle = math.radians(CAPTURE_FOV_DEG)
        distance = radius / (FILL * math.sin(math.radians(CAPTURE_FOV_DEG) / 2))
        camera_data.clip_start, camera_data.clip_end = distance * 0.01, distance * 4.0
        render = scene.render
        if engine == "CYCLES":
            restorer.set(render, "engine", "CYCLES")
        elif engine == "EEVEE":
            restorer.set(render, "engine", _eevee_engine_id())
        elif engine == "WORKBENCH":
            restorer.set(render, "engine", "BLENDER_WORKBENCH")
        if render.engine == "CYCLES":
            restorer.set(scene.cycles, "samples", int(samples))
        for attr, value in (("resolution_x", size), ("resolution_y", size), ("resolution_percentage", 100),
                            ("pixel_aspect_x", 1.0), ("pixel_aspect_y", 1.0), ("film_transparent", True),
                            ("use_compositing", False), ("use_sequencer", False)):
            restorer.set(render, attr, value)
        restorer.set(render.image_settings, "file_format", "PNG")
        restorer.set(render.image_settings, "color_mode", "RGBA")
        restorer.set(render.image_settings, "color_depth", "8")
        restorer.set(scene.view_settings, "view_transform", "Standard")
        restorer.set(scene.view_settings, "look", "None")
        restorer.set(scene, "camera", camera)
        for other in scene.objects:
            if other.name not in keep and other is not camera and other.type not in {"LIGHT", "CAMERA"}:
                restorer.set(other, "hide_render", True)
        views = [("train", ci, look_at(centre + d * distance, centre))
                 for ci, d in enumerate(spiral_directions(n_cameras))]
        views += [("test", ci, look_at(centre + d * distance, centre))
                  for ci, d in enumerate(held_out_directions(n_test, n_cameras))]
        if n_test:
            (out_dir / "test").mkdir(exist_ok=True)
        records = {"train": [], "test": []}
        total, done = len(frames) * len(views), 0
        formats = _formats()
        times = formats.frame_times(len(frames))
        for ti, frame in enumerate(frames):
            scene.frame_set(frame)
            t = times[ti]
            for split, ci, matrix in views:
                camera.matrix_world = matrix
                rel = f"{split}/c{ci:03d}_t{ti:03d}"
                render.filepath = str(out_dir / f"{rel}.png")
                bpy.ops.render.render(write_still=True, scene=scene.name)
                records[split].append(formats.frame_record(f"./{rel}", [list(row) for row in matrix], t,
                                                           camera_index=ci, time_index=ti))
                done += 1
                yield done, total
        meta = {"source": "blender_capture", "object": obj.name, "scene_frames": frames,
                "fps": scene.render.fps / scene.render.fps_base / max(1, int(frame_step)),
                "centre": list(centre), "radius": radius, "blender": bpy.app.version_string}
        for split in ("train", "test") if n_test else ("train",):
            formats.write_transforms(out_dir / formats.transforms_file_name(split), records[split],
                                     camera_angle_x=camera_data.angle_x, extra={"gen4d": meta})
    finally:
        restorer.restore()
        bpy.data.objects.remove(camera)
        bpy.data.cameras.remove(camera_data)
        scene.frame_set(frame_before)


def _formats():
    """:mod:`protocol.formats` (the copy bundled into the extension, else the repository's)."""
    from ._vendor import get_protocol

    return get_protocol().formats


def capture_footage(scene, obj, out_dir, **kwargs) -> Path:
    """Run :func:`iter_capture` to completion; returns ``out_dir``. Raises what it raises."""
    for _ in iter_capture(scene, obj, out_dir, **kwargs):
        pass
    return Path(out_dir)


def default_capture_dir(obj_name: str) -> Path:
    """``//gen4d_cache/capture/<name>_<time>`` beside a saved .blend, else a temp folder."""
    stamp = time.strftime("%Y%m%d_%H%M%S")
    name = bpy.path.clean_name(obj_name)
    if bpy.data.filepath:
        return Path(bpy.path.abspath(f"//gen4d_cache/capture/{name}_{stamp}"))
    import tempfile
    return Path(tempfile.gettempdir()) / "gen4d_capture" / f"{name}_{stamp}"


class GEN4D_OT_capture_selected(bpy.types.Operator):
    """Render the active object's animation from cameras around it and submit it as multi-view footage"""
    bl_idname = "gen4d.capture_selected"
    bl_label = "Capture Selected Animation"

    n_cameras: bpy.props.IntProperty(name="Cameras", default=16, min=2, max=64)
    frame_step: bpy.props.IntProperty(name="Frame Step", default=1, min=1, max=100,
                                      description="Capture every n-th frame of the scene's range")
    size: bpy.props.IntProperty(name="Image Size", default=256, min=32, max=2048, subtype="PIXEL")
    engine: bpy.props.EnumProperty(name="Engine", items=ENGINES, default="SCENE")
    samples: bpy.props.IntProperty(name="Cycles Samples", default=32, min=1, max=4096)
    submit: bpy.props.BoolProperty(name="Submit", default=True,
                                   description="Submit the captured footage as a job when done")
    directory: bpy.props.StringProperty(name="Output Folder", subtype="DIR_PATH", default="",
                                        description="Where the footage goes (default: //gen4d_cache/capture/)")

    _gen = None
    _timer = None
    _out: Path | None = None

    @classmethod
    def poll(cls, context):
        return context.active_object is not None

    def _setup(self, context):
        obj = context.active_object
        self._out = Path(bpy.path.abspath(self.directory)) if self.directory else default_capture_dir(obj.name)
        self._gen = iter_capture(context.scene, obj, self._out, n_cameras=self.n_cameras,
                                 frame_step=self.frame_step, size=self.size, engine=self.engine,
                                 samples=self.samples)

    def _finish(self, context):
        doc = json.loads((self._out / "transforms_train.json").read_text())
        n = len(doc["frames"])
        panel_state.STATE.capture_finished(f"captured {n} images to {self._out}")
        self.report({"INFO"}, f"gen4d: captured {n} images to {self._out}")
        if not self.submit:
            return {"FINISHED"}
        from .operators import start_job
        extra = {"fps": doc["gen4d"]["fps"], "frame_count": len(doc["gen4d"]["scene_frames"])}
        return start_job(self, context, "footage", extra, folder=str(self._out))

    def _fail(self, exc) -> set:
        panel_state.STATE.capture_failed(f"capture failed: {exc}")
        self.report({"ERROR"}, f"gen4d: capture failed: {exc}")
        return {"CANCELLED"}

    def execute(self, context):
        """Capture synchronously (scripts, ``EXEC_DEFAULT``), then submit if asked."""
        try:
            self._setup(context)
            for _ in self._gen:
                pass
        except Exception as exc:
            return self._fail(exc)
        return self._finish(context)

    def invoke(self, context, event):
        """Capture one image per timer tick (Esc cancels) so Blender stays responsive."""
        try:
            self._setup(context)
        except Exception as exc:
            return self._fail(exc)
        panel_state.STATE.capturing()
        self._timer = context.window_manager.event_timer_add(0.01, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type == "ESC":
            self._gen.close()  # restores the scene
            self._stop_timer(context)
            panel_state.STATE.capture_cancelled()
            self.report({"WARNING"}, "gen4d: capture cancelled")
            return {"CANCELLED"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        try:
            done, total = next(self._gen)
        except StopIteration:
            self._stop_timer(context)
            return self._finish(context)
        except Exception as exc:
            self._stop_timer(context)
            return self._fail(exc)
        panel_state.STATE.capture_progress(done, total)
        for area in context.screen.areas if context.screen else ():
            if area.type == "VIEW_3D":
                area.tag_redraw()
        return {"RUNNING_MODAL"}

    def _stop_timer(self, context):
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None


classes = (GEN4D_OT_capture_selected,)

__all__ = ["iter_capture", "capture_footage", "spiral_directions", "held_out_directions", "look_at",
           "animation_bounds",
           "GEN4D_OT_capture_selected", "classes"]
