"""The ``videobot`` command line, run as a user would run it (a subprocess, no network)."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import pty
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bot.adapters.media import probe_video
from bot.adapters.sqlite.store import Store
from bot.cli import SHUTDOWN_GRACE_SECONDS
from bot.localapi import LocalRenderer, LocalRendererConfig
from tests.fakes.discord import FakeDiscord

REPO = Path(__file__).resolve().parents[2]
LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")


def videobot(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    base_paths: bool = True,
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "VIDEO_API", "OPENAI_"))}
    base |= {
        "PYTHONPATH": str(REPO),
        # The default 5 s between status checks would be most of a test's run time; the
        # renderer's own openai-poll-after-ms (1 s) still paces the polling.
        "POLL_INTERVAL_SECONDS": "0.2",
        # Demo renders at 6 frames a second: the same pipeline for a quarter of the CPU.
        "LOCAL_RENDER_FPS": "6",
    }
    if base_paths:
        base |= {"DATA_DIR": str(cwd / "data"), "DATABASE_URL": f"sqlite:///{cwd / 'bot.db'}"}
    base.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=cwd,
        env=base,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_generate_with_the_local_renderer_writes_the_requested_mp4(tmp_path: Path) -> None:
    result = videobot(
        "generate",
        "a red fox in snow",
        "--seconds",
        "4",
        "--out",
        "fox.mp4",
        cwd=tmp_path,
        env={"VIDEO_API_BASE_URL": "local", "LOCAL_GENERATION_SECONDS": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "fox.mp4"
    assert "sora-2 · 720x1280 · 4 s · 4 credits" in result.stderr
    assert "100%" in result.stderr
    info = probe_video(tmp_path / "fox.mp4")
    assert (info.width, info.height, info.codec) == (720, 1280, "h264")
    assert info.duration == pytest.approx(4.0, abs=0.2)


def test_generate_explains_bad_input_and_moderation(tmp_path: Path) -> None:
    env = {"VIDEO_API_BASE_URL": "local", "LOCAL_GENERATION_SECONDS": "0.5"}
    bad = videobot("generate", "x", "--size", "1792x1024", cwd=tmp_path, env=env)
    assert bad.returncode == 2
    assert "error: `sora-2` can't make 1792x1024 videos. Sizes it supports: 720x1280, 1280x720." in bad.stderr
    blocked = videobot("generate", "something forbidden", cwd=tmp_path, env=env)
    assert blocked.returncode == 1
    assert "safety system declined this prompt" in blocked.stderr
    assert not (tmp_path / "video.mp4").exists()


def test_help_lists_every_command(tmp_path: Path) -> None:
    result = videobot("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in ("run", "generate", "local-api", "check", "invite"):
        assert command in result.stdout


def test_run_without_a_token_says_what_to_do(tmp_path: Path) -> None:
    result = videobot("run", cwd=tmp_path)
    assert result.returncode == 2
    assert "DISCORD_TOKEN is not set" in result.stderr and "Traceback" not in result.stderr


def test_invite_with_a_client_id(tmp_path: Path) -> None:
    result = videobot("invite", "--client-id", "123456789012345678", cwd=tmp_path)
    assert result.returncode == 0
    url = result.stdout.strip()
    assert url.startswith("https://discord.com/oauth2/authorize?client_id=123456789012345678")
    assert "scope=bot+applications.commands" in url
    assert "permissions=274878024704" in url  # view, send, threads, embed, attach, history


async def run_async(*args: str, cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "VIDEO_API", "OPENAI_"))}
    base.update(
        {
            "PYTHONPATH": str(REPO),
            "DATA_DIR": str(cwd / "data"),
            "DATABASE_URL": f"sqlite:///{cwd / 'bot.db'}",
            "POLL_INTERVAL_SECONDS": "0.2",  # as in videobot(): not 5 s of waiting per status check
        }
    )
    base.update(env)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args, cwd=cwd, env=base, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    async with asyncio.timeout(120):
        out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_check_reports_each_part_and_never_prints_secrets(tmp_path: Path, fake: FakeDiscord) -> None:
    env = {
        "DISCORD_TOKEN": fake.token,
        "DISCORD_API_BASE_URL": fake.api_base,
        "VIDEO_API_BASE_URL": "local",
    }
    code, out, _ = await run_async("check", cwd=tmp_path, env=env)
    assert code == 0, out
    assert "[ok] Discord" in out and "[ok] Videos API" in out and "[ok] database" in out
    assert "all checks passed" in out
    assert fake.token not in out

    invite_code, invite_out, _ = await run_async("invite", cwd=tmp_path, env=env)
    assert invite_code == 0 and f"client_id={fake.application_id}" in invite_out

    models = tmp_path / "models.toml"
    models.write_text("[[models]]\nname='x'\n", encoding="utf-8")
    env |= {
        "DISCORD_TOKEN": "wrong-secret-token",
        "MODELS_FILE": str(models),
        "VIDEO_API_BASE_URL": "http://127.0.0.1:9/v1",
        "WEBHOOK_SECRET": "not-a-whsec-secret",
        "HTTP_PORT": "8080",
    }
    code, out, _ = await run_async("check", cwd=tmp_path, env=env)
    assert code == 1
    assert "[FAIL] Discord" in out and "refused DISCORD_TOKEN" in out
    assert "[FAIL] model catalog" in out and "`seconds` must be a list" in out
    assert "[FAIL] Videos API" in out and "cannot connect" in out
    assert "[FAIL] webhooks" in out and "not a Standard Webhooks secret" in out
    assert "wrong-secret-token" not in out and "not-a-whsec-secret" not in out


# --------------------------------------------------------------------------- first run


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The command failed with exactly one line on stderr and no traceback; that line."""
    lines = result.stderr.splitlines()
    assert result.returncode != 0 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def progress_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "%  " in line and line[:1] in "▰▱"]


