"""Scene settings for rendering gen4d splats, applied only on request ("Prepare Scene for
Splats", :class:`blender_addon.operators.GEN4D_OT_prepare_scene`).

The values come from ``benchmarks/blender_fidelity.py`` (results in
``benchmarks/results/blender_fidelity_demo.md``): the settings under which a Cycles /
Eevee render of an imported asset comes closest to the backend's own render of it.
The importer never calls this module; the scene's settings are the artist's.

Settings are written as dotted paths on the scene (``"cycles.samples"`` is
``scene.cycles.samples``); a path whose owner does not exist in this Blender (Cycles
disabled, an older Eevee) is skipped and not reported.
"""

from __future__ import annotations

from ._vendor import protocol_module

#: the pixel filter width the "blender" image formation models (one place: the protocol).
FILTER_WIDTH_PX = protocol_module("formats.image_formation").BLENDER_FILTER_WIDTH_PX

#: (dotted path on the scene, value, why). Order is the order of the report.
#:
#: Measured on the demo asset fitted in the standard "3dgs" formation (Cycles vs the
#: backend's render, full image): 128 samples 24.08 dB, 32 samples 23.99, 0.01 px filter
#: 23.86, AgX 23.74; Eevee 64 samples 24.01, 16 samples 23.87. Fitted in the default
#: "blender" formation: 128 samples 32.56 dB, 32 samples 31.92 (README "Blender fidelity").
#:
#: - Transparent bounces 256: every splat is a transparent surface; Cycles' default 8
#:   ends a path after 8 splats and it goes black (dark speckles; its higher PSNR, 24.94,
#:   comes from that darkening offsetting the lightness of the sRGB-blend fit).
#: - Samples 128; denoising off, since the denoiser blurs the splats' edges.
#: - Pixel filter: Blackman-Harris, 1.5 px (Cycles' default), the filter the "blender"
#:   image formation integrates each pixel over
#:   (:data:`protocol.formats.image_formation.BLENDER_FILTER_WIDTH_PX`).
#: - View transform Standard, look None: the fit's colours are sRGB display values;
#:   AgX / Filmic tone-map them.
#: - Film transparent: the backend renders straight-alpha RGBA; compositing on a
#:   background happens after, as for the fitted images.
RECOMMENDED: tuple[tuple[str, object, str], ...] = (
    ("cycles.transparent_max_bounces", 256, "overlapping splats are not cut off"),
    ("cycles.max_bounces", 256, "transparent bounces are capped by total bounces"),
    ("cycles.samples", 128, "noise below the fit's error"),
    ("cycles.use_denoising", False, "the denoiser blurs splat edges"),
    ("cycles.pixel_filter_type", "BLACKMAN_HARRIS", "the pixel filter the fit models"),
    ("cycles.filter_width", FILTER_WIDTH_PX, "the filter width the fit models"),
    ("eevee.taa_render_samples", 64, "Eevee's dithered transparency averages out"),
    ("view_settings.view_transform", "Standard", "the fit's colours are display sRGB"),
    ("view_settings.look", "None", "no tone-mapping look"),
    ("render.film_transparent", True, "straight alpha, as the backend renders"),
)


def _owner(scene, path: str):
    """(object holding the last attribute, attribute name), or (None, name) if a parent
    attribute is missing."""
    *parents, name = path.split(".")
    obj = scene
    for part in parents:
        obj = getattr(obj, part, None)
        if obj is None:
            return None, name
    return obj, name


def apply_recommended(scene, settings=RECOMMENDED) -> list[str]:
    """Set each recommended setting on ``scene`` that differs from its value.

    Args:
        scene: a ``bpy.types.Scene``.
        settings: ``(dotted path, value, reason)`` triples (default :data:`RECOMMENDED`).

    Returns:
        One line per change made, ``"cycles.samples: 4096 → 128"``, in ``settings`` order;
        settings already at their value and paths this Blender lacks are left out.

    Raises:
        TypeError / ValueError: a value the property rejects (e.g. an enum item unknown to
        this Blender); settings before it stay applied (the operator's undo step covers it).
    """
    changes = []
    for path, value, _reason in settings:
        owner, name = _owner(scene, path)
        if owner is None or not hasattr(owner, name):
            continue
        old = getattr(owner, name)
        if old == value:
            continue
        setattr(owner, name, value)
        changes.append(f"{path}: {old} → {getattr(owner, name)}")
    return changes
