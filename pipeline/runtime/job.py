"""What the supervisor tells a stage process to do: its plan and its place in the run.

It travels as JSON in the ``RKPIPE_JOB`` environment variable; the run's token travels
beside it in ``RKPIPE_TOKEN`` (the environment of a process is readable only by its user).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from ..graph.plan import InstanceSpec

__all__ = ["JOB_ENV", "TOKEN_ENV", "Job"]

JOB_ENV = "RKPIPE_JOB"
TOKEN_ENV = "RKPIPE_TOKEN"
GRAPH_ENV = "RKPIPE_GRAPH_FILE"  # the running graph's file, for a stage that changes it (the API)


@dataclass
class Job:
    """One stage process's instructions."""

    spec: InstanceSpec
    control: str  # the supervisor's control socket
    run_dir: str  # the run's socket folder
    ledger: str  # this instance's ledger (shared memory), made by the supervisor
    run_ledger: str  # the run's ledger: when processes died
    restarted: bool = False
    finished: list[str] = field(default_factory=list)  # instances that already ended cleanly
    lost_ends: dict[str, list[int]] = field(
        default_factory=dict
    )  # stream -> [END seq, source_drops]
    max_frames: int | None = None  # a source stops after this many frames of its stream
    log_level: str = "WARNING"
    secrets: list[str] = field(default_factory=list)  # values to mask in all the stage prints

    def to_env(self) -> str:
        return json.dumps({**asdict(self), "spec": self.spec.to_json()})

    @classmethod
    def from_env(cls) -> Job:
        data: dict[str, Any] = json.loads(os.environ[JOB_ENV])
        return cls(**{**data, "spec": InstanceSpec.from_json(data["spec"])})


def run_token() -> str:
    """The run's secret, which links and the control channel require."""
    return os.environ.get(TOKEN_ENV, "")


__all__ += ["run_token"]
