"""What a new user meets first: --version, `run` at the top of --help, and validation hints for the commonest slips."""

from __future__ import annotations

from importlib.metadata import version

from typer.testing import CliRunner

from archon_search.cli import app


def test_version_prints_the_installed_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"archon-search {version('archon-search')}"


def test_run_is_the_first_command_in_help():
    output = CliRunner().invoke(app, ["--help"]).output
    commands = output[output.index("Commands") :]
    positions = {name: commands.find(f" {name} ") for name in ("run", "validate", "eval", "serve", "export")}
    assert min(positions, key=positions.get) == "run"


def test_a_misspelled_op_gets_a_suggestion(write_file):
    path = write_file("name: a\nlayers:\n  - generater: {model: embedded}\n  - fusr: {model: embedded}\n")
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 1
    assert "did you mean 'generator'?" in result.output and "did you mean 'fuser'?" in result.output


def test_a_tab_in_the_indentation_says_to_use_spaces(write_file):
    path = write_file("name: a\nlayers:\n\t- generator: {model: embedded}\n")
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 1 and "indent with spaces, not tabs" in result.output
