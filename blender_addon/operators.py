"""Operators: connect, submit footage / a prompt / an image / a video, cancel, import,
the Cycles bounce helper and "Prepare Scene for Splats".

Every submit goes through :func:`start_job` (the capture operator uses it too): it returns
at once with the request's future handed to ``session.follow_submission``, which moves the
panel along as the backend answers. Errors are reported with ``self.report({'ERROR'}, ...)``
and ``{'CANCELLED'}``; no operator lets an exception escape.
"""

from __future__ import annotations

import dataclasses
import os

import bpy

from . import panel_state, scene_prep, session
from ._vendor import protocol_module
from .preferences import get_connection


def _connect(op, context):
    """The backend connection for the preferences' address and key, or None after
    reporting why not (``op.report`` and the panel's error line)."""
    try:
        return session.connect(**get_connection(context))
    except Exception as exc:
        panel_state.STATE.error(str(exc))
        op.report({"ERROR"}, f"gen4d: {exc}")
        return None


class GEN4D_OT_connect(bpy.types.Operator):
    """Connect to the backend and check that it answers"""
    bl_idname = "gen4d.connect"
    bl_label = "Connect"

    def execute(self, context):
        connection = _connect(self, context)
        if connection is None:
            return {"CANCELLED"}
        connection.ping()  # the answer shows as the panel's reachability
        return {"FINISHED"}


def start_job(op, context, job_type: str, spec_extra: dict | None = None, *, folder: str | None = None,
              path: str | None = None, field: str = "") -> set:
    """Submit a job with the scene's job spec for ``job_type`` (quality preset + Advanced
    options + ``spec_extra``, see ``job_presets.job_spec``) and follow it in the panel.

    Exactly one input: ``folder`` (a footage folder, uploaded from the connection's
    thread), ``path`` + ``field`` (one file, e.g. ``field="video"``), or neither (a job
    without input files, e.g. a prompt).

    Args:
        op: the calling operator (for ``report``).
        context: the operator's context.

    Returns:
        ``{"FINISHED"}``, or ``{"CANCELLED"}`` after reporting why (no connection, or a
        spec the backend would refuse: ``[invalid_option] ...`` names the setting).

    Raises:
        ValueError: both ``folder`` and ``path`` given, or ``path`` without ``field``.
    """
    if folder is not None and path is not None:
        raise ValueError("start_job takes a footage folder or a file path, not both")
    if path is not None and not field:
        raise ValueError("start_job needs the spec field that names the uploaded file")
    try:  # checked here exactly as the server checks it, before anything is sent
        spec = context.scene.gen4d.spec(job_type, **(spec_extra or {}))
    except ValueError as exc:
        panel_state.STATE.error(str(exc))
        op.report({"ERROR"}, f"gen4d: {exc}")
        return {"CANCELLED"}
    connection = _connect(op, context)
    if connection is None:
        return {"CANCELLED"}
    if folder is not None:
        future = connection.submit_footage(folder, spec)
    elif path is not None:
        future = connection.submit_file(path, spec, field)
    else:
        future = connection.submit(spec, {})
    name = (spec_extra or {}).get("prompt") or path or folder or ""
    session.follow_submission(future, job_type, os.path.basename(str(name).rstrip("/\\")) or str(name)[:60],
                              connection.address)
    return {"FINISHED"}


class GEN4D_OT_submit_footage(bpy.types.Operator):
    """Upload a multi-view footage folder (transforms_train.json + images) and start a job"""
    bl_idname = "gen4d.submit_footage"
    bl_label = "Submit Multi-View Footage"

    directory: bpy.props.StringProperty(subtype="DIR_PATH")

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        folder = bpy.path.abspath(self.directory)
        if not os.path.isfile(os.path.join(folder, "transforms_train.json")):
            self.report({"ERROR"}, f"gen4d: no transforms_train.json in {folder}")
            return {"CANCELLED"}
        return start_job(self, context, "footage", folder=folder)


