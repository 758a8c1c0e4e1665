"""The fixed vocabulary of graph files: ``[pipeline]`` settings and the keys every stage has."""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ..cpus import CPU_NAME
from ..httpguard import is_loopback
from ..names import MAX_PIPELINE_NAME, ident_problem
from ..node import check_node, default_node
from ..secrets import mask_value

__all__ = ["COMMON_KEYS", "PipelineSettings", "StageCommon", "format_validation_error"]

_TOKEN = re.compile(r"[A-Za-z0-9._~-]{8,}")


class PipelineSettings(BaseModel):
    """``[pipeline]``: the run's name and runtime settings, all with working defaults."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        "pipeline",
        description=f"1-{MAX_PIPELINE_NAME} letters, digits, _ or -: in MQTT client ids, "
        "topics, Home Assistant ids and the mqtt sink's state folder",
    )
    node: str = Field(
        default_factory=default_node,
        description="this board's id in MQTT topics, client and Home Assistant ids, and "
        "metrics (default: the host name); boards sharing a broker need different ones",
    )
    window: int = Field(2, ge=1, le=64, description="messages in flight per link (credits)")
    source_demand: bool = Field(
        False,
        description="a stage fed by sources takes their frames only as the stages behind it "
        "have room, so under overload frames wait (and live ones are replaced) at the source",
    )
    reorder_timeout_ms: float = Field(
        1000, gt=0, description="wait for a lost frame before skipping it"
    )
    spin_us: float = Field(
        200, ge=0, le=10_000, description="poll this long before sleeping while messages come fast"
    )
    stats_interval_s: float = Field(
        60.0,
        gt=0,
        description="how often the summary line prints when the output is not a terminal "
        "(--no-live, a service's journal); stages report at least every second",
    )
    heartbeat_timeout_s: float = Field(
        20.0, gt=0, description="a stage silent this long is restarted"
    )
    startup_timeout_s: float = Field(120.0, gt=0, description="time allowed for a stage's setup")
    shutdown_grace_s: float = Field(
        10.0, gt=0, description="time to drain before processes are killed"
    )
    restart_limit: int = Field(5, ge=0, description="restarts allowed within restart_window_s")
    restart_window_s: float = Field(60.0, gt=0)
    prometheus_port: int | None = Field(
        None, ge=0, le=65535, description="serve Prometheus metrics on this port (0: any free)"
    )
    prometheus_host: str = Field("127.0.0.1", description="address the metrics endpoint binds")
    prometheus_token: str | None = Field(
        None,
        description="required of every scrape (Authorization: Bearer); needed when "
        "prometheus_host is not localhost",
    )
    fail_on_source_down_s: float | None = Field(
        None,
        gt=0,
        description="a camera not live this long ends the run with an error (exit 1), e.g. "
        "for systemd to restart it; default: wait for it forever",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if why := ident_problem(value, "pipeline name", MAX_PIPELINE_NAME):
            raise ValueError(why)
        return value

    @field_validator("prometheus_token")
    @classmethod
    def _usable_token(cls, value: str | None) -> str | None:
        if not value:
            return None  # prometheus_token = "${RKPIPE_METRICS_TOKEN:-}" unset: none
        if not _TOKEN.fullmatch(value):
            msg = "a token is at least 8 letters, digits or ._~- characters"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _token_beyond_localhost(self) -> PipelineSettings:
        if not is_loopback(self.prometheus_host) and self.prometheus_token is None:
            msg = (
                f"prometheus_host {self.prometheus_host!r} lets other machines read the run's "
                "metrics (stage names, cameras, rates): set prometheus_token (from an "
                "environment variable such as ${RKPIPE_METRICS_TOKEN}) or listen on 127.0.0.1"
            )
            raise ValueError(msg)
        return self

    @field_validator("node")
    @classmethod
    def _node(cls, value: str) -> str:
        return check_node(value)


CpuSpec = list[int] | list[list[int]] | str


class StageCommon(BaseModel):
    """Keys every ``[stages.NAME]`` table may have besides the stage's own options."""

    model_config = ConfigDict(extra="forbid")

    uses: str
    enabled: bool = Field(True, description="false: the stage is left out of the run")
    inputs: list[str] = Field(default_factory=list)
    cpus: CpuSpec = Field(
        default_factory=list, description='ids, one list per replica, or "big", "little:2", ...'
    )
    replicas: int = Field(1, ge=1, le=64)
    partition: Literal["free", "stream"] = "free"
    pool_slots: int | None = Field(None, ge=2, le=512)
    endpoint: str | None = None
    curve_key_file: str | None = Field(
        None,
        description="with a tcp:// endpoint: a ZeroMQ certificate (the .key_secret file of "
        "zmq.auth.create_certificates) that encrypts the link and proves the producer",
    )
    best_effort: bool | None = Field(
        None,
        description="a sink that falls behind gets frames it has no room for counted as "
        "dropped ('behind') instead of holding up its producer and the other sinks; default: "
        "the stage's own choice (true for preview)",
    )
    insecure: bool = Field(
        False,
        description="with a tcp:// endpoint and no curve_key_file: carry the link (frames and "
        "the run's token) in clear; refused unless set, and warned of at validate and run",
    )
    on_failure: Literal["restart", "disable", "stop"] | None = Field(
        None,
        description="when its process dies: restart (with backoff; the run ends past "
        "restart_limit), disable (the same, but past the limit the stage is left out and the "
        'run goes on), stop (end the run). Default: "disable" for sinks, else "restart"',
    )

    @field_validator("cpus")
    @classmethod
    def _cpu_name(cls, value: CpuSpec) -> CpuSpec:
        if isinstance(value, str) and CPU_NAME.match(value) is None:
            msg = 'CPU ids, one list per replica, or a name: "big", "little", "any", "big:2"'
            raise ValueError(msg)
        return value


