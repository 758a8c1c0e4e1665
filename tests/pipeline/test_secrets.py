"""Secrets never reach what a person sees: graph errors, ``rkpipe graph``, stage errors, logs
and tracebacks. Each case runs the real CLI and searches all of its output for the secret."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from pipeline.secrets import (
    MAX_SHOWN,
    MaskingFormatter,
    is_secret_name,
    mask,
    mask_options,
    mask_url,
    remember,
)
from support.rkpipe import run_rkpipe, write_graph

PASSWORD = "hunter2-Pass"  # what ${MQTT_PASS} holds
CAM_PASSWORD = "camPw-7781"
TOKEN = "tok-5522-abcd"
API_KEY = "key-0099-zyxw"
ALL = (PASSWORD, CAM_PASSWORD, TOKEN, API_KEY)
ENV = {"MQTT_PASS": PASSWORD, "CAM_TOKEN": TOKEN, "RKPIPE_T_API_KEY": API_KEY}


def shown(res) -> str:
    """Everything the command printed; it must hold none of the secrets."""
    text = res.stdout + res.stderr
    for secret in ALL:
        assert secret not in text, f"{secret!r} leaked:\n{text}"
    return text


@pytest.mark.parametrize(
    ("text", "secret", "kept"),
    [
        ("{'password': 'abc123', 'password_env': 'X'}", "abc123", "'password_env': 'X'"),
        ('{"token": "abcd1234"}', "abcd1234", '"token": "***"'),
        ("rtsp://admin:pw-secret@10.0.0.9/s", "pw-secret", "rtsp://admin:***@10.0.0.9/s"),
        ("https://ghp_abcdef@example.com/x", "ghp_abcdef", "https://***@example.com/x"),
        ("rtsp://cam/s?user=bob&access_token=zz99&x=1", "zz99", "?user=bob&access_token=***&x=1"),
        ("http://cam/x.jpg?sig=abc9&auth=q8", "abc9", "?sig=***&auth=***"),
        ("video file /g/rtsp:/admin:pw-typo@cam/x not found", "pw-typo", "admin:***@cam/x"),
        ("rtspsrc location=rtsp://cam/s user-id=admin user-pw=gst-pw9", "gst-pw9", "user-id=admin"),
        ("connecting with api_key=k-771 to host", "k-771", "api_key=*** to host"),
        ("GET /stream/cam0.mjpg?token=t0k3n HTTP/1.1", "t0k3n", "/stream/cam0.mjpg?token=***"),
    ],
)
def test_mask_hides_each_kind_of_secret(text: str, secret: str, kept: str) -> None:
    out = mask(text)
    assert secret not in out and kept in out, out


def test_prose_after_a_secret_key_is_not_mistaken_for_its_value() -> None:
    line = "g.toml:4 stages.m.password: expected a valid string, got 5"
    assert mask(line) == line
    assert mask("keyfile=/etc/k.pem password_env=MQTT_PASS") == (
        "keyfile=/etc/k.pem password_env=MQTT_PASS"
    )


def test_remembered_values_are_hidden_anywhere_but_tiny_ones_are_not_remembered() -> None:
    remember("s3cr3t-value", "ab")
    assert mask("topic x/s3cr3t-value/y, about ab") == "topic x/***/y, about ab"


def test_secret_names() -> None:
    for name in ("password", "MQTT_PASS", "api_key", "apiKey", "X-Amz-Signature", "token"):
        assert is_secret_name(name), name
    for name in ("password_env", "keyfile", "key_path", "keep", "topic", "monkey", "username"):
        assert not is_secret_name(name), name


def test_mask_options_and_urls() -> None:
    opts = {"host": "b", "password": "p", "nested": {"token": "t"}, "urls": ["rtsp://u:p@c"]}
    assert mask_options(opts) == {
        "host": "b",
        "password": "***",
        "nested": {"token": "***"},
        "urls": ["rtsp://u:***@c"],
    }
    assert mask_url("rtsp://[::1]:554/s?key=abc") == "rtsp://[::1]:554/s?key=***"


def test_validate_mqtt_mistake_does_not_print_the_password(tmp_path: Path) -> None:
    """The stage-level error used to print the whole options dict, password included."""
    graph = write_graph(
        tmp_path,
        '[stages.cam0]\nuses = "synthetic"\n'
        '[stages.m]\nuses = "mqtt"\ninputs = ["cam0"]\n'
        'password = "${MQTT_PASS}"\npassword_env = "OTHER"\n',
    )
    res = run_rkpipe("validate", str(graph), env=ENV)
    assert res.returncode == 2
    assert "graph.toml:3 stages.m: set password or password_env, not both" in shown(res)
    assert "got {" not in res.stderr  # the whole table is no help, and held the password


def test_mistyped_camera_url_does_not_print_its_password_or_token(tmp_path: Path) -> None:
    graph = write_graph(
        tmp_path,
        '[stages.cam0]\nuses = "capture"\n'
        f'source = "rtps://admin:{CAM_PASSWORD}@10.0.0.9/s?token=${{CAM_TOKEN}}"\n'
        '[stages.cam1]\nuses = "capture"\n'
        f'source = "rtsp:/admin:{CAM_PASSWORD}@10.0.0.9/s"\n'  # a missing slash: a "file"
        '[stages.out]\nuses = "jsonl"\ninputs = ["cam0", "cam1"]\n',
    )
    res = run_rkpipe("validate", str(graph), env=ENV)
    assert res.returncode == 2
    text = shown(res)
    assert "unknown stream scheme 'rtps'" in text
    assert "got 'rtps://admin:***@10.0.0.9/s?token=***'" in text
    assert "stages.cam1.source: video file" in text and "admin:***@10.0.0.9" in text


def test_rkpipe_graph_masks_passwords_tokens_and_secret_variables(tmp_path: Path) -> None:
    graph = write_graph(
        tmp_path,
        '[stages.cam0]\nuses = "capture"\n'
        f'source = "rtsp://admin:{CAM_PASSWORD}@10.0.0.9/s?token=${{CAM_TOKEN}}"\n'
        '[stages.m]\nuses = "mqtt"\ninputs = ["cam0"]\n'
        'password = "${MQTT_PASS}"\ntopic = "site/${RKPIPE_T_API_KEY}/{stream}"\n',
    )
    res = run_rkpipe("graph", str(graph), env=ENV)
    assert res.returncode == 0, res.stderr
    text = shown(res)
    assert "source='rtsp://admin:***@10.0.0.9/s?token=***'" in text
    assert "password='***', topic='site/***/{stream}'" in text


def careless_graph(tmp_path: Path, crash: bool, thread_crash: bool = False) -> Path:
    return write_graph(
        tmp_path,
        "[pipeline]\nrestart_limit = 0\n"
        '[stages.cam0]\nuses = "synthetic"\nframes = 5\n'
        '[stages.c]\nuses = "rk_test_stages:Careless"\ninputs = ["cam0"]\n'
        f'url = "https://svc:{CAM_PASSWORD}@api.example/v1?token=${{CAM_TOKEN}}"\n'
        f'api_key = "${{RKPIPE_T_API_KEY}}"\ncrash = {str(crash).lower()}\n'
        f"thread_crash = {str(thread_crash).lower()}\n",
    )


@pytest.mark.integration
def test_a_stage_setup_error_and_its_log_line_are_masked(tmp_path: Path, no_leaks) -> None:
    """The stage process logs and reports its options; the user sees them masked, including
    a value (the api key) that only the graph's ${RKPIPE_T_API_KEY} marks as secret."""
    res = run_rkpipe("run", str(careless_graph(tmp_path, crash=False)), env=ENV)
    assert res.returncode == 1
    text = shown(res)
    assert "connecting to https://svc:***@api.example/v1?token=*** with api_key=***" in text
    assert "rkpipe: error: c: https://svc:***@api.example/v1?token=*** refused the key ***" in text