class GEN4D_OT_submit_prompt(bpy.types.Operator):
    """Generate a 4D asset from the prompt (text -> image -> video -> multi-view -> 4D)"""
    bl_idname = "gen4d.submit_prompt"
    bl_label = "Generate from Prompt"

    def execute(self, context):
        prompt = context.scene.gen4d.prompt.strip()
        if not prompt:
            self.report({"ERROR"}, "gen4d: type a prompt first")
            return {"CANCELLED"}
        return start_job(self, context, "prompt", {"prompt": prompt})


class _SubmitFile:
    """Shared body of the image and video operators: pick a file, upload it from the connection thread.

    ``field`` is the spec key that names the uploaded file, ``job_type`` the job (default:
    ``field``), and :meth:`spec_extra` adds operator-specific spec keys."""
    filepath: bpy.props.StringProperty(subtype="FILE_PATH")
    field = ""
    job_type = ""
    extensions: tuple = ()

    def spec_extra(self) -> dict:
        return {}

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        path = bpy.path.abspath(self.filepath)
        if not os.path.isfile(path):
            self.report({"ERROR"}, f"gen4d: no such file: {path}")
            return {"CANCELLED"}
        if not path.lower().endswith(self.extensions):
            self.report({"ERROR"}, f"gen4d: {os.path.basename(path)} is not one of {', '.join(self.extensions)}")
            return {"CANCELLED"}
        return start_job(self, context, self.job_type or self.field, self.spec_extra(), path=path, field=self.field)


class GEN4D_OT_submit_image(_SubmitFile, bpy.types.Operator):
    """Generate a 4D asset from one image (image -> video -> multi-view -> 4D)"""
    bl_idname = "gen4d.submit_image"
    bl_label = "From Image…"
    field = "image"
    extensions = (".png", ".jpg", ".jpeg", ".webp", ".exr", ".tif", ".tiff")
    filter_glob: bpy.props.StringProperty(default="*.png;*.jpg;*.jpeg;*.webp;*.tif;*.tiff", options={"HIDDEN"})


class GEN4D_OT_submit_video(_SubmitFile, bpy.types.Operator):
    """Generate a 4D asset from a monocular video (video -> multi-view -> 4D)"""
    bl_idname = "gen4d.submit_video"
    bl_label = "From Video…"
    field = "video"
    extensions = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".gif")
    filter_glob: bpy.props.StringProperty(default="*.mp4;*.mov;*.mkv;*.webm;*.avi;*.gif", options={"HIDDEN"})


#: The orbit settings (:class:`protocol.config.OrbitConfig`): defaults and bounds come from
#: there, so the operator offers exactly what the backend accepts.
_ORBIT_FIELDS = {f.name: f for f in dataclasses.fields(protocol_module("config").OrbitConfig)}


def _orbit_property(name: str, label: str, description: str, **kwargs):
    """A FloatProperty for orbit setting ``name``: its default, and its exclusive bounds
    (``above`` / ``below``) as the closest inclusive UI limits."""
    f = _ORBIT_FIELDS[name]
    if "above" in f.metadata:
        kwargs["min"] = f.metadata["above"] + 0.01
    if "below" in f.metadata:
        kwargs["max"] = f.metadata["below"] - 0.01
    return bpy.props.FloatProperty(name=label, default=f.default, description=description, **kwargs)


class GEN4D_OT_submit_orbital_video(_SubmitFile, bpy.types.Operator):
    """Reconstruct a 4D asset from a video whose camera orbits the moving object (Diffusion4D style):
    every frame is one camera at one time on the orbit described here"""
    bl_idname = "gen4d.submit_orbital_video"
    bl_label = "From Orbital Video…"
    field = "video"
    job_type = "orbital"
    extensions = GEN4D_OT_submit_video.extensions
    filter_glob: bpy.props.StringProperty(default="*.mp4;*.mov;*.mkv;*.webm;*.avi;*.gif", options={"HIDDEN"})
    sweep_deg: _orbit_property("sweep_deg", "Orbit Sweep", "Degrees the camera travels from the first to the last "
                               "frame (24 frames at 15 degrees: 345); negative = clockwise from above",
                               min=-3600.0, max=3600.0)
    start_azimuth_deg: _orbit_property("start_azimuth_deg", "Start Azimuth",
                                       "Azimuth of the first frame (0 = on the +X axis)")
    elevation_deg: _orbit_property("elevation_deg", "Elevation", "Camera elevation above the orbit centre")
    fov_deg: _orbit_property("fov_deg", "Horizontal FOV",
                             "The video camera's horizontal field of view (50 mm on 36 mm: 39.6)")
    radius: _orbit_property("radius", "Distance", "Camera distance from the orbit centre (sets the asset's scale)",
                            subtype="DISTANCE")

    def spec_extra(self) -> dict:
        return {"orbit": {name: getattr(self, name) for name in _ORBIT_FIELDS}}


