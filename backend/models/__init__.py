"""Generation models: the registry of roles (:mod:`backend.models.registry`) and the
pipelines gen4d builds on diffusers components."""
