"""``rkpipe deploy systemd|docker``: write the files that run a graph as a service.

``systemd`` fills the unit template (``rkpipe.service`` beside this module) with this
machine's paths: the ``rkpipe`` executable of the current environment, the graph and the
working folder, and writes an environment file with every variable the graph reads, at
its defaults, for camera URLs and passwords.
``docker`` writes the Dockerfile (and its ``.dockerignore``) that builds an image from a
checkout of the repository, and the environment file of the graph the image runs; both
print the steps that install or build them. Files are written in one step, never through a
link at their name, in a folder others cannot write.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from importlib import resources
from pathlib import Path
from string import Template

from pipeline.output_files import (
    PRIVATE,
    Modes,
    create_new,
    folder_problem,
    make_folder,
    write_replacing,
)

from .env_file import env_file_text

__all__ = ["main", "template", "unit_text"]

SHARED = Modes(0o644)  # a unit file and a Dockerfile hold no secret; the .env file is 0600

SYSTEMD_STEPS = """\
next, as root:
  useradd --system --no-create-home --groups video,render {user}   # once
  install -D -m 600 {env} {env_file}   # then put the cameras' URLs in it
  cp {unit} /etc/systemd/system/ && systemctl daemon-reload
  systemctl enable --now {name}
  journalctl -u {name} -f   # its output"""

DOCKER_STEPS = """\
next, from the repository root:
  docker build -f {dockerfile} -t rkpipe .
  docker run --rm --ipc=host --network=host --env-file rkpipe.env -v "$PWD/out:/app/out" rkpipe
on an RK3588 add: --device /dev/dri --device /dev/rga --device /dev/mpp_service \\
  --device /dev/rknpu --group-add video -v /usr/lib/librknnrt.so:/usr/lib/librknnrt.so:ro"""


IMAGE_GRAPH = Path(__file__).resolve().parents[2] / "graphs" / "two_streams.toml"  # its CMD


def template(name: str) -> str:
    """A file shipped in ``pipeline/deploy``."""
    return resources.files("pipeline.deploy").joinpath(name).read_text("utf-8")


def unit_text(graph: Path, user: str, workdir: Path, env_file: Path, exe: str) -> str:
    """The systemd unit running ``exe run graph`` as ``user`` in ``workdir``."""
    return Template(template("rkpipe.service")).substitute(
        graph=graph, user=user, workdir=workdir, env_file=env_file, exe=exe
    )


def _rkpipe_exe() -> str:
    """The ``rkpipe`` script of this environment (a venv's, not whichever is first on PATH)."""
    beside = Path(sys.executable).with_name("rkpipe")
    return str(beside) if beside.is_file() else (shutil.which("rkpipe") or "/usr/bin/rkpipe")


def _systemd(args: argparse.Namespace) -> int:
    graph = args.graph.resolve()
    if not graph.is_file():
        print(f"rkpipe deploy: graph {args.graph} not found", file=sys.stderr)
        return 2
    name = args.name.removesuffix(".service")
    if not _folder_ok(args.out):
        return 2
    unit = args.out / f"{name}.service"
    text = unit_text(graph, args.user, args.workdir.resolve(), args.env_file, _rkpipe_exe())
    write_replacing(unit, text.encode(), SHARED)
    env = args.out / f"{name}.env"
    wrote = [unit]
    if _write_env(env, graph):
        wrote.append(env)
    print(f"wrote {' and '.join(str(p) for p in wrote)}")
    print(
        SYSTEMD_STEPS.format(user=args.user, env=env, env_file=args.env_file, unit=unit, name=name)
    )
    return 0


def _write_env(env: Path, graph: Path) -> bool:
    """Write the environment file of ``graph`` (0600) unless one is there: it may hold real
    passwords, so it is never overwritten, nor written through a link. True if written."""
    fd = create_new(env, PRIVATE)
    if fd is None:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(env_file_text(graph, template("rkpipe.env")))
    return True


def _folder_ok(out: Path) -> bool:
    """Make ``out`` (0755) unless other users may write it: say so and return False."""
    try:
        why = folder_problem(out)
        if why is None:
            make_folder(out, SHARED)
    except OSError as exc:
        why = f"cannot make folder {out}: {exc.strerror or exc}"
    if why is not None:
        print(f"rkpipe deploy: --out: {why}", file=sys.stderr)
    return why is None


def _docker(args: argparse.Namespace) -> int:
    if not _folder_ok(args.out):
        return 2
    for name in ("Dockerfile", "Dockerfile.dockerignore"):
        write_replacing(args.out / name, template(name).encode(), SHARED)
    dockerfile = args.out / "Dockerfile"
    wrote = [str(dockerfile), f"{dockerfile}.dockerignore"]
    env = args.out / "rkpipe.env"
    if IMAGE_GRAPH.is_file() and _write_env(env, IMAGE_GRAPH):  # the image's graph, in a checkout
        wrote.append(str(env))
    print(f"wrote {', '.join(wrote[:-1])} and {wrote[-1]}")
    print(DOCKER_STEPS.format(dockerfile=dockerfile))
    return 0


def main(argv: list[str]) -> int:
    """write a systemd unit or a Dockerfile to run a graph as a service"""
    p = argparse.ArgumentParser(
        prog="rkpipe deploy",
        description="Write the files that run a graph as a service, and print how to install "
        "them. The templates are in pipeline/deploy/ of the rkpipe package.",
    )
    sub = p.add_subparsers(dest="target", required=True, metavar="TARGET")
    unit = sub.add_parser("systemd", help="a systemd unit and an environment file")
    unit.add_argument("graph", type=Path, help="the graph the service runs")
    unit.add_argument("--user", default="rkpipe", help="unprivileged user (default: rkpipe)")
    unit.add_argument(
        "--workdir", type=Path, default=Path.cwd(), help="working folder (default: here)"
    )
    unit.add_argument(
        "--env-file",
        type=Path,
        default=Path("/etc/rkpipe/rkpipe.env"),
        help="environment file the unit reads (default: /etc/rkpipe/rkpipe.env)",
    )
    unit.add_argument("--name", default="rkpipe", help="unit name (default: rkpipe)")
    unit.add_argument("-o", "--out", type=Path, default=Path("."), help="folder to write to")
    docker = sub.add_parser("docker", help="a Dockerfile for arm64 and amd64")
    docker.add_argument("-o", "--out", type=Path, default=Path("."), help="folder to write to")
    args = p.parse_args(argv)
    return _systemd(args) if args.target == "systemd" else _docker(args)