class GEN4D_OT_cancel(bpy.types.Operator):
    """Cancel the current job"""
    bl_idname = "gen4d.cancel"
    bl_label = "Cancel Job"

    def execute(self, context):
        if session.cancel_job() is None:
            self.report({"ERROR"}, "gen4d: no job to cancel")
            return {"CANCELLED"}
        return {"FINISHED"}


class GEN4D_OT_import_result(bpy.types.Operator):
    """Import a gen4d result (the finished job's, or a chosen result folder) as one animated object"""
    bl_idname = "gen4d.import_result"
    bl_label = "Import Result"
    bl_options = {"REGISTER", "UNDO"}

    directory: bpy.props.StringProperty(subtype="DIR_PATH")

    def invoke(self, context, event):
        if self.directory:  # a job-list row names its result folder
            return self.execute(context)
        state = panel_state.STATE
        if state.status == "ready" and state.result_dir:
            self.directory = state.result_dir
            return self.execute(context)
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        from .importer import import_result
        folder = bpy.path.abspath(self.directory or panel_state.STATE.result_dir)
        try:
            obj = import_result(folder, name=context.scene.gen4d.asset_name)
        except Exception as exc:
            panel_state.STATE.error(str(exc))
            self.report({"ERROR"}, f"gen4d import failed: {exc}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"gen4d: imported {obj.name} ({obj['gen4d_frame_count']} frames)")
        return {"FINISHED"}


class GEN4D_OT_reattach(bpy.types.Operator):
    """Follow a job again by its id (e.g. after restarting Blender): progress, or the finished result"""
    bl_idname = "gen4d.reattach"
    bl_label = "Reattach to Job"

    job_id: bpy.props.StringProperty(name="Job ID", description="The id the backend gave the job")

    def invoke(self, context, event):
        if self.job_id:
            return self.execute(context)
        return context.window_manager.invoke_props_dialog(self)

    def execute(self, context):
        job_id = self.job_id.strip()
        if not job_id:
            self.report({"ERROR"}, "gen4d: enter a job id")
            return {"CANCELLED"}
        if _connect(self, context) is None:
            return {"CANCELLED"}
        session.reattach(job_id)
        return {"FINISHED"}


class GEN4D_OT_forget_job(bpy.types.Operator):
    """Remove a job from the list (its downloaded result stays on disk)"""
    bl_idname = "gen4d.forget_job"
    bl_label = "Forget Job"

    job_id: bpy.props.StringProperty(name="Job ID")

    def execute(self, context):
        session.JOBS.forget(self.job_id)
        return {"FINISHED"}


class GEN4D_OT_start_local_backend(bpy.types.Operator):
    """Start the gen4d backend on this machine with the interpreter set in the add-on preferences, then connect"""
    bl_idname = "gen4d.start_local_backend"
    bl_label = "Start Local Backend"

    def execute(self, context):
        from . import local_backend
        from .connection import is_loopback
        from .preferences import get_prefs

        prefs = get_prefs(context)
        if prefs is None:
            self.report({"ERROR"}, "gen4d: the add-on preferences are not available")
            return {"CANCELLED"}
        address = prefs.address.strip()
        if not is_loopback(address):
            self.report({"ERROR"}, f"gen4d: a local backend binds a local address; {address} is not one")
            return {"CANCELLED"}
        try:
            backend = local_backend.start(bpy.path.abspath(prefs.python_path), bpy.path.abspath(prefs.backend_root),
                                          address, bpy.path.abspath(prefs.data_dir))
        except (OSError, ValueError) as exc:
            panel_state.STATE.error(str(exc))
            self.report({"ERROR"}, f"gen4d: {exc}")
            return {"CANCELLED"}
        if not prefs.key_text.strip() and not prefs.key_file.strip():
            prefs.key_file = str(backend.key_path)
        session.disconnect()
        session.connect_when_ready(address, backend.key_path)
        self.report({"INFO"}, f"gen4d: backend starting (pid {backend.process.pid}), log {backend.log_path}")
        return {"FINISHED"}


class GEN4D_OT_stop_local_backend(bpy.types.Operator):
    """Stop the backend started from Blender (running jobs resume when it starts again)"""
    bl_idname = "gen4d.stop_local_backend"
    bl_label = "Stop Local Backend"

    def execute(self, context):
        from . import local_backend

        if local_backend.current() is None:
            self.report({"ERROR"}, "gen4d: no backend was started from Blender")
            return {"CANCELLED"}
        session.disconnect()
        code = local_backend.stop()
        panel_state.STATE.disconnected()
        self.report({"INFO"}, f"gen4d: local backend stopped (exit code {code})")
        return {"FINISHED"}


class GEN4D_OT_show_backend_log(bpy.types.Operator):
    """Show the local backend's log in a Text datablock (open it in the Text Editor)"""
    bl_idname = "gen4d.show_backend_log"
    bl_label = "Show Backend Log"

    def execute(self, context):
        from . import local_backend

        if local_backend.current() is None:
            self.report({"ERROR"}, "gen4d: no backend was started from Blender")
            return {"CANCELLED"}
        text = bpy.data.texts.get("gen4d_backend.log") or bpy.data.texts.new("gen4d_backend.log")
        text.from_string(local_backend.read_log())
        for area in context.screen.areas if context.screen else ():
            if area.type == "TEXT_EDITOR":
                area.spaces.active.text = text
                break
        self.report({"INFO"}, "gen4d: backend log in the Text Editor as gen4d_backend.log")
        return {"FINISHED"}


class GEN4D_OT_set_cycles_bounces(bpy.types.Operator):
    """Raise Cycles' transparent bounces so overlapping splats render (changes scene settings)"""
    bl_idname = "gen4d.set_cycles_bounces"
    bl_label = "Set Cycles Transparent Bounces"
    bl_options = {"REGISTER", "UNDO"}

    bounces: bpy.props.IntProperty(name="Transparent Bounces", default=128, min=8, max=1024)

    def execute(self, context):
        cycles = getattr(context.scene, "cycles", None)
        if cycles is None:
            self.report({"ERROR"}, "gen4d: Cycles is not available")
            return {"CANCELLED"}
        cycles.transparent_max_bounces = max(cycles.transparent_max_bounces, self.bounces)
        self.report({"INFO"}, f"Cycles transparent bounces: {cycles.transparent_max_bounces}")
        return {"FINISHED"}


class GEN4D_OT_prepare_scene(bpy.types.Operator):
    """Apply the render settings measured best for splats: transparent bounces, samples, pixel filter,
    Standard view, film transparent (changes scene settings; undoable)"""
    bl_idname = "gen4d.prepare_scene"
    bl_label = "Prepare Scene for Splats"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        try:
            changes = scene_prep.apply_recommended(context.scene)
        except (TypeError, ValueError) as exc:
            self.report({"ERROR"}, f"gen4d: could not apply a setting: {exc}")
            return {"CANCELLED"}
        for line in changes:
            self.report({"INFO"}, f"gen4d: {line}")
        if not changes:
            self.report({"INFO"}, "gen4d: the scene already has the recommended settings")
        return {"FINISHED"}


classes = (GEN4D_OT_connect, GEN4D_OT_submit_footage, GEN4D_OT_submit_prompt, GEN4D_OT_submit_image,
           GEN4D_OT_submit_video, GEN4D_OT_submit_orbital_video, GEN4D_OT_cancel, GEN4D_OT_import_result,
           GEN4D_OT_reattach, GEN4D_OT_forget_job, GEN4D_OT_start_local_backend, GEN4D_OT_stop_local_backend,
           GEN4D_OT_show_backend_log, GEN4D_OT_set_cycles_bounces, GEN4D_OT_prepare_scene)
