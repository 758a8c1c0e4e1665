"""The ``rkpipe`` command: run, validate and show graphs.

User errors (bad graph, missing model, dead camera) print one clear message and exit non-zero
without a traceback; exit status 2 means the graph is invalid.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from . import __version__
from .cpus import Topology, format_cpus, topology_for
from .errors import EXIT_FAILED, EXIT_INTERRUPTED, GraphError, RkpipeError
from .graph.load import Graph, insecure_links, load_graph
from .graph.plan import make_plan
from .output_files import folder_problem, make_folder, write_replacing
from .outputs import unwritable
from .registry import command, commands
from .secrets import mask, mask_options
from .stats.summary import final_lines

__all__ = ["main"]


def _machine(text: str) -> Topology:
    try:
        return topology_for(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, got {port}")
    return port


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rkpipe",
        description="Run real-time detection pipelines described by TOML graph files.",
    )
    p.add_argument("--version", action="version", version=f"rkpipe {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser(
        "run",
        help="run a graph until its sources end or Ctrl-C",
        description="Start one process per stage instance and run the graph.",
    )
    run.add_argument("graph", type=Path, help="graph file (TOML)")
    run.add_argument(
        "--duration", type=float, metavar="SECONDS", help="stop (drain) after this long"
    )
    run.add_argument("--frames", type=int, metavar="N", help="stop each source after N frames")
    run.add_argument(
        "--stats-out", type=Path, metavar="FILE.json", help="write final per-stage stats as JSON"
    )
    run.add_argument("--log-level", default="WARNING", help="log level inside stage processes")
    run.add_argument(
        "--live",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="live stats table redrawn in place (default: when stderr is a terminal); "
        "--no-live prints a summary line every --stats-interval seconds",
    )
    run.add_argument(
        "--stats-interval",
        type=_positive,
        metavar="SECONDS",
        help="seconds between summary lines without the live table (overrides "
        "stats_interval_s in [pipeline]; default 60)",
    )
    run.add_argument(
        "--prometheus",
        type=_port,
        metavar="PORT",
        help="serve Prometheus metrics on this port (0: any free port; overrides "
        "prometheus_port in [pipeline]); needs prometheus-client",
    )
    run.add_argument(
        "--watch",
        action="store_true",
        help="reload the graph when its file is saved (as SIGHUP or rkpipe reload do)",
    )
    val = sub.add_parser(
        "validate",
        help="check a graph file without running it",
        description="Validate a graph: syntax, stages, options, links, CPUs.",
    )
    val.add_argument("graph", type=Path)
    val.add_argument(
        "--cpus",
        type=_machine,
        metavar="LIST|BOARD",
        help="validate for a machine with these CPUs, e.g. 0-7, or a board: rk3588",
    )
    show = sub.add_parser(
        "graph",
        help="print the expanded topology: processes, CPUs, sockets",
        description="Show the processes a graph becomes, their CPUs and sockets.",
    )
    show.add_argument("graph", type=Path)
    show.add_argument("--cpus", type=_machine, metavar="LIST|BOARD", help="as for validate")
    show.add_argument(
        "--plan",
        action="store_true",
        help="also the capacity plan: NPU time per frame, FPS offered, whether it fits",
    )
    for sp in (val, show):
        sp.add_argument(
            "--board-report",
            type=Path,
            metavar="FILE",
            help="NPU figures from this board_report.json (benchmarks/board_check.py; "
            "default: one in the working folder or beside the graph, else the reference)",
        )
    sub.add_parser("reload", help="make a running rkpipe run read its graph again", add_help=False)
    for name in sorted(commands()):  # registered subcommands; each parses its own arguments
        main_fn = command(name)
        doc = (main_fn.__doc__ or "").strip().splitlines() if main_fn else []
        sub.add_parser(name, help=doc[0] if doc else None, add_help=False)
    return p


def _warn_insecure(graph: Graph) -> None:
    """Say, on stderr, which links the graph sends in clear."""
    for line in insecure_links(graph):
        print(f"rkpipe: warning: {line}", file=sys.stderr)


def cmd_validate(args: argparse.Namespace) -> int:
    graph = load_graph(args.graph, cpus=args.cpus)
    _warn_insecure(graph)
    n = len(make_plan(graph, "check", "/tmp/rkpipe-check").instances)
    print(f"{args.graph}: ok ({len(graph.stages)} stages, {n} processes)")
    for lines in _plans(graph, args.board_report)[1]:
        print(f"{args.graph}: {lines[0]}")
    return 0


BOARD_REPORT = "board_report.json"  # benchmarks/board_check.py writes it on a board


def _plans(graph: Graph, given: Path | None) -> tuple[Path | None, list[list[str]]]:
    """The board report used (``given``, else one in the working folder or beside the
    graph) and each stage's capacity plan, summary line first."""
    report = given
    for folder in (Path.cwd(), graph.graph_dir):
        if report is None and (folder / BOARD_REPORT).is_file():
            report = folder / BOARD_REPORT
    plans = (sdef.cls.plan(name, graph, report) for name, sdef in graph.stages.items())
    return report, [p for p in plans if p]