def test_generate_shows_the_provider_percentage_state_and_time_and_no_cost_for_the_local_renderer(
    tmp_path: Path,
) -> None:
    result = videobot(
        "generate", "a red fox", "--out", "fox.mp4", cwd=tmp_path, env={"LOCAL_GENERATION_SECONDS": "3"}
    )
    assert result.returncode == 0, result.stderr
    assert "sora-2 · 720x1280 · 4 s · 4 credits · built-in renderer (a demo render, no cost)" in result.stderr
    assert "$" not in result.stderr
    lines = progress_lines(result.stderr)
    # Off a terminal, one line per change: the state, the percentage and the time so far.
    assert any("0%  Queued at the provider  0:0" in line for line in lines), lines
    percents = [int(line.split("%")[0].split()[-1]) for line in lines]
    assert percents == sorted(percents) and any(0 < p < 100 for p in percents), lines
    assert any("Generating" in line for line in lines), lines
    assert re.fullmatch(r"▰{20} 100%  Done in 0:0\d", lines[-1]), lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fox.mp4"]  # nothing else written


async def test_generate_shows_the_price_in_usd_when_the_provider_charges(tmp_path: Path) -> None:
    async with LocalRenderer(LocalRendererConfig(generation_seconds=1, queue_seconds=0.1, fps=6)) as renderer:
        code, _, err = await run_async(
            "generate",
            "a red fox",
            cwd=tmp_path,
            env={"VIDEO_API_BASE_URL": renderer.base_url.replace("http://", "http://me:pa55@")},
        )
    assert code == 0, err
    assert "sora-2 · 720x1280 · 4 s · 4 credits (~$0.40)" in err
    assert f"videos from {renderer.base_url}; built-in catalog (sora-2, sora-2-pro)" in err
    assert "pa55" not in err


