"""What a reload would apply: a stage's changed options in place; a source added or removed,
with the stages that read it rewired, started or ended; any other change (a stage added or
removed between others, replicas, links, settings) is named as needing a restart."""

from __future__ import annotations

from pathlib import Path

from pipeline.graph.diff import diff_graphs
from pipeline.graph.load import load_graph
from support.graph import Graph


def _graph(
    folder: Path,
    conf: float = 0.25,
    replicas: int = 1,
    cams: tuple[str, ...] = ("cam0",),
    extra_sink: bool = False,
):
    g = Graph("diffed")
    for cam in cams:
        g = g.source(cam, uses="synthetic", frames=10)
    g = g.stage("decode", uses="yolov8_decode", inputs=list(cams), conf=conf, replicas=replicas)
    g = g.sink("out", uses="passthrough", inputs=["decode"])
    if extra_sink:
        g = g.sink("more", uses="passthrough", inputs=["decode"])
    folder.mkdir(exist_ok=True)
    return load_graph(g.write(folder))


def test_changed_options_alone_are_applied_in_place(tmp_path: Path) -> None:
    d = diff_graphs(_graph(tmp_path / "a"), _graph(tmp_path / "b", conf=0.6))
    assert d.options == {"decode": {"conf": 0.6}}
    assert d.restart == [] and d.added == [] and d.rewired == {}


def test_the_same_graph_is_no_change(tmp_path: Path) -> None:
    assert diff_graphs(_graph(tmp_path / "a"), _graph(tmp_path / "b")).empty


def test_a_source_added_rewires_its_reader(tmp_path: Path) -> None:
    d = diff_graphs(_graph(tmp_path / "a"), _graph(tmp_path / "b", cams=("cam0", "cam1")))
    assert d.added == ["cam1"] and d.removed == []
    assert d.rewired == {"decode": ["cam0", "cam1"]}
    assert d.restart == [] and not d.empty


def test_a_source_removed_rewires_its_reader(tmp_path: Path) -> None:
    d = diff_graphs(_graph(tmp_path / "a", cams=("cam0", "cam1")), _graph(tmp_path / "b"))
    assert d.removed == ["cam1"] and d.added == []
    assert d.rewired == {"decode": ["cam0"]}
    assert d.restart == []


def test_one_camera_swapped_for_another(tmp_path: Path) -> None:
    d = diff_graphs(_graph(tmp_path / "a"), _graph(tmp_path / "b", cams=("cam9",)))
    assert (d.added, d.removed, d.rewired) == (["cam9"], ["cam0"], {"decode": ["cam9"]})


def test_a_source_whose_reader_changes_otherwise_too_needs_a_restart(tmp_path: Path) -> None:
    d = diff_graphs(
        _graph(tmp_path / "a"), _graph(tmp_path / "b", replicas=2, cams=("cam0", "cam1"))
    )
    assert d.added == [] and d.rewired == {}
    assert d.restart == ["stage 'decode': inputs, replicas changed", "source 'cam1' added"]


def test_other_stages_added_and_replicas_need_a_restart(tmp_path: Path) -> None:
    d = diff_graphs(_graph(tmp_path / "a"), _graph(tmp_path / "b", replicas=2, extra_sink=True))
    assert d.options == {} and d.added == []
    assert d.restart == ["stage 'more' added", "stage 'decode': replicas changed"]


def test_npu_cores_that_change_the_number_of_processes(tmp_path: Path) -> None:
    """Two or more either side: processes started or let go while it runs; from or to one
    (the instance is named ``npu``, not ``npu.0``): a restart."""

    def infer(folder: str, cores: list[int], partition: str = "free"):
        g = Graph("cores").source("cam0", uses="synthetic", frames=10)
        g = g.stage("npu", uses="infer", inputs=["cam0"], model="sim:yolov8n", npu_cores=cores,
                    partition=partition)  # fmt: skip
        (tmp_path / folder).mkdir()
        return load_graph(
            g.sink("out", uses="passthrough", inputs=["npu"]).write(tmp_path / folder)
        )

    d = diff_graphs(infer("a", [0, 1]), infer("b", [0, 1, 2]))
    assert d.resized == {"npu": 3} and d.restart == []
    assert d.options == {"npu": {"model": "sim:yolov8n", "npu_cores": [0, 1, 2]}}
    d = diff_graphs(infer("c", [0]), infer("d", [0, 1]))
    assert d.resized == {} and d.options == {}
    assert d.restart == ["stage 'npu': npu_cores (its number of processes) changed"]
    d = diff_graphs(infer("e", [0, 1], "stream"), infer("f", [0, 1, 2], "stream"))
    assert d.resized == {} and len(d.restart) == 1  # pinned streams would move
    same = diff_graphs(infer("g", [0, 1]), infer("h", [1, 0]))
    assert same.options == {"npu": {"model": "sim:yolov8n", "npu_cores": [1, 0]}}
    assert same.resized == {}
