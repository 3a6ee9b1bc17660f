"""The streamops command line: subprocesses for the real thing, main() for the rest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamops._cli import DEMO_ANSWER, main

ROOT = Path(__file__).resolve().parent.parent
CMD = [sys.executable, "-m", "streamops"]
POLICIES = {
    "email.toml": '[redact]\npatterns = ["email"]\n',
    "tiny.toml": "[budget]\nmax_tokens = 3\n",
    "block.toml": (
        '[redact]\npatterns = []\naction = "block"\n'
        '[[redact.custom]]\nname = "forbidden"\npattern = "top secret"\n'
    ),
    "idle.toml": '[timeout]\nidle = 0.5\n[redact]\npatterns = ["email"]\n',
    "json.toml": "[parse_json]\n",
    "bad.toml": '[budget]\nmax_tokens = "many"\n',
}


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    for name, text in POLICIES.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def _spawn(*args: str, cwd: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [*CMD, *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_subprocesses_exit_with_the_stop_reason(policies: Path) -> None:
    # Started together: each spawn imports streamops, so run them side by side.
    cases = {
        "complete": (
            ["run", "--policy", "email.toml"],
            b"mail bob@example.com\n",
            0,
            b"mail [EMAIL]\n",
        ),
        "budget": (
            ["run", "--policy", "tiny.toml"],
            b"Hello there, how are you?",
            3,
            b"Hello there,",
        ),
        "blocked": (["run", "--policy", "block.toml"], b"this is top secret!", 5, b"this is "),
        "error": (["run", "--policy", "json.toml"], b'{"a": [1, 2', 1, b""),
        "usage": (["run", "--policy", "bad.toml"], b"", 2, b""),
    }
    procs = {name: _spawn(*args, cwd=policies) for name, (args, *_rest) in cases.items()}
    demo = _spawn("demo", "--json", "--fast", cwd=policies)
    # The timeout case: one line arrives, then stdin stalls (kept open) past the idle limit.
    stalled = _spawn("run", "--policy", "idle.toml", cwd=policies)
    assert stalled.stdin is not None
    assert stalled.stdout is not None
    stalled.stdin.write(b"Hi bob@example.com\n")
    stalled.stdin.flush()
    assert stalled.stdout.readline() == b"Hi [EMAIL]\n"  # written as it arrived
    for name, (_args, stdin, code, stdout) in cases.items():
        out, err = procs[name].communicate(stdin, timeout=60)
        assert (name, procs[name].returncode, out) == (name, code, stdout), err
        if name == "error":
            assert b"JSONStreamError: unexpected end of JSON input at offset 11" in err
        if code:
            assert err.count(b"\n") == 1, err
            assert err.startswith(b"streamops: "), err
    assert stalled.wait(timeout=60) == 4  # before stdin closes: the idle limit fired
    _, err = stalled.communicate(timeout=60)
    assert err.startswith(b"streamops: error: StreamTimeout: idle timeout"), err
    out, err = demo.communicate(timeout=60)
    assert demo.returncode == 0, err
    report = json.loads(out)
    assert report["stop_reason"] == "complete"
    assert report["exit_code"] == 0
    assert report["redactions"]["redacted"] == {"openai_key": 1, "email": 2}
    assert "sk-proj-" not in report["text"]
    assert "maria.lopez" not in report["text"]
    assert report["text"].count("[EMAIL]") == 2
    assert report["usage"]["completion_tokens"] > 100
    assert report["usage"]["cost"] > 0
    assert report["metrics"]["chunk_count"] > 50


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_run_from_a_file_and_the_report(policies: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (policies / "in.txt").write_bytes("héllo bob@example.com".encode())
    code, out, err = _run(
        capsys,
        "run",
        "--policy",
        str(policies / "email.toml"),
        "--input",
        str(policies / "in.txt"),
        "--report",
    )
    assert (code, out) == (0, "héllo [EMAIL]")
    report = json.loads(err)
    assert report["redactions"]["redacted"] == {"email": 1}
    (policies / "doc.json").write_text('{"a": [1, 2]}')
    code, out, _ = _run(
        capsys,
        "run",
        "--policy",
        str(policies / "json.toml"),
        "--input",
        str(policies / "doc.json"),
    )
    assert (code, out) == (0, '{"a": [1, 2]}\n')


def test_run_decodes_sse(policies: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = [
        {"choices": [{"index": 0, "delta": {"content": "mail bob@exa"}}]},
        {"choices": [{"index": 0, "delta": {"content": "mple.com now"}}]},
    ]
    sse = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
    (policies / "in.sse").write_text(sse)
    code, out, _ = _run(
        capsys,
        "run",
        "--sse",
        "--policy",
        str(policies / "email.toml"),
        "--input",
        str(policies / "in.sse"),
    )
    assert (code, out) == (0, "mail [EMAIL] now")


def test_demo_prints_text_and_a_summary(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "demo", "--fast")
    assert code == 0
    text, summary = out.split("\n\n---")
    assert text.startswith(DEMO_ANSWER[:40])
    assert "[OPENAI_KEY]" in text
    assert "stop reason  complete" in summary
    assert "openai_key x1, email x2" in summary


def test_demo_with_another_policy_and_stop_reason(
    policies: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, "demo", "--json", "--fast", "--policy", str(policies / "tiny.toml"))
    report = json.loads(out)
    assert (code, report["stop_reason"], report["text"]) == (3, "budget", "Sure! Here")
    code, out, _ = _run(capsys, "demo", "--json", "--fast", "--policy", "strict-json")
    report = json.loads(out)
    assert code == 0
    assert report["value"]["status"] == "ok"
    assert len(report["value"]["items"]) == 2
    assert "sk-proj" not in out  # the key sat in the prose, outside the JSON value


def test_check_policy_describes_a_valid_preset_and_prints_a_file_as_json(
    policies: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, "check-policy", "safe-chat")
    assert code == 0
    assert out.splitlines()[0] == "safe-chat: valid"
    assert "2. redact" in out
    assert "matches: private_key" in out
    code, out, _ = _run(capsys, "check-policy", "--json", str(policies / "email.toml"))
    assert (code, json.loads(out)) == (0, {"redact": {"patterns": ["email"]}})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[budget]\nmax_tokens = "many"\n', "budget.max_tokens: Input should be a valid integer"),
        ("[redact]\ncolour = 1\n", "redact.colour: unknown key"),
        ('[[redact.custom]]\nname = "x"\npattern = "a(b"\n', r"redact.custom[0].pattern: invalid"),
    ],
)
def test_bad_policy_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    path = tmp_path / "p.toml"
    path.write_text(text)
    code, out, err = _run(capsys, "check-policy", str(path))
    assert (code, out) == (2, "")
    assert err.startswith(f"streamops: error: {path}: ")
    assert message in err
    assert err.count("\n") == 1


def test_errors_and_debug(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "run", "--policy", "safe-chat", "--input", str(tmp_path / "none"))
    assert code == 2
    assert err.startswith("streamops: error: cannot open --input")
    assert err.count("\n") == 1
    code, _, err = _run(capsys, "check-policy", "no-such-preset")
    assert code == 2
    assert "no such preset" in err
    (tmp_path / "in.txt").write_text("x")
    code, _, err = _run(
        capsys, "--debug", "run", "--policy", "nope", "--input", str(tmp_path / "in.txt")
    )
    assert code == 2
    assert "Traceback" in err
    with pytest.raises(SystemExit) as info:
        main(["run"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["demo", "--help"])
    assert info.value.code == 0
    assert "--policy" in capsys.readouterr().out


def _usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    assert info.value.code == 2
    return capsys.readouterr().err


def test_bench_is_not_a_command_benchmarks_run_from_a_checkout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`streamops bench` used to run whatever benchmarks/ the current directory held."""
    err = _usage_error(capsys, "bench")
    assert "unknown command 'bench'" in err
    assert "python -m benchmarks" in " ".join(main_help(capsys).split())


