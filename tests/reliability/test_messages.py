"""User data in messages is plain text: square brackets in a header or a cell never reach
rich's markup parser (a `[/x]` used to end in a MarkupError traceback, and `[bold red]`
was swallowed)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from pipeline.cli import app


def test_brackets_in_a_header_are_printed_as_they_are(tmp_path: Path) -> None:
    leads = tmp_path / "leads.csv"
    leads.write_text("lead_id,[/x] created,[bold red]converted\nL1,2025-01-01,1\n",
                     encoding="utf-8")
    result = CliRunner().invoke(app, ["ingest", "--leads", str(leads)])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "'[/x] created'" in result.output
    assert "'[bold red]converted'" in result.output
    assert "Traceback" not in result.output


def test_help_shows_the_defaults() -> None:
    result = CliRunner().invoke(app, ["generate", "--help"])
    assert result.exit_code == 0
    assert "[default: 20000]" in result.output


def test_stages_without_their_inputs_name_the_stage_to_run(tmp_path: Path,
                                                           monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(
        (Path(__file__).parents[2] / "params.yaml").read_text(encoding="utf-8"),
        encoding="utf-8")
    for verb in ("evaluate", "register"):
        result = CliRunner().invoke(app, [verb])
        assert result.exit_code == 2, (verb, result.output)
        assert "bundle.joblib: not found; run `leadprop train`" in result.output
        assert "Traceback" not in result.output
