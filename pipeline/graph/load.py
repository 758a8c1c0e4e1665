"""Read and validate a graph file completely before any process starts.

Every problem is collected and reported at once, each as
``FILE:LINE stages.NAME.KEY: what was expected, got what`` (exit status 2, no traceback).

String values may name environment variables, ``${VAR}`` or ``${VAR:-default}`` (the
default also for an empty variable, as in the shell), so secrets and per-site settings (a
broker's host, a camera's URL) stay out of the file. A stage with
``enabled = false`` is validated but left out of the run.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shlex
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from zmq.auth import load_certificate

from ..cpus import Topology, format_cpus, read_topology
from ..errors import GraphError
from ..names import path_problem, stage_name_problem
from ..outputs import declared_outputs, output_problems
from ..secrets import is_secret_name, mask, remember
from ..stage import Source, Stage, StageConfig
from ..supervise.runs import RUN_DIR_ROOT
from .locate import KeyLocator
from .resolve import resolve_stage
from .schema import COMMON_KEYS, PipelineSettings, StageCommon, format_validation_error
from .variables import ENV_REF, variable_value

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

__all__ = ["Graph", "StageDef", "insecure_links", "load_graph"]


@dataclass
class StageDef:
    """One validated ``[stages.NAME]`` table."""

    name: str
    common: StageCommon
    cls: type[Stage]
    config: StageConfig
    options: dict[str, Any]

    @property
    def is_source(self) -> bool:
        return issubclass(self.cls, Source)


@dataclass
class Graph:
    """A validated graph: its file, settings and stages in file order."""

    path: Path
    settings: PipelineSettings
    stages: dict[str, StageDef]
    topology: Topology  # the machine's CPUs, which resolve names such as "big:2"

    @property
    def graph_dir(self) -> Path:
        return self.path.parent


class _Problems:
    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.locator = KeyLocator(text)
        self.items: list[str] = []

    def add(self, keys: tuple[str, ...], text: str) -> None:
        line = self.locator.line(*keys) if keys else None
        where = f"{self.path}:{line}" if line else f"{self.path}"
        dotted = ".".join(k if _BARE_KEY.fullmatch(k) else json.dumps(k) for k in keys)
        text = mask(text)
        self.items.append(f"{where} {dotted}: {text}" if dotted else f"{where}: {text}")


def load_graph(
    path: str | Path, cpus: set[int] | Topology | None = None, text: str | None = None
) -> Graph:
    """Parse and validate ``path``; raise GraphError listing every problem found.
    ``cpus`` is the machine to validate against: CPU ids (all alike) or a topology with
    big and little cores (default: this machine's, from sysfs). ``text``: the file's new
    text, validated as if it were there (an edit, before it is written)."""
    path = Path(path)
    if text is None:
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise GraphError(f"{path}: graph file not found") from None
        except OSError as exc:
            raise GraphError(f"{path}: cannot read graph file: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise GraphError(f"{path}: TOML syntax error: {exc}") from None
    problems = _Problems(path, text)
    data = _interpolate(data, (), problems)
    for key in data:
        if key not in ("pipeline", "stages"):
            problems.add(
                (key,), "unknown table; a graph file has only [pipeline] and [stages.NAME] tables"
            )
    settings = _settings(data.get("pipeline", {}), problems)
    raw_stages = data.get("stages", {})
    if not isinstance(raw_stages, dict) or not raw_stages:
        problems.add(("stages",), "no stages defined; add at least one [stages.NAME] table")
        raise GraphError(problems.items)
    stages = {}
    disabled = set()
    folder = _run_folder()
    for name, table in raw_stages.items():
        if why := stage_name_problem(name, folder):
            problems.add(("stages", name), why)
            continue
        sdef = _stage(name, table, path.parent, problems)
        if sdef is not None and not sdef.common.enabled:
            disabled.add(name)
        elif sdef is not None:
            stages[name] = sdef
    _check_case(raw_stages, problems)
    _check_links(raw_stages, stages, disabled, problems)
    _link_options(stages, path.parent, problems)
    _check_curve(stages, path.parent, problems)
    _check_stream_paths(stages, path.parent, problems)
    if isinstance(cpus, Topology):
        topology = cpus
    else:
        topology = read_topology() if cpus is None else Topology.uniform(cpus, "given")
    _check_cpus(stages, topology, problems)
    if not problems.items:
        _check_cycles(stages, problems)
    if problems.items:
        raise GraphError(problems.items)
    return Graph(path, settings, stages, topology)


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")  # a TOML key that needs no quotes


def _run_folder() -> str:
    """The longest run folder this machine makes (``/tmp/rkpipe-<pid>x<hex>``), for the
    socket path limit."""
    return f"{RUN_DIR_ROOT}/rkpipe-4194304x00000000"


def _check_case(raw: dict, problems: _Problems) -> None:
    """Stage names that differ only in case would share their stream's files on a case-blind
    file system (an SD card) and a Home Assistant entity id."""
    seen: dict[str, str] = {}
    for name in raw:
        first = seen.setdefault(name.lower(), name)
        if first != name:
            problems.add(
                ("stages", name),
                f'stage names "{first}" and "{name}" differ only in case: their streams would '
                "share files and Home Assistant ids; rename one",
            )


def _interpolate(value: Any, keys: tuple[str, ...], problems: _Problems) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string; an unset variable without a
    default is a problem reported at its key."""
    if isinstance(value, dict):
        return {k: _interpolate(v, (*keys, str(k)), problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, keys, problems) for v in value]
    if not isinstance(value, str) or "${" not in value:
        return value

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        got = variable_value(name, default)
        if got is None:
            problems.add(
                keys,
                f"environment variable {name} is not set "
                f"(write ${{{name}:-default}} to give a default)",
            )
            return ""
        if is_secret_name(name):  # ${MQTT_PASS}: masked wherever it shows up from now on
            remember(got)
        return got

    return ENV_REF.sub(sub, value)


def _settings(raw: Any, problems: _Problems) -> PipelineSettings:
    try:
        return PipelineSettings(**(raw if isinstance(raw, dict) else {}))
    except ValidationError as exc:
        for loc, text in format_validation_error(exc, PipelineSettings):
            problems.add(("pipeline", *loc), text)
        return PipelineSettings()


def _stage(name: str, table: Any, graph_dir: Path, problems: _Problems) -> StageDef | None:
    keys = ("stages", name)
    if not isinstance(table, dict):
        problems.add(keys, f"expected a table [stages.{name}]")
        return None
    if "uses" not in table:
        problems.add(
            keys, 'missing "uses": name a built-in stage, "module:Class" or "file.py:Class"'
        )
        return None
    common_raw = {k: v for k, v in table.items() if k in COMMON_KEYS}
    options = {k: v for k, v in table.items() if k not in COMMON_KEYS}
    try:
        common = StageCommon(**common_raw)
    except ValidationError as exc:
        for loc, text in format_validation_error(exc, StageCommon):
            problems.add((*keys, *loc[:1]), text)
        return None
    try:
        cls = resolve_stage(common.uses, graph_dir)
    except GraphError as exc:
        problems.add((*keys, "uses"), str(exc))
        return None
    try:
        # ``graph_dir`` lets options check files they name (a model) at validate time
        config = cls.Config.model_validate(options, context={"graph_dir": graph_dir})
    except ValidationError as exc:
        for loc, text in format_validation_error(exc, cls.Config, COMMON_KEYS):
            problems.add((*keys, *loc), text)
        return None
    if common.enabled:  # a disabled stage writes nothing
        for key, reason in output_problems(config, graph_dir):
            problems.add((*keys, key), reason)
    sdef = StageDef(name, common, cls, config, options)
    if common.replicas > 1 and cls.replica_options(config) is not None:
        problems.add(
            (*keys, "replicas"),
            f'"{common.uses}" sets its own processes from its options (e.g. npu_cores); '
            "remove replicas",
        )
    elif common.replicas > 1 and not cls.replicable:
        problems.add(
            (*keys, "replicas"),
            f'stage "{common.uses}" keeps per-stream state and runs as one process; '
            "remove replicas",
        )
    return sdef


def _check_stream_paths(stages: dict[str, StageDef], graph_dir: Path, problems: _Problems) -> None:
    """An output path with ``{stream}`` must be a path the file system takes for each of the
    graph's streams (a long stream name in a long template makes a file name past 255)."""
    streams = [name for name, sdef in stages.items() if sdef.is_source]
    for name, sdef in stages.items():
        for key, template in declared_outputs(sdef.config, graph_dir):
            if "{stream}" not in str(template):
                continue
            for stream in streams:
                if why := path_problem(str(template).replace("{stream}", stream)):
                    problems.add(
                        ("stages", name, key),
                        f"for stream {stream!r}: {why}; use a shorter path or stream name",
                    )
                    break


def insecure_links(graph: Graph) -> list[str]:
    """A warning for each tcp:// link the graph lets go in clear (``insecure = true``)."""
    return [
        f"stages.{name}: the tcp:// link {sdef.common.endpoint} is not encrypted (insecure = "
        "true): anyone on the network can read its frames and the run's token; set "
        "curve_key_file to encrypt it"
        for name, sdef in graph.stages.items()
        if (sdef.common.endpoint or "").startswith("tcp://") and not sdef.common.curve_key_file
    ]


def _key_file_problem(path: Path, key: str) -> str | None:
    """Why a CurveZMQ secret key file is not safe to use: readable by others, or not ours."""
    try:
        st = path.stat()
    except OSError:
        return None  # reading it says what is wrong
    if st.st_uid != os.getuid():
        return f"{key!r} belongs to another user (uid {st.st_uid}): a key must be your own"
    if stat.S_IMODE(st.st_mode) not in (0o600, 0o400):
        mode = oct(stat.S_IMODE(st.st_mode))[2:]
        return (
            f"{key!r} is mode {mode}: a secret key must be readable by you alone; "
            f"run: chmod 600 {shlex.quote(str(path))}"
        )
    return None


def _link_options(stages: dict[str, StageDef], graph_dir: Path, problems: _Problems) -> None:
    """Options a stage takes from the stages it feeds (letterbox: the model's input size),
    set in its config and in the options its processes start with."""
    sizes = {}
    for name, sdef in stages.items():
        size = sdef.cls.input_size(sdef.config, graph_dir)
        if size is not None:
            sizes[name] = size
    for name, sdef in stages.items():
        fed = {c: sizes[c] for c, d in stages.items() if name in d.common.inputs and c in sizes}
        options, found = sdef.cls.from_consumers(sdef.config, fed)
        for key, reason in found:
            problems.add(("stages", name, key), reason)
        if options and not found:
            sdef.options = {**sdef.options, **options}
            context = {"graph_dir": graph_dir}
            sdef.config = sdef.cls.Config.model_validate(sdef.options, context=context)


def _check_curve(stages: dict[str, StageDef], graph_dir: Path, problems: _Problems) -> None:
    """A tcp:// link is CurveZMQ unless the graph says ``insecure``; a certificate is for a
    tcp:// link, must be one ZeroMQ can load, and must be the user's alone (0600 or 0400)."""
    for name, sdef in stages.items():
        key = sdef.common.curve_key_file
        tcp = (sdef.common.endpoint or "").startswith("tcp://")
        if key is None:
            if tcp and not sdef.common.insecure:
                problems.add(
                    ("stages", name, "endpoint"),
                    "a tcp:// link carries frames and the run's token: encrypt it with "
                    "curve_key_file, or set insecure = true to send it in clear",
                )
            continue
        keys = ("stages", name, "curve_key_file")
        if not tcp:
            problems.add(keys, 'encrypts a tcp:// link: set endpoint = "tcp://HOST:PORT" too')
            continue
        try:
            public, secret = load_certificate(graph_dir / key)
        except (OSError, ValueError) as exc:
            problems.add(keys, f"cannot read a ZeroMQ certificate from {key!r}: {exc}")
            continue
        if not public or not secret:
            problems.add(
                keys,
                f"{key!r} has no secret key: name the .key_secret file that "
                "zmq.auth.create_certificates() made",
            )
        elif (why := _key_file_problem(graph_dir / key, key)) is not None:
            problems.add(keys, why)


def _check_links(
    raw: dict, stages: dict[str, StageDef], disabled: set[str], problems: _Problems
) -> None:
    for name, sdef in stages.items():
        keys = ("stages", name, "inputs")
        if sdef.is_source and sdef.common.inputs:
            problems.add(keys, f'"{sdef.common.uses}" is a source and takes no inputs')
        if not sdef.is_source and not sdef.common.inputs:
            problems.add(keys, "expected a list of stage names to read from, got none")
        for inp in sdef.common.inputs:
            if inp == name:
                problems.add(keys, f'stage "{name}" cannot read its own output')
            elif inp in disabled:
                problems.add(keys, f'stage "{inp}" is disabled (enabled = false)')
            elif inp not in raw:
                close = difflib.get_close_matches(inp, list(raw), n=1)
                hint = (
                    f'; did you mean "{close[0]}"?' if close else f"; stages are: {', '.join(raw)}"
                )
                problems.add(keys, f'unknown stage "{inp}"{hint}')
    if len(stages) + len(disabled) == len(raw) and not any(s.is_source for s in stages.values()):
        problems.add(("stages",), "no source stage; add a capture or synthetic stage")


def _check_cpus(stages: dict[str, StageDef], topology: Topology, problems: _Problems) -> None:
    cpus = set(topology.cpus)
    have = format_cpus(cpus, empty="none")
    for name, sdef in stages.items():
        cpu_sets = sdef.common.cpus
        if isinstance(cpu_sets, str):  # a name: placed from the topology
            if why := topology.check(cpu_sets):
                problems.add(("stages", name, "cpus"), why)
            continue
        flat = [c for s in cpu_sets for c in (s if isinstance(s, list) else [s])]
        missing = sorted(set(flat) - cpus)
        if missing:
            problems.add(
                ("stages", name, "cpus"),
                f"CPU {missing} not present on this machine (available: {have})",
            )
        if cpu_sets and isinstance(cpu_sets[0], list) and len(cpu_sets) != _replica_count(sdef):
            problems.add(
                ("stages", name, "cpus"),
                f"expected one CPU list per replica ({_replica_count(sdef)}), got {len(cpu_sets)}",
            )


def _replica_count(sdef: StageDef) -> int:
    per = sdef.cls.replica_options(sdef.config)
    return len(per) if per else sdef.common.replicas


def _check_cycles(stages: dict[str, StageDef], problems: _Problems) -> None:
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> bool:
        state[name] = 1
        for inp in stages[name].common.inputs:
            if state.get(inp) == 1:
                cycle = [*trail[trail.index(inp) :], inp] if inp in trail else [inp, name, inp]
                problems.add(
                    ("stages", name, "inputs"),
                    f"cycle: {' -> '.join(cycle)}; a graph must flow one way",
                )
                return True
            if state.get(inp) is None and visit(inp, [*trail, inp]):
                return True
        state[name] = 2
        return False

    for name in stages:
        if state.get(name) is None and visit(name, [name]):
            return