def main_help(capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit):
        main(["--help"])
    return capsys.readouterr().out


def test_a_misspelled_command_gets_a_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    err = _usage_error(capsys, "demp")
    assert "unknown command 'demp' (did you mean 'demo'?)" in err


def test_an_unknown_option_shows_the_sub_commands_usage_and_a_suggestion(
    capsys: pytest.CaptureFixture[str],
) -> None:
    err = _usage_error(capsys, "run", "--polcy", "safe-chat")
    assert err.startswith("usage: streamops run ")
    assert "unrecognized arguments: --polcy (did you mean '--policy'?)" in err


def test_global_options_work_after_the_sub_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in.txt").write_text("hi")
    for argv in (
        ["--debug", "run", "--policy", "nope", "--input", str(tmp_path / "in.txt")],
        ["run", "--debug", "--policy", "nope", "--input", str(tmp_path / "in.txt")],
        ["run", "--policy", "nope", "--input", str(tmp_path / "in.txt"), "--debug"],
    ):
        code, _, err = _run(capsys, *argv)
        assert code == 2
        assert "Traceback" in err, argv  # --debug took effect wherever it was


def test_a_misspelled_preset_gets_a_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "check-policy", "safe-chta")
    assert code == 2
    assert "no such preset (did you mean 'safe-chat'?)" in err


