"""A stand-in for ``bpy.types.UILayout`` that records what a panel draws (for the panel
checks; imported by the bpy scripts in this folder)."""

import types


class RecordingLayout:
    """Stands in for ``bpy.types.UILayout``: every call is appended to one shared log as
    ``[kind, detail, enabled, alert]``, where enabled / alert are those of the
    innermost layout (and its parents) at draw time."""

    def __init__(self, log, parent=None):
        self.log, self.parent = log, parent
        self.enabled, self.alert = True, False

    def _flags(self):
        enabled, alert, node = True, False, self
        while node is not None:
            enabled, alert = enabled and node.enabled, alert or node.alert
            node = node.parent
        return enabled, alert

    def _record(self, kind, detail):
        self.log.append([kind, detail, *self._flags()])

    def _child(self, kind):
        self._record(kind, "")
        return RecordingLayout(self.log, self)

    def box(self):
        return self._child("box")

    def row(self, **_):
        return self._child("row")

    def column(self, **_):
        return self._child("column")

    def label(self, text="", **_):
        self._record("label", text)

    def prop(self, data, name, text=None, **_):
        self._record("prop", text if text is not None else name)

    def operator(self, idname, text=None, **_):
        self._record("operator", f"{idname}|{text or ''}")
        return types.SimpleNamespace()

    def progress(self, factor=0.0, type="BAR", text=""):
        self._record("progress", f"{factor:.2f}|{text}")

    def template_icon(self, icon_value=0, scale=1.0):
        self._record("icon", str(icon_value))

    def separator(self, **_):
        pass


def draw_panel(panel_cls, context) -> list:
    """Call ``panel_cls.draw`` with a recording layout; returns the log."""
    log = []
    panel_cls.draw(types.SimpleNamespace(layout=RecordingLayout(log)), context)
    return log
