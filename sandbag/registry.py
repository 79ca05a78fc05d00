"""The one plug-in mechanism: a named registry filled by a decorator, mirrored by a Hydra
config group of the same name (``@register_task("addition")`` makes ``task=addition`` valid)."""

from __future__ import annotations


class Registry(dict):
    """``name -> class or function``. A registered class learns its own ``name``."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, name: str):
        def deco(obj):
            if isinstance(obj, type):
                obj.name = name
            self[name] = obj
            return obj

        return deco

    def get_valid(self, name: str):
        """The entry ``name``; a KeyError naming the valid choices otherwise."""
        if name not in self:
            raise KeyError(f"unknown {self.kind} {name!r}; valid: {', '.join(sorted(self))}")
        return self[name]