COMMON_KEYS = frozenset(StageCommon.model_fields)


def format_validation_error(
    exc: ValidationError, model: type[BaseModel] | None = None, more_keys: Iterable[str] = ()
) -> list[tuple[tuple[str, ...], str]]:
    """Pydantic errors as (key path, 'expected ..., got ...') pairs a person can act on.

    A value shown is masked when its key is named like a secret. Given the ``model`` that was
    validated, an unknown key gets the closest known one as a hint (``more_keys`` are known at
    the top level too: the keys every stage table has)."""
    out = []
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        kind = err["type"]
        got = mask_value(loc[-1] if loc else "", err.get("input"))
        if kind == "extra_forbidden":
            text = "unknown option" + _did_you_mean(model, loc, more_keys)
        elif kind == "missing" and err["loc"] and isinstance(err["loc"][-1], int):
            loc = loc[:-1]  # an item of a fixed-size list, e.g. the y of a point
            text = f"expected more values (item {err['loc'][-1] + 1} is missing), got {got!r}"
        elif kind == "missing":
            text = "required option is missing"
        elif kind in ("too_long", "too_short"):
            text = f"{_length(err)}, got {err['ctx']['actual_length']}: {got!r}"
        elif kind in _WORDS:
            text = f"{_WORDS[kind]}, got {got!r}"
        else:
            text = _expected(err["msg"])
            # a whole table (a check across keys), or a message that names the value already
            if "input" in err and loc and not (kind == "value_error" and _names(text, got)):
                text += f", got {got!r}"
        out.append((loc, text))
    return out


# pydantic's messages that add a clause of their own ("..., unable to interpret input")
_WORDS = {
    "bool_parsing": "expected true or false",
    "bool_type": "expected true or false",
    "int_from_float": "expected a whole number",
    "int_parsing": "expected a valid integer",
    "float_parsing": "expected a valid number",
}


def _length(err: Any) -> str:
    """A too long or too short list or tuple, in rkpipe's words (not pydantic's)."""
    ctx = err["ctx"]
    if err["type"] == "too_short":
        n = ctx["min_length"]
        return f"expected at least {n} item{'s' * (n != 1)}"
    n = ctx["max_length"]
    if ctx.get("field_type") == "Tuple":
        return f"expected {n} value{'s' * (n != 1)}"
    return f"expected at most {n} item{'s' * (n != 1)}"


def _names(text: str, value: Any) -> bool:
    """Whether a check's own message already shows the value (``got ...``, a path, a name):
    then ', got' would repeat it."""
    return "got " in text or (isinstance(value, str) and len(value) >= 3 and value in text)


def _did_you_mean(model: type[BaseModel] | None, loc: tuple[str, ...], more: Iterable[str]) -> str:
    known = _keys_at(model, loc[:-1]) if model is not None else set()
    if len(loc) == 1:
        known |= set(more)
    close = difflib.get_close_matches(loc[-1], sorted(known), n=1) if loc else []
    return f'; did you mean "{close[0]}"?' if close else ""


def _keys_at(model: type[BaseModel], path: tuple[str, ...]) -> set[str]:
    """The field names of the model found at ``path`` inside ``model`` (through nested
    models, lists, tuples, dicts and optionals); empty when the path leads elsewhere."""
    kinds: list[Any] = [model]
    for part in path:
        kinds = [step for kind in kinds for step in _inside(kind, part)]
    return {
        name
        for kind in kinds
        if isinstance(kind, type) and issubclass(kind, BaseModel)
        for name in kind.model_fields
    }


def _inside(kind: Any, part: str) -> list[Any]:
    """What ``kind`` holds at ``part`` (a field name, list index or dict key)."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType, typing.Annotated):
        return [k for arg in (args[:1] if origin is typing.Annotated else args)
                for k in _inside(arg, part)]  # fmt: skip
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        field = kind.model_fields.get(part)
        return [field.annotation] if field is not None else []
    if origin in (list, tuple, set, frozenset) and args:
        return [args[0]]
    if origin is dict and len(args) == 2:
        return [args[1]]
    return []


def _expected(pydantic_msg: str) -> str:
    text = pydantic_msg
    for prefix in ("Input should be ", "Value error, "):
        if text.startswith(prefix):
            text = text[len(prefix) :]
            return f"expected {text}" if prefix.startswith("Input") else text
    return text[0].lower() + text[1:] if text else text
