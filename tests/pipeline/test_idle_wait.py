"""How a stage process waits for messages (``SpinThenPark``), on real ZeroMQ sockets.

Users rely on two things: messages that come close together are taken without a sleep and
wake-up (lower latency per hop), and a stage fed at camera rates does not burn its CPU
spinning between frames.
"""

from __future__ import annotations

import uuid

import pytest
import zmq

from pipeline.errors import GraphError
from pipeline.graph.load import load_graph
from pipeline.transport.idle import SpinThenPark
from support.graph import Graph


@pytest.fixture
def pair(tmp_path):
    ctx = zmq.Context.instance()
    endpoint = f"ipc://{tmp_path}/{uuid.uuid4().hex[:8]}"
    rx, tx = ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
    rx.bind(endpoint)
    tx.connect(endpoint)
    poller = zmq.Poller()
    poller.register(rx, zmq.POLLIN)
    yield rx, tx, poller
    rx.close(0)
    tx.close(0)


def _arrived(rx: zmq.Socket) -> None:
    """Block until a message is queued on ``rx`` (so the next poll(0) sees it)."""
    assert rx.poll(5000, zmq.POLLIN)


def test_a_waiting_message_is_taken_by_the_spin_without_parking(pair) -> None:
    rx, tx, poller = pair
    idle = SpinThenPark(200)
    tx.send(b"frame")
    _arrived(rx)
    assert idle.wait(poller.poll, 5000)
    assert (idle.spins, idle.caught, idle.parks) == (1, 1, 0)
    assert rx.recv() == b"frame"


def test_sparse_traffic_stops_the_spinning(pair) -> None:
    """A stage whose messages come seconds apart spins a few times, then only parks."""
    _, _, poller = pair
    idle = SpinThenPark(200)
    for _ in range(30):
        assert idle.wait(poller.poll, 1) == []
    assert idle.caught == 0
    assert idle.spins < 10  # gave up after a few empty-handed spins
    assert idle.parks == 30


def test_spinning_comes_back_when_messages_come_close_together_again(pair) -> None:
    rx, tx, poller = pair
    idle = SpinThenPark(200)
    for _ in range(30):
        idle.wait(poller.poll, 1)
    spins = idle.spins
    for i in range(10):  # a burst: every wait finds its message at once
        tx.send(b"%d" % i)
        _arrived(rx)
        assert idle.wait(poller.poll, 5000)
        rx.recv()
    assert idle.spins > spins and idle.caught >= 3  # parked once or twice, then spinning


def test_spin_us_zero_always_parks(pair) -> None:
    rx, tx, poller = pair
    idle = SpinThenPark(0)
    tx.send(b"frame")
    _arrived(rx)
    assert idle.wait(poller.poll, 5000)
    assert (idle.spins, idle.parks) == (0, 1)


def test_a_zero_timeout_never_spins(pair) -> None:
    _, _, poller = pair
    idle = SpinThenPark(200)
    assert idle.wait(poller.poll, 0) == []
    assert idle.spins == 0


def test_spin_us_is_a_validated_pipeline_setting(tmp_path) -> None:
    graph = (
        Graph(spin_us=-5)
        .source("src", uses="synthetic")
        .sink("out", uses="jsonl", inputs=["src"], path="out.jsonl")
        .write(tmp_path, "g.toml")
    )
    with pytest.raises(GraphError) as err:
        load_graph(graph)
    assert "spin_us" in str(err.value) and "g.toml" in str(err.value)