def test_generate_on_a_terminal_keeps_log_lines_out_of_the_progress_bar(tmp_path: Path) -> None:
    """stderr is a real pseudo-terminal: the bar is redrawn in place, and the DEBUG records that
    arrive while it is shown each start on a line of their own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "VIDEO_API", "OPENAI_"))}
    env |= {
        "PYTHONPATH": str(REPO),
        "LOG_LEVEL": "DEBUG",
        "LOCAL_GENERATION_SECONDS": "2.5",
        "LOCAL_RENDER_FPS": "6",
    }
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "generate", "a fox", "--out", "fox.mp4"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=follower,
    )
    os.close(follower)
    raw = bytearray()
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        raw += chunk
    os.close(leader)
    assert proc.wait(timeout=120) == 0
    screen, bars = render_terminal(raw.decode(errors="replace"))

    records = [line for line in screen if LOG_RECORD.match(line)]
    assert len(records) > 20  # aiosqlite and the client log at DEBUG all the way through
    for line in screen:
        if "▰" in line or "▱" in line:
            assert line[0] in "▰▱" and not LOG_RECORD.search(line), line
        if " DEBUG " in line or " INFO " in line:
            assert LOG_RECORD.match(line), line
    assert re.fullmatch(r"▰{20} 100%  Done in 0:0\d", [ln for ln in screen if ln[:1] in "▰▱"][-1])
    # While it ran, the bar showed the state and the clock moving.
    assert any("Generating" in b for b in bars) and any("Queued at the provider" in b for b in bars)
    clocks = {b.rsplit("  ", 1)[-1] for b in bars if b.startswith(("▰", "▱")) and "Done" not in b}
    assert len(clocks) >= 2, bars


def render_terminal(text: str) -> tuple[list[str], list[str]]:
    """What a terminal shows for ``text`` (``\\r``, ``\\n``, erase-to-end-of-line), and every state
    the bar line was in before it was overwritten."""
    lines: list[str] = []
    current: list[str] = []
    col = 0
    bars: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("\x1b[K", i):
            del current[col:]
            i += 3
            continue
        ch = text[i]
        i += 1
        if ch in "\r\n":
            shown = "".join(current)
            if "%  " in shown and (not bars or bars[-1] != shown):
                bars.append(shown)
            col = 0
            if ch == "\n":
                lines.append(shown)
                current = []
            continue
        if col < len(current):
            current[col] = ch
        else:
            current.append(ch)
        col += 1
    if current:
        lines.append("".join(current))
    return lines, bars


@pytest.mark.parametrize("seconds", ["0", "5", "-4"])
def test_generate_refuses_durations_outside_the_catalog_with_the_allowed_values(
    tmp_path: Path, seconds: str
) -> None:
    result = videobot("generate", "a fox", "--seconds", seconds, cwd=tmp_path)
    assert one_error_line(result) == (
        f"error: `sora-2` can't make {seconds}-second videos. Pick 4, 8, 12 seconds."
    )
    assert result.returncode == 2 and list(tmp_path.iterdir()) == []


def test_generate_refuses_an_out_it_could_not_write_before_generating(tmp_path: Path) -> None:
    (tmp_path / "videos").mkdir()
    (tmp_path / "notes.txt").write_text("x", encoding="utf-8")
    folder = videobot("generate", "a fox", "--out", "videos", cwd=tmp_path)
    assert one_error_line(folder) == (
        "error: --out videos is a folder; name the file, e.g. --out videos/video.mp4"
    )
    under_a_file = videobot("generate", "a fox", "--out", "notes.txt/fox.mp4", cwd=tmp_path)
    assert one_error_line(under_a_file) == "error: --out notes.txt/fox.mp4: notes.txt is a file, not a folder"
    # Refused before any work: no price line, no renderer files.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "videos"]
    assert list((tmp_path / "videos").iterdir()) == []


MALFORMED_CATALOGS = [
    ("[[models]\nname = 'x'", "is not valid TOML: "),
    ("models = [1, 2]", "expected one or more [[models]] tables"),
    ("[[models]]\nseconds = [4]", "models[0]: `name` is required"),
    (
        "[[models]]\nname = 'x'\nseconds = '4'",
        "models[0] (x): `seconds` must be a list of positive whole numbers",
    ),
    (
        "[[models]]\nname = 'x'\nseconds = [4]\n[[models.rates]]\nsizes = ['720x1280']\ncredits_per_second = '1'",
        "models[0] (x): rates[0].credits_per_second must be a whole number",
    ),
    (
        "[[models]]\nname = 'x'\nseconds = [4]\ndefault_seconds = '4'\n"
        "[[models.rates]]\nsizes = ['720x1280']\ncredits_per_second = 1",
        "models[0] (x): `default_seconds` must be a whole number",
    ),
    (
        "[[models]]\nname = 'x'\nseconds = [4]\nrates = 3",
        "models[0] (x): `rates` must be [[models.rates]] tables",
    ),
]


@pytest.mark.parametrize(("toml", "says"), MALFORMED_CATALOGS)
def test_a_malformed_models_file_is_one_line_naming_the_file_and_the_key(
    tmp_path: Path, toml: str, says: str
) -> None:
    models = tmp_path / "models.toml"
    models.write_text(toml, encoding="utf-8")
    result = videobot("run", cwd=tmp_path, env={"DISCORD_TOKEN": "t", "MODELS_FILE": str(models)})
    line = one_error_line(result)
    assert result.returncode == 2
    assert line.startswith(f"error: MODELS_FILE {models} " if "TOML" in says else f"error: {models}: ")
    assert says in line


def test_log_level_is_case_insensitive_and_a_wrong_one_is_named(tmp_path: Path) -> None:
    ok = videobot("invite", "--client-id", "1", cwd=tmp_path, env={"LOG_LEVEL": "info"})
    assert ok.returncode == 0, ok.stderr
    bad = videobot("invite", "--client-id", "1", cwd=tmp_path, env={"LOG_LEVEL": "loud"})
    assert bad.returncode == 2 and "LOG_LEVEL:" in bad.stderr and "Traceback" not in bad.stderr


def test_version_comes_from_the_package_metadata(tmp_path: Path) -> None:
    result = videobot("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == f"videobot {importlib.metadata.version('videobot')}"


@pytest.mark.parametrize(
    ("command", "explains"),
    [
        ("run", ["DISCORD_TOKEN", "VIDEO_API_BASE_URL", "unset = the built-in local renderer", "LOG_LEVEL"]),
        ("check", ["DISCORD_TOKEN", "DATABASE_URL", "read only", "exits 1 if any failed"]),
        ("generate", ["--seconds", "--out", "where to write the MP4", "VIDEO_API_BASE_URL"]),
        ("local-api", ["--port", "--generation-seconds", "LOCAL_GENERATION_SECONDS"]),
        ("invite", ["--client-id", "DISCORD_TOKEN"]),
        ("healthcheck", ["HTTP_PORT", "/healthz", "Exits 0"]),
    ],
)
def test_every_command_help_explains_its_options_and_environment(
    tmp_path: Path, command: str, explains: list[str]
) -> None:
    result = videobot(command, "--help", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.startswith(f"usage: videobot {command}")
    assert len(result.stdout.splitlines()) > 4
    for text in explains:
        assert text in result.stdout, (text, result.stdout)


async def test_check_writes_nothing_and_says_only_what_it_checked(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        env = {"DISCORD_TOKEN": fake.token, "DISCORD_API_BASE_URL": fake.api_base}
        code, out, err = await run_async("check", cwd=tmp_path, env=env)
        assert code == 0, out + err
        assert f"[ok] database: {tmp_path / 'bot.db'} not created yet (`videobot run` creates it)" in out
        assert (
            "[ok] Videos API: the built-in local renderer starts and answers (no key needed; "
            "set VIDEO_API_BASE_URL for a real provider)" in out
        )
        assert "accepts the key" not in out.split("[ok] Videos API")[1]
        assert list(tmp_path.iterdir()) == []  # no database, no data folder

        async with Store.open(tmp_path / "bot.db"):
            pass
        before = sorted(p.name for p in tmp_path.iterdir())
        code, out, _ = await run_async("check", cwd=tmp_path, env=env)
        assert code == 0 and re.search(r"\[ok\] database: .*bot\.db \(schema version \d+\)", out), out
        assert sorted(p.name for p in tmp_path.iterdir()) == before  # not even -wal / -shm files

        no_token = await run_async("check", cwd=tmp_path, env={"DISCORD_API_BASE_URL": fake.api_base})
        assert f"[ok] Discord: {fake.api_base} is reachable; the token was not checked" in no_token[1]
        assert "refused" not in no_token[1]


async def test_check_strips_credentials_from_every_url_it_prints(tmp_path: Path) -> None:
    port = closed_port()
    env = {
        "DISCORD_API_BASE_URL": f"http://bot:discord-pw@127.0.0.1:{port}/api/v10",
        "VIDEO_API_BASE_URL": f"http://me:provider-pw@127.0.0.1:{port}/v1",
    }
    code, out, err = await run_async("check", cwd=tmp_path, env=env)
    assert code == 1
    assert f"[FAIL] Videos API: http://127.0.0.1:{port}/v1" in out
    assert "discord-pw" not in out + err and "provider-pw" not in out + err


async def test_invite_with_a_refused_token_names_discord_token(tmp_path: Path) -> None:
    async with FakeDiscord() as fake:
        env = {"DISCORD_TOKEN": "not-the-token", "DISCORD_API_BASE_URL": fake.api_base}
        code, out, err = await run_async("invite", cwd=tmp_path, env=env)
    assert code == 2 and out == ""
    assert err.splitlines() == [
        "error: Discord refused DISCORD_TOKEN: get a new one in the Discord Developer Portal "
        "(your app → Bot → Reset Token) and put it in .env."
    ]


def test_a_port_in_use_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        local = videobot("local-api", "--port", port, cwd=tmp_path)
        assert one_error_line(local).startswith(f"error: local-api --port {port}: cannot listen on 127.0.0.1")
        assert local.returncode == 2 and "pick another --port" in local.stderr
        env = {
            "DISCORD_TOKEN": "t",
            "DISCORD_API_BASE_URL": f"http://127.0.0.1:{closed_port()}/api/v10",
            "HTTP_PORT": port,
            "LOG_LEVEL": "WARNING",
        }
        run = videobot("run", cwd=tmp_path, env=env)
        assert one_error_line(run).startswith(f"error: HTTP_PORT {port}: cannot listen on 127.0.0.1")
        assert run.returncode == 2


# --------------------------------------------------------------------------- the Docker image


def dockerfile_env() -> dict[str, str]:
    """The ENV the image sets (``ENV A=1 B=2`` lines, with ``\\`` continuations)."""
    text = (REPO / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    values: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            for pair in shlex.split(line[4:]):
                key, _, value = pair.partition("=")
                values[key] = value
    return values


def test_the_image_entrypoint_commands_work(tmp_path: Path) -> None:
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert 'ENTRYPOINT ["videobot"]' in text and 'CMD ["run"]' in text
    health = re.search(r"^HEALTHCHECK .*?CMD (.+)$", text.replace("\\\n", " "), re.MULTILINE)
    assert health is not None and json.loads(health.group(1)) == ["videobot", "healthcheck"]
    # The image's ENTRYPOINT is the installed console script, not `python -m bot`.
    script = Path(sys.executable).parent / "videobot"
    for command in (["run", "--help"], ["healthcheck", "--help"], ["--version"]):
        result = subprocess.run(
            [str(script), *command], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0 and result.stdout.startswith(("usage: videobot", "videobot ")), result


def test_the_example_env_cannot_move_the_images_data_paths(tmp_path: Path) -> None:
    """``docker run --env-file .env`` with .env copied from .env.example: /data still wins."""
    image = dockerfile_env()
    assert image["DATA_DIR"] == "/data" and image["DATABASE_URL"] == "sqlite:////data/videobot.db"
    assert image["HTTP_HOST"] == "0.0.0.0" and image["HTTP_PORT"] == "8080"
    example = (REPO / ".env.example").read_text(encoding="utf-8")
    env_file = {
        key: value
        for key, _, value in (line.partition("=") for line in example.splitlines())
        if key and not key.startswith("#")
    }
    assert not {"DATA_DIR", "DATABASE_URL", "HTTP_PORT", "HTTP_HOST"} & env_file.keys()
    env_file["DISCORD_TOKEN"] = "x"  # the admin's one edit
    # --env-file values are set in the container's environment on top of the image's ENV.
    result = videobot(
        "check", cwd=tmp_path, env=image | env_file | {"PYTHONPATH": str(REPO)}, base_paths=False
    )
    assert "[ok] database: /data/videobot.db not created yet" in result.stdout, result.stdout
    assert "[ok] DISCORD_TOKEN: set" in result.stdout and "built-in local renderer starts" in result.stdout


def test_compose_runs_the_image_as_the_readme_says() -> None:
    service = yaml.safe_load((REPO / "compose.yaml").read_text(encoding="utf-8"))["services"]["videobot"]
    assert service["env_file"] == ".env" and service["restart"] == "unless-stopped"
    volume, _, target = service["volumes"][0].partition(":")
    assert target == "/data" and not volume.startswith((".", "/"))  # a named volume
    grace = service["stop_grace_period"]
    assert grace.endswith("s") and float(grace[:-1]) > SHUTDOWN_GRACE_SECONDS
    assert service["healthcheck"]["test"] == ["CMD", "videobot", "healthcheck"]


def test_the_build_context_leaves_secrets_and_local_state_out() -> None:
    ignored = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".env", ".env.*", ".venv/", "data/", ".git/", "tests/", "**/__pycache__/"} <= ignored
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    # Dependencies are installed (with the constraints) before the code is copied.
    assert dockerfile.index("-c constraints.txt") < dockerfile.index("COPY bot ./bot")
    assert "pip install --no-deps ." in dockerfile and "USER videobot" in dockerfile
    assert re.search(r"^FROM python:3\.11\.\d+-slim-bookworm$", dockerfile, re.MULTILINE)