@pytest.mark.integration
def test_a_crash_traceback_is_masked(tmp_path: Path, no_leaks) -> None:
    res = run_rkpipe("run", str(careless_graph(tmp_path, crash=True)), env=ENV)
    assert res.returncode == 1
    text = shown(res)
    assert "Traceback" in text and "RuntimeError: lost https://svc:***@api.example" in text
    assert "c crashed: RuntimeError: lost https://svc:***@api.example/v1?token=*** holding ***" in (
        text
    )


@pytest.mark.integration
def test_an_exception_in_a_stage_thread_is_masked(tmp_path: Path, no_leaks) -> None:
    """A thread of a stage dies quoting its camera URL: the stage process's excepthook
    prints the traceback masked (Python's own hook would print the password)."""
    graph = careless_graph(tmp_path, crash=False, thread_crash=True)
    res = run_rkpipe("run", str(graph), env=ENV)
    assert res.returncode == 1
    text = shown(res)
    assert "careless-reader" in text and "RuntimeError: lost https://svc:***@api.example" in text


# Shapes that made the old patterns try every start over the rest of the text (quadratic):
# a request line with no spaces, runs of keys, separators, quotes and URL-like pieces.
HOSTILE = {
    "no spaces": "A",
    "dotted": "a.",
    "colons": "a:",
    "pairs": "a=b ",
    "open quotes": "a='b ",
    "secret keys": "token=x ",
    "exception": "KeyError: 'x' ",
    "queries": "?a",
    "userinfo": "a:b@",
    "schemes": "x://",
    "quoted keys": "'a'",
}


def _fastest(text: str, tries: int = 3) -> float:
    """The least time ``mask(text)`` took over a few tries (the machine is shared)."""
    best = float("inf")
    for _ in range(tries):
        t0 = time.perf_counter()
        mask(text)
        best = min(best, time.perf_counter() - t0)
    return best


@pytest.mark.parametrize("unit", list(HOSTILE.values()), ids=list(HOSTILE))
def test_mask_is_linear_in_hostile_text(unit: str) -> None:
    """1 MB of hostile text costs about four times what 256 kB costs (a quadratic pattern
    would cost sixteen); the ratio, unlike a clock, holds on a loaded machine."""
    mb = unit * (1_000_000 // len(unit))
    small, big = _fastest(mb[: len(mb) // 4]), _fastest(mb)
    assert big < 8 * small + 0.05, f"1 MB: {big:.3f} s, 256 kB: {small:.3f} s"


def test_exception_names_are_not_secrets() -> None:
    assert mask("KeyError: 'abc'") == "KeyError: 'abc'"
    assert mask("ValueError: 'x' in token='abcd'") == "ValueError: 'x' in token='***'"


def test_a_log_record_is_cut_to_its_start_and_end() -> None:
    record = logging.LogRecord("t", logging.ERROR, "f", 1, "GET /" + "x" * 100_000, None, None)
    shown = MaskingFormatter("%(message)s").format(record)
    assert len(shown) < MAX_SHOWN + 100 and shown.startswith("GET /x") and "left out" in shown
