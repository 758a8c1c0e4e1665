"""Entry point of every stage process: ``python -m pipeline.runtime.child INSTANCE``.

The supervisor passes the instance's job (``job.Job``) in the environment; the process was
already bound to die with the supervisor before it began (``supervise.spawn``), and it
checks here, first thing, that the supervisor is still there. Setup happens here, in the
child: placement, logging, the stage's own ``setup`` (models, devices). A user error there
(missing model, dead camera) is reported to the supervisor as one line and exits with status
EXIT_SETUP (3), which the supervisor does not retry.

The process ends with ``os._exit`` once everything is closed, so no library thread still
running (a camera reader blocked in a native read) can abort it during interpreter shutdown.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import traceback
from pathlib import Path

from ..errors import EXIT_SETUP, GraphError, StageSetupError
from ..outputs import prepare_outputs
from ..secrets import MaskingFormatter, mask, mask_excepthooks, remember
from ..supervise.affinity import cap_opencv_threads, pin_to_cpus, set_process_name
from . import reconfigure
from .job import Job, run_token

PARENT_ENV = "RKPIPE_SUPERVISOR_PID"


def _orphaned() -> bool:
    """True if the supervisor that started this process is gone already."""
    expected = os.environ.get(PARENT_ENV)
    return expected is not None and os.getppid() != int(expected)


def _report(control: str, instance: str, kind: str, error: str) -> None:
    """Tell the supervisor why this process ends. A private context is terminated before
    returning, so the message is on the wire before the process exits (a shared context's
    I/O thread would die with the process and could drop it)."""
    import zmq

    from ..transport.codec import packb

    ctx = zmq.Context()
    try:
        sock = ctx.socket(zmq.PUSH)
        sock.connect(control)
        event = {"instance": instance, "pid": os.getpid(), "t": kind, "error": mask(error)}
        sock.send(packb({**event, "token": run_token()}))
        sock.close(linger=5000)
    finally:
        ctx.term()


STOP_EARLY: list[int] = []  # a SIGTERM that came before the worker was there to take it


def main() -> int:
    signal.signal(signal.SIGTERM, lambda signum, _frame: STOP_EARLY.append(signum))
    reconfigure.install()  # new options from a reload, taken once the loop runs
    if _orphaned():
        return 1
    job = Job.from_env()
    spec = job.spec
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's to handle
    set_process_name(f"rk:{spec.instance}")
    pin_to_cpus(spec.cpus)
    cap_opencv_threads(spec.cpus)
    remember(*job.secrets)  # values the graph took from secret-named ${VAR}s
    mask_excepthooks()  # a traceback of any of the stage's threads is printed masked
    handler = logging.StreamHandler()
    handler.setFormatter(MaskingFormatter(f"[{spec.instance}] %(message)s"))
    logging.basicConfig(level=job.log_level, handlers=[handler])
    try:
        from ..graph.resolve import resolve_stage
        from .source_worker import SourceWorker
        from .worker import StageWorker

        cls = resolve_stage(spec.uses, Path(spec.graph_dir))
        stage = cls(cls.Config(**spec.options))
        prepare_outputs(stage.config, spec.stage, Path(spec.graph_dir))
        worker = SourceWorker(job, stage) if spec.is_source else StageWorker(job, stage)  # type: ignore[arg-type]
        return worker.run(STOP_EARLY)
    except (StageSetupError, GraphError) as exc:
        _report(job.control, spec.instance, "fatal", str(exc))
        return EXIT_SETUP
    except Exception as exc:  # a bug in a stage: show it, and let the supervisor restart us
        print(mask(traceback.format_exc()), file=sys.stderr, end="")
        _report(job.control, spec.instance, "crash", f"{type(exc).__name__}: {exc}")
        return 1


def _profiled(out_dir: str) -> int:
    """Run under cProfile and write ``<out_dir>/<instance>.prof`` (RKPIPE_PROFILE_DIR):
    where a stage process spends its CPU, for tuning stages and the runtime. The clock is the
    main thread's CPU time, so waiting (poll, a sleeping backend) and the other processes
    of a loaded machine do not show as cost."""
    import cProfile
    import time

    prof = cProfile.Profile(time.thread_time)
    try:
        return prof.runcall(main)
    finally:
        name = sys.argv[1] if len(sys.argv) > 1 else "stage"
        prof.dump_stats(str(Path(out_dir) / f"{name}.{os.getpid()}.prof"))


def _exit(code: int) -> None:
    """Leave now: let ZeroMQ hand over what was sent last (bounded by each socket's linger),
    flush what was printed, and skip interpreter teardown."""
    import threading

    import zmq

    done = threading.Thread(target=zmq.Context.instance().term, daemon=True)
    done.start()
    done.join(timeout=10.0)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    profile_dir = os.environ.get("RKPIPE_PROFILE_DIR")
    _exit(_profiled(profile_dir) if profile_dir else main())
