"""Entry point of every stage process: ``python -m pipeline.runtime.child INSTANCE``.

The supervisor passes the instance's plan as JSON in ``RKPIPE_SPEC``. Setup happens here, in the
child: placement, logging, the stage's own ``setup`` (models, devices). A user error there
(missing model, dead camera) is reported to the supervisor as one line and exits with
status EXIT_SETUP (3),
which the supervisor does not retry.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import traceback
from pathlib import Path

import zmq

from ..errors import EXIT_SETUP, GraphError, StageSetupError
from ..graph.plan import InstanceSpec
from ..graph.resolve import resolve_stage
from ..supervise.affinity import cap_opencv_threads, die_with_parent, pin_to_cpus, set_process_name
from ..transport.codec import packb


def _report(control: str | None, instance: str, kind: str, error: str) -> None:
    """Tell the supervisor why this process ends. A private context is terminated before returning,
    so the message is on the wire before the process exits (a shared context's I/O thread would
    die with the process and could drop it)."""
    if not control:
        print(f"rkpipe: {instance}: {error}", file=sys.stderr)
        return
    ctx = zmq.Context()
    try:
        sock = ctx.socket(zmq.PUSH)
        sock.connect(control)
        sock.send(packb({"instance": instance, "pid": os.getpid(), "t": kind, "error": error}))
        sock.close(linger=5000)
    finally:
        ctx.term()


def main() -> int:
    job = json.loads(os.environ["RKPIPE_SPEC"])
    spec = InstanceSpec(**{**job["spec"], "inputs": [tuple(x) for x in job["spec"]["inputs"]]})
    control = job.get("control")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's to handle
    die_with_parent()
    set_process_name(f"rk:{spec.instance}")
    pin_to_cpus(spec.cpus)
    cap_opencv_threads(spec.cpus)
    logging.basicConfig(level=job.get("log_level", "INFO"), format=f"[{spec.instance}] %(message)s")
    try:
        from .source_worker import SourceWorker
        from .worker import StageWorker

        cls = resolve_stage(spec.uses, Path(spec.graph_dir))
        stage = cls(cls.Config(**spec.options))
        kwargs = dict(
            control=control,
            restarted=job.get("restarted", False),
            finished=job.get("finished", []),
            resume_seq=job.get("resume_seq", -1),
            lost_ends=job.get("lost_ends", {}),
        )
        if spec.is_source:
            worker: StageWorker = SourceWorker(
                spec, stage, max_frames=job.get("max_frames"), **kwargs
            )
        else:
            worker = StageWorker(spec, stage, **kwargs)
        return worker.run()
    except (StageSetupError, GraphError) as exc:
        _report(control, spec.instance, "fatal", str(exc))
        return EXIT_SETUP
    except Exception as exc:  # a bug in a stage: show it, and let the supervisor restart us
        traceback.print_exc()
        error = f"{type(exc).__name__}: {exc}"
        _report(control, spec.instance, "crash", error)
        return 1


def _profiled(out_dir: str) -> int:
    """Run under cProfile and write ``<out_dir>/<instance>.prof`` (RKPIPE_PROFILE_DIR):
    where a stage process spends its CPU, for tuning stages and the runtime."""
    import cProfile

    instance = json.loads(os.environ["RKPIPE_SPEC"])["spec"]["stage"]
    prof = cProfile.Profile()
    try:
        return prof.runcall(main)
    finally:
        replica = json.loads(os.environ["RKPIPE_SPEC"])["spec"].get("replica", 0)
        prof.dump_stats(str(Path(out_dir) / f"{instance}.{replica}.{os.getpid()}.prof"))


if __name__ == "__main__":
    profile_dir = os.environ.get("RKPIPE_PROFILE_DIR")
    sys.exit(_profiled(profile_dir) if profile_dir else main())
