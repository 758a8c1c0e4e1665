"""Find the Stage class a graph's ``uses`` names: a built-in short name, ``module:Class``, or
``path/to/file.py:Class`` relative to the graph file."""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import sys
from pathlib import Path

from ..errors import GraphError
from ..registry import stage_targets
from ..stage import Stage

__all__ = ["resolve_stage"]


def resolve_stage(uses: str, graph_dir: Path) -> type[Stage]:
    """The Stage subclass for ``uses``; raises GraphError with a hint when it cannot be found."""
    builtins = stage_targets()
    target = builtins.get(uses, uses)
    if ":" not in target:
        close = difflib.get_close_matches(uses, builtins, n=1)
        hint = f'; did you mean "{close[0]}"?' if close else ""
        available = ", ".join(sorted(builtins))
        msg = (
            f'unknown stage "{uses}"{hint} Built-in stages: {available}; '
            'or use "module:Class" / "file.py:Class"'
        )
        raise GraphError(msg)
    module_name, _, class_name = target.rpartition(":")
    module = _import(module_name, graph_dir)
    cls = getattr(module, class_name, None)
    if cls is None:
        names = sorted(
            n
            for n, v in vars(module).items()
            if isinstance(v, type) and issubclass(v, Stage) and v.__module__ == module.__name__
        )
        msg = f'"{module_name}" has no class "{class_name}"' + (
            f"; it defines {', '.join(names)}" if names else ""
        )
        raise GraphError(msg)
    if not (isinstance(cls, type) and issubclass(cls, Stage)):
        msg = f'"{target}" is not a Stage subclass (derive it from pipeline.Stage)'
        raise GraphError(msg)
    return cls


def _import(module_name: str, graph_dir: Path):
    if module_name.endswith(".py"):
        return _import_file(module_name, graph_dir)
    try:
        return importlib.import_module(module_name)
    except Exception as exc:  # an import error inside a user module is the user's to see
        msg = f'cannot import "{module_name}": {type(exc).__name__}: {exc}'
        raise GraphError(msg) from exc


def _import_file(relpath: str, graph_dir: Path):
    path = Path(relpath)
    path = path if path.is_absolute() else (graph_dir / path).resolve()
    if not path.is_file():
        msg = f'stage file "{relpath}" not found (looked at {path})'
        raise GraphError(msg)
    name = f"rkpipe_user_{path.stem}_{abs(hash(str(path))) & 0xFFFFFF:x}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        msg = f'cannot import "{relpath}": {type(exc).__name__}: {exc}'
        raise GraphError(msg) from exc
    return module
