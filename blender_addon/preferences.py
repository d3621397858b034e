"""Add-on preferences (backend address, key or credentials file) and per-scene job settings."""

from __future__ import annotations

import bpy

from .job_presets import densify_items, job_spec, quality_items, representation_items

ADDON_ID = __package__


class GEN4D_AddonPreferences(bpy.types.AddonPreferences):
    """Backend connection settings, stored with Blender's preferences."""
    bl_idname = ADDON_ID

    address: bpy.props.StringProperty(
        name="Backend Address", default="tcp://127.0.0.1:5555",
        description="ZeroMQ endpoint of the gen4d backend; a non-local address needs "
                    "Blender's online access to be enabled")
    key_file: bpy.props.StringProperty(
        name="Key File", subtype="FILE_PATH",
        description="The backend's gen4d.key file (used when Key is empty)")
    key_text: bpy.props.StringProperty(
        name="Key", subtype="PASSWORD", description="The backend key as hex text (overrides Key File)")
    credentials_file: bpy.props.StringProperty(
        name="Credentials File", subtype="FILE_PATH",
        description="For a studio backend: your credentials file from `python -m backend users add NAME` "
                    "(your user name, key and CurveZMQ keys; overrides Key and Key File)")

    python_path: bpy.props.StringProperty(
        name="Backend Python", subtype="FILE_PATH",
        description="Python interpreter with the backend's packages (torch, gsplat, pyzmq), used by "
                    "Start Local Backend, e.g. /path/to/gen4d/.venv/bin/python")
    backend_root: bpy.props.StringProperty(
        name="Backend Folder", subtype="DIR_PATH",
        description="Folder containing the 'backend' package (the gen4d checkout); empty if the "
                    "interpreter has it installed")
    data_dir: bpy.props.StringProperty(
        name="Backend Data Folder", subtype="DIR_PATH", default="~/.local/share/gen4d",
        description="Jobs, key file (gen4d.key) and log (backend.log) of the local backend")

    def draw(self, context):
        col = self.layout.column()
        col.prop(self, "address")
        col.prop(self, "credentials_file")
        sub = col.column()
        sub.active = not self.credentials_file
        sub.prop(self, "key_file")
        sub.prop(self, "key_text")
        col.separator()
        col.label(text="Local backend")
        col.prop(self, "python_path")
        col.prop(self, "backend_root")
        col.prop(self, "data_dir")


class GEN4D_SceneSettings(bpy.types.PropertyGroup):
    """Per-scene job options (``scene.gen4d``)."""
    preset: bpy.props.EnumProperty(
        name="Quality", default="STANDARD",
        items=quality_items())
    show_advanced: bpy.props.BoolProperty(name="Advanced", default=False)
    iterations: bpy.props.IntProperty(
        name="Iterations", default=0, min=0, soft_max=20000,
        description="Optimizer steps (0: the quality preset's)")
    max_image_size: bpy.props.IntProperty(
        name="Image Size", default=0, min=0, soft_max=1024, subtype="PIXEL",
        description="Longest side of the training images (0: the quality preset's)")
    representation: bpy.props.EnumProperty(
        name="Motion", default="PRESET",
        items=representation_items())
    densify_strategy: bpy.props.EnumProperty(
        name="Densification", default="PRESET",
        items=densify_items())
    confidence_weighting: bpy.props.BoolProperty(
        name="Confidence Weighting", default=False,
        description="Efficient4D confidence-aware loss: down-weight frames that disagree with their neighbours")

    def spec(self, job_type: str, **extra) -> dict:
        """The job spec for these settings (see :func:`job_presets.job_spec`)."""
        return job_spec(job_type, self.preset, self.iterations, self.max_image_size, self.representation,
                        self.densify_strategy, self.confidence_weighting, **extra)
    asset_name: bpy.props.StringProperty(name="Asset Name", default="gen4d_asset")
    prompt: bpy.props.StringProperty(name="Prompt", default="",
                                     description="What to generate (text -> image -> video -> 4D)")


def get_prefs(context=None):
    """This add-on's preferences, or None when not registered as an add-on."""
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_ID)
    return addon.preferences if addon else None


def get_connection(context=None) -> dict:
    """The connection settings from the preferences, as keyword arguments of
    :func:`session.connect`: ``address``, ``key`` and, with a credentials file, ``user`` and
    ``curve`` (``(client_public, client_secret, server_public)``).

    Raises:
        ValueError: no key configured, or the key or credentials file is invalid.
        FileNotFoundError: the key or credentials file does not exist.
        PermissionError: the file is readable by others (``chmod 600`` it).
    """
    prefs = get_prefs(context)
    if prefs is None:
        raise ValueError("gen4d preferences are not available")
    from ._vendor import get_protocol
    address = prefs.address.strip()
    if prefs.credentials_file.strip():
        creds = get_protocol().load_credentials(bpy.path.abspath(prefs.credentials_file.strip()))
        return {"address": address, "key": creds["key"], "user": creds["user"],
                "curve": (creds["curve_public"], creds["curve_secret"], creds["server_public"])}
    return {"address": address, "key": _get_key(prefs)}


def _get_key(prefs) -> bytes:
    if prefs.key_text.strip():
        return prefs.key_text.strip().encode("ascii")
    if not prefs.key_file:
        raise ValueError("set the backend key, key file or credentials file in the gen4d add-on preferences")
    from ._vendor import get_protocol
    return get_protocol().load_key(bpy.path.abspath(prefs.key_file))


classes = (GEN4D_AddonPreferences, GEN4D_SceneSettings)
