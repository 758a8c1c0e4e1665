"""CPUs by name ("big", "little", "big:2", "any"), placed from the machine's topology as
sysfs shows it (fixture trees of an RK3588 and an x86 box), and shown by `rkpipe graph`."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cpus import PRESETS, CpuPlacer, Topology, read_topology
from pipeline.errors import GraphError
from pipeline.graph.load import load_graph
from pipeline.graph.plan import make_plan
from support.graph import Graph
from support.machines import rk3588_board, x86_box
from support.rkpipe import run_rkpipe


def test_an_rk3588_has_four_big_and_four_little_cores(tmp_path: Path) -> None:
    topo = read_topology(rk3588_board(tmp_path))
    assert (topo.big, topo.little, topo.source) == ((4, 5, 6, 7), (0, 1, 2, 3), "cpu_capacity")
    assert topo.describe() == "0-7: big 4-7, little 0-3 (cpu_capacity)"


def test_without_cpu_capacity_the_top_clock_tells_big_from_little(tmp_path: Path) -> None:
    root = rk3588_board(tmp_path)
    for f in root.glob("sys/devices/system/cpu/cpu*/cpu_capacity"):
        f.unlink()
    topo = read_topology(root)
    assert (topo.big, topo.little, topo.source) == ((4, 5, 6, 7), (0, 1, 2, 3), "cpufreq")


def test_cores_all_alike_are_both_big_and_little(tmp_path: Path) -> None:
    topo = read_topology(x86_box(tmp_path, cpus=4))
    assert topo.big == topo.little == topo.cpus == (0, 1, 2, 3) and not topo.mixed
    assert read_topology(x86_box(tmp_path, cpus=4), allowed={1, 2}).cpus == (1, 2)


def test_names_are_placed_per_process_with_a_cursor_per_kind() -> None:
    placer = CpuPlacer(PRESETS["rk3588"])
    assert placer.place("little", 0) == [0, 1, 2, 3]
    assert placer.place("any", 0) == list(range(8))
    assert [placer.place("big:1", r) for r in range(2)] == [[4], [5]]  # two replicas
    assert placer.place("big:2", 0) == [6, 7]  # the next stage that asks
    assert placer.place("big:3", 0) == [4, 5, 6]  # wraps round: 4 cores are 4 cores
    flat = CpuPlacer(Topology.uniform([0, 1]))
    assert [flat.place("big:1", 0), flat.place("little:1", 0), flat.place("big:1", 0)] == [
        [0],
        [0],
        [1],
    ]
    assert placer.place([[1], [2]], 1) == [2] and placer.place([3], 1) == [3]


def named_cpus_graph(tmp_path: Path, cam: str, work: str) -> Path:
    """A source on CPUs ``cam``, two replicas on ``work`` each, and a sink; CPUs by name."""
    return (
        Graph()
        .source("cam", uses="synthetic", frames=1, cpus=cam)
        .stage("work", uses="passthrough", inputs=["cam"], replicas=2, cpus=work)
        .sink("out", uses="jsonl", inputs=["work"], path="out.jsonl")
        .write(tmp_path)
    )


def test_a_graph_with_names_is_planned_from_the_topology(tmp_path: Path) -> None:
    path = named_cpus_graph(tmp_path, cam="little", work="big:2")
    plan = make_plan(load_graph(path, cpus=PRESETS["rk3588"]), "x", "/tmp/x")
    assert {i.instance: i.cpus for i in plan.instances} == {
        "cam": [0, 1, 2, 3],
        "work.0": [4, 5],
        "work.1": [6, 7],
        "out": [],
    }
    flat = make_plan(load_graph(path, cpus={0, 1}), "x", "/tmp/x")
    assert [i.cpus for i in flat.instances] == [[0, 1], [0, 1], [0, 1], []]


@pytest.mark.parametrize(
    ("cam", "words"),
    [
        ("huge", 'stages.cam.cpus: CPU ids, one list per replica, or a name: "big"'),
        (
            "big:5",
            "stages.cam.cpus: 'big:5' asks for 5 big cores; this machine has 4 (0-7: big 4-7",
        ),
    ],
)
def test_a_name_the_machine_cannot_place_is_a_graph_error(
    tmp_path: Path, cam: str, words: str
) -> None:
    path = named_cpus_graph(tmp_path, cam=cam, work="any")
    with pytest.raises(GraphError) as err:
        load_graph(path, cpus=PRESETS["rk3588"])
    assert words in str(err.value)


def test_rkpipe_graph_shows_where_names_land_on_a_board(tmp_path: Path) -> None:
    path = named_cpus_graph(tmp_path, cam="little", work="big:1")
    res = run_rkpipe("graph", "--cpus", "rk3588", str(path))
    assert res.returncode == 0, res.stderr
    assert "CPUs 0-7: big 4-7, little 0-3 (preset rk3588)" in res.stdout
    assert "cpus 0-3 (little)" in res.stdout
    assert "cpus 4 (big:1)" in res.stdout and "cpus 5 (big:1)" in res.stdout
    bad = run_rkpipe("validate", "--cpus", "rk9999", str(path))
    assert bad.returncode == 2 and "or a board (rk3588" in bad.stderr