def cmd_graph(args: argparse.Namespace) -> int:
    graph = load_graph(args.graph, cpus=args.cpus)
    plan = make_plan(graph, "RUN", "/tmp/rkpipe-RUN")
    print(f"pipeline {graph.settings.name!r} from {args.graph}: {len(plan.instances)} processes")
    print(f"CPUs {graph.topology.describe()}")
    for name in plan.order():
        named = graph.stages[name].common.cpus
        for inst in plan.by_stage(name):
            cpus = format_cpus(inst.cpus) + (f" ({named})" if isinstance(named, str) else "")
            row = f"{inst.instance:<16} {inst.uses:<18} cpus {cpus:<14} slots {inst.pool_slots:<4}"
            print(f"  {row} {inst.endpoint}")
            if inst.inputs:
                print(
                    f"  {'':<16} <- {', '.join(p for _, p, _ in inst.inputs)}"
                    + ("  (re-ordered per stream)" if inst.replicated_inputs() else "")
                )
        options = mask_options(graph.stages[name].options)  # this output gets pasted in issues
        if options:
            print(f"  {'':<16} {', '.join(f'{k}={v!r}' for k, v in options.items())}")
    if args.plan:
        report, plans = _plans(graph, args.board_report)
        source = f"board report {report}" if report else "no board report: reference figures"
        print(f"capacity plan ({source}):" if plans else "capacity plan: no NPU stage to plan")
        for lines in plans:
            print("\n".join(f"  {line}" for line in lines[1:]))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .doctor.graph import check_shm_room
    from .supervise.runs import sweep_stale
    from .supervise.supervisor import Supervisor

    graph = load_graph(args.graph)
    _warn_insecure(graph)
    if args.stats_out:  # checked now, not at the end
        folder = Path(os.path.abspath(args.stats_out)).parent
        why = unwritable(args.stats_out.resolve()) or folder_problem(folder, sticky_ok=True)
        if why:
            raise GraphError(f"--stats-out: cannot write {args.stats_out}: {why}")
    sweep_stale()  # a killed run's segments are not this run's shortage
    check_shm_room(graph)
    sup = Supervisor(
        graph,
        duration=args.duration,
        frames=args.frames,
        log_level=args.log_level.upper(),
        live=args.live,
        prometheus_port=args.prometheus,
        stats_interval_s=args.stats_interval,
        watch=args.watch,
    )
    # Our handler stays until the stats are written and the summary printed: any number of
    # Ctrl-C / SIGTERM drain, then stop, and never cut the teardown short.
    handler = lambda signum, _frame: sup.on_signal(signum)  # noqa: E731
    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    old[signal.SIGHUP] = signal.signal(signal.SIGHUP, lambda _s, _f: sup.on_reload())
    try:
        result = sup.run()
        for err in result.errors:
            print(f"rkpipe: error: {mask(err)}", file=sys.stderr)
        if args.stats_out and not _write_stats(args.stats_out, result.stats):
            return result.exit_code or EXIT_FAILED
        if result.stats.get("ran") or any(
            s["frames_in"] or s["frames_out"] for s in result.stats["stages"].values()
        ):  # a run that started ends with its summary, also when no frame moved
            print("\n".join(final_lines(result.stats)), file=sys.stderr)
        return result.exit_code
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _write_stats(path: Path, stats: dict[str, Any]) -> bool:
    """Write ``--stats-out`` in one step, never through a link at its name (a sticky
    folder such as /tmp is fine: only a file's owner may replace it there)."""
    try:
        make_folder(path.parent, sticky_ok=True)
        write_replacing(path, json.dumps(stats, indent=2).encode())
    except OSError as exc:
        print(f"rkpipe: error: --stats-out: cannot write {path}: {exc}", file=sys.stderr)
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    builtin = ("run", "validate", "graph", "reload")
    extra = command(argv[0]) if argv and argv[0] not in builtin else None
    if extra is not None:  # a registered subcommand (scene, export) parses its own arguments
        return extra(argv[1:])
    if argv and argv[0] == "reload":  # parses its own arguments too
        from .supervise.reload_request import main as reload_main

        run = lambda: reload_main(argv[1:])  # noqa: E731
    else:
        args = _parser().parse_args(argv)
        handler = {"run": cmd_run, "validate": cmd_validate, "graph": cmd_graph}[args.command]
        run = lambda: handler(args)  # noqa: E731
    try:
        return run()
    except RkpipeError as exc:
        text = mask(str(exc))
        print(
            f"rkpipe: error: {text}"
            if "\n" not in text
            else f"rkpipe: {len(getattr(exc, 'problems', [])) or 'several'} errors:\n{text}",
            file=sys.stderr,
        )
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
