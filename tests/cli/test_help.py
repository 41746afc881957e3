"""Every command's help: each option and argument says what it is, and config keys in brackets stay visible."""

from __future__ import annotations

import os

import click
import typer

from conftest import run_cli


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))
        else:
            yield (*prefix, name), command


def test_every_option_of_every_command_has_help():
    from trustfm.cli import _register, app

    _register()
    root = typer.main.get_command(app)
    missing, seen = [], 0
    for path, command in _commands(root):
        assert (command.help or "").strip(), f"trustfm {' '.join(path)} has no description"
        for param in command.params:
            seen += 1
            if not (getattr(param, "help", None) or "").strip():
                missing.append(f"trustfm {' '.join(path)} {param.opts[0] if param.opts else param.name}")
    assert seen > 50
    assert not missing, "options without help: " + ", ".join(missing)


def test_help_shows_config_keys_and_flags_without_a_type():
    result = run_cli(["train", "--help"], env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    for text in ("[data.train]", "[train.epochs]", "[privacy.dp.epsilon]", "[fairness.mitigation]", "[seed]"):
        assert text in result.stdout, f"{text} missing from train --help"
    quiet = next(line for line in result.stdout.splitlines() if "--quiet" in line)
    assert "<bool>" not in quiet
    assert "\\[" not in result.stdout  # Typer's Rich escapes stay out of the plain help
    assert "[required]" in run_cli(["gate", "--help"], env={**os.environ, "COLUMNS": "200"}).stdout
