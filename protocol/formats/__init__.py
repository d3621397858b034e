"""gen4d's file and data conventions, written once and shared by the backend, the add-on,
the samples and the scripts.

Each module does one job (numpy and the standard library only; no torch, plyfile or bpy):

- :mod:`.ply`: the per-frame Gaussian PLY layout (Inria 3DGS) and its value conventions;
- :mod:`.manifest`: ``manifest.json`` of a result folder;
- :mod:`.time_grid`: frame ``i`` of ``T`` at time ``i / (T − 1)``;
- :mod:`.transforms`: NeRF-synthetic / D-NeRF ``transforms_*.json`` footage;
- :mod:`.media`: the image files footage may hold;
- :mod:`.job_states`: the states of a backend job;
- :mod:`.compositing`: straight-alpha RGBA over a background.
"""

from .compositing import composite_over
from .job_states import JOB_STATES, TERMINAL_STATES
from .manifest import (FORMAT_VERSION, MANIFEST_FILE, MODEL_FILE, RESULT_FORMAT, SUPPORTED_FORMAT_VERSIONS, Manifest,
                       ManifestError, ManifestNotFoundError, frame_file_name, manifest_from_dict, read_manifest,
                       standard_frame_file_name, write_manifest)
from .media import IMAGE_EXTENSIONS, is_image_name
from .ply import (MAX_SH_DEGREE, NORMAL, OPACITY, POSITION, REQUIRED_PROPERTIES, ROTATION, SCALE, SH_C0, SH_DC,
                  f_rest_names, normalize_quaternions, opacity_from_logit, pack_sh_rest, ply_property_names,
                  rgb_to_sh0, scale_from_log, sh0_to_rgb, sh_coefficient_count, sh_degree_from_properties,
                  sh_degree_from_rest_count, unpack_sh_rest)
from .time_grid import frame_time, frame_times
from .transforms import (INTRINSIC_KEYS, TRANSFORMS_TEST, TRANSFORMS_TRAIN, Transforms, TransformsError,
                         TransformsFrame, parse_transforms, read_transforms, resolve_image_path, transforms_file_name,
                         write_transforms, frame_record)

__all__ = [
    "composite_over",
    "JOB_STATES", "TERMINAL_STATES",
    "FORMAT_VERSION", "MANIFEST_FILE", "MODEL_FILE", "RESULT_FORMAT", "SUPPORTED_FORMAT_VERSIONS", "Manifest",
    "ManifestError", "ManifestNotFoundError", "frame_file_name", "manifest_from_dict", "read_manifest",
    "standard_frame_file_name", "write_manifest",
    "IMAGE_EXTENSIONS", "is_image_name",
    "MAX_SH_DEGREE", "NORMAL", "OPACITY", "POSITION", "REQUIRED_PROPERTIES", "ROTATION", "SCALE", "SH_C0", "SH_DC",
    "f_rest_names", "normalize_quaternions", "opacity_from_logit", "pack_sh_rest", "ply_property_names",
    "rgb_to_sh0", "scale_from_log", "sh0_to_rgb", "sh_coefficient_count", "sh_degree_from_properties",
    "sh_degree_from_rest_count", "unpack_sh_rest",
    "frame_time", "frame_times",
    "INTRINSIC_KEYS", "TRANSFORMS_TEST", "TRANSFORMS_TRAIN", "Transforms", "TransformsError", "TransformsFrame",
    "parse_transforms", "read_transforms", "resolve_image_path", "transforms_file_name", "write_transforms", "frame_record",
]
