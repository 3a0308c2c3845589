"""The README stays in step with the CLI and with CI."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer.main

from imgindex.cli import app

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _commands() -> dict[str, Any]:
    group = typer.main.get_command(app)
    return dict(group.commands)  # type: ignore[attr-defined]


def _options(command: Any) -> list[Any]:
    return [p for p in command.params if p.param_type_name == "option"]


def _readme_section(name: str) -> str:
    match = re.search(rf"^### `imgindex {name}[^\n]*\n(.*?)(?=^### |^## )", README, re.S | re.M)
    assert match, f"README has no section for 'imgindex {name}'"
    return match.group(1)


@pytest.mark.parametrize("name", sorted(_commands()))
def test_every_command_and_option_is_documented(name: str) -> None:
    section = _readme_section(name)
    command = _commands()[name]
    for param in _options(command):
        if not param.hidden and param.name != "help":
            for flag in param.opts:
                assert f"`{flag}" in section or f"{flag}`" in section, f"{flag} of {name} is not in the README"
    documented = set(re.findall(r"^\| `(-[-\w]+)", section, re.M))
    known = {flag for p in _options(command) for flag in p.opts}
    assert documented <= known, f"README documents options that {name} does not have: {documented - known}"


def test_quick_start_has_two_commands_and_ci_runs_the_test_one() -> None:
    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```sh\n(.*?)\n```", quick, re.S)
    assert len(commands) == 2
    assert commands[0].startswith("pip install . && imgindex ")
    test_command = commands[1]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert test_command in ci.splitlines()


def test_exit_codes_are_documented() -> None:
    from imgindex import cli

    for code in (cli.EXIT_OK, cli.EXIT_ERROR, cli.EXIT_PARTIAL, cli.EXIT_INTERRUPTED):
        assert f"| {code} |" in README


def test_every_status_is_documented() -> None:
    from imgindex.statuses import STATUSES

    for status in STATUSES:
        assert f"| `{status}` |" in README


def test_the_library_example_runs(tmp_path: Path) -> None:
    import subprocess
    import sys

    from .conftest import encode, picture, write

    source = picture(5, (160, 120))
    write(tmp_path / "dump" / "a.png", encode(source, "PNG"))
    write(tmp_path / "dump" / "b.jpg", encode(source, "JPEG", quality=70))
    code = re.search(r"## As a library\n\n```python\n(.*?)```", README, re.S)
    assert code is not None
    script = tmp_path / "example.py"
    script.write_text(code.group(1).replace('"/data/crawl/dump"', repr(str(tmp_path / "dump"))), encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "'by_status': {'ok': 2}" in done.stdout
    [group] = [line for line in done.stdout.splitlines() if line.startswith("b'")]
    assert "a.png" in group and "b.jpg" in group  # one group: the picture and its JPEG copy