@pytest.mark.parametrize("module", ["aiohttp", "prometheus_client"])
def test_serve_without_the_gateway_extra_names_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], module: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    code, _, err = _run(capsys, "serve", "--upstream", "http://127.0.0.1:9/v1")
    assert code == 2
    assert f"streamops serve needs {module}: pip install 'streamops[gateway]'" in err


def test_fake_server_without_the_server_extra_names_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    code, _, err = _run(capsys, "fake-server", "--port", "0")
    assert code == 2
    assert "pip install 'streamops[server]'" in err


def test_version_prints_the_version_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("streamops ")


def test_fake_server_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["fake-server", "--help"])
    assert info.value.code == 0
    assert "--port" in capsys.readouterr().out


def _openai_sse(*texts: str) -> str:
    events = [{"choices": [{"index": 0, "delta": {"content": t}}]} for t in texts]
    return "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"


def test_run_sse_with_the_strict_json_preset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SSE is turned into text first, so a policy whose output is a JSON value works."""
    sse = _openai_sse('Here: {"key": "sk-proj-4f9a8b7c6d5e4f3a', '2b1c0d9e8f7a6b5c", "n": [1, 2]}')
    (tmp_path / "in.sse").write_text(sse)
    code, out, err = _run(
        capsys, "run", "--sse", "--policy", "strict-json", "--input", str(tmp_path / "in.sse")
    )
    assert code == 0
    assert err == "streamops: note: the retry section is ignored: stdin cannot be replayed\n"
    assert json.loads(out) == {"key": "<redacted>", "n": [1, 2]}


def test_run_sse_that_is_not_json_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in.sse").write_text("data: {oops\n\n")
    code, out, err = _run(
        capsys, "run", "--sse", "--policy", "safe-chat", "--input", str(tmp_path / "in.sse")
    )
    assert (code, out) == (1, "")
    assert err.startswith("streamops: error: SSEError: SSE event data is not JSON at offset 1")
    assert err.count("\n") == 1


HASHED = (
    '[redact]\npatterns = ["email"]\nreplacement = "hash"\nhash_key_env = "SO_TEST_UNSET_KEY"\n'
)


@pytest.mark.parametrize("command", ["run", "demo", "check-policy"])
def test_policy_that_fails_to_build_is_a_usage_error_everywhere(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
) -> None:
    monkeypatch.delenv("SO_TEST_UNSET_KEY", raising=False)
    policy = tmp_path / "hashed.toml"
    policy.write_text(HASHED)
    (tmp_path / "in.txt").write_text("x")
    argv = {
        "run": ["run", "--policy", str(policy), "--input", str(tmp_path / "in.txt")],
        "demo": ["demo", "--fast", "--policy", str(policy)],
        "check-policy": ["check-policy", str(policy)],
    }[command]
    code, out, err = _run(capsys, *argv)
    assert (code, out) == (2, "")
    assert err == (
        f"streamops: error: {policy}: redact.hash_key_env:"
        " environment variable SO_TEST_UNSET_KEY is unset\n"
    )


def test_run_opens_the_input_only_after_the_policy_builds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SO_TEST_UNSET_KEY", raising=False)
    (tmp_path / "hashed.toml").write_text(HASHED)
    (tmp_path / "in.txt").write_text("x")
    opened: list[str] = []
    real_open = os.open

    def spy(path: str, *args: int) -> int:
        opened.append(path)
        return real_open(path, *args)

    monkeypatch.setattr("streamops._cli.os.open", spy)
    argv = ["run", "--policy", str(tmp_path / "hashed.toml"), "--input", str(tmp_path / "in.txt")]
    code, _, _ = _run(capsys, *argv)
    assert (code, opened) == (2, [])  # nothing opened, so nothing leaked


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--host", "10.0.0.1"], "host '10.0.0.1' is not a loopback address"),
        (["--chunking", "bogus"], "chunking"),
        (["--port", "70000"], "port must be an int in 0..65535"),
    ],
)
def test_fake_server_bad_options_are_usage_errors(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = _run(capsys, "fake-server", *args)
    assert (code, out) == (2, "")
    assert err.startswith("streamops: error: ")
    assert "ValueError" not in err
    assert message in err
    assert err.count("\n") == 1


def test_fake_server_port_in_use_is_an_error_not_budget(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, out, err = _run(capsys, "fake-server", "--port", str(port))
    assert (code, out) == (1, "")  # not 3, which means "budget"
    assert err.startswith(f"streamops: error: cannot listen on 127.0.0.1:{port}: ")
    assert err.count("\n") == 1
