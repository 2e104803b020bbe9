"""Stage summaries on the terminal: rounded numbers with units in short rich tables (the
shared `pipeline.console` helper behind `train`, `evaluate` and `rules`), and progress."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from rich.console import Console

from pipeline import console as c
from pipeline.stages import evaluate, train


def text_of(renderable, width: int = 120) -> str:
    out = Console(width=width, record=True, color_system=None)
    out.print(renderable)
    return out.export_text()


def test_numbers_are_rounded_with_units():
    assert c.num(0.7732683108972878) == "0.773"
    assert c.num(0.23001234, 4) == "0.2300"
    assert c.num(7984) == "7,984" and c.num(np.int64(12)) == "12" and c.num(7984.0) == "7,984"
    assert c.num(None) == "—" and c.num(float("nan")) == "—"
    assert c.num(1.234, 2, "pp") == "1.23 pp"
    assert c.pct(0.07561) == "7.6 %" and c.pct(None) == "—"
    assert c.points(-12.54) == "-12.5 pts"
    assert c.secs(4.26) == "4.3 s" and c.secs(42.4) == "42 s" and c.secs(125) == "2 min 05 s"


def test_summary_table_formats_cells_and_never_reads_markup():
    table = c.summary_table("title", [("## section",), ("auc", 0.77123456),
                                      ("rule [bold]x[/bold]", "kept", "why [red]")],
                            headers=("", "value", "note"))
    text = text_of(table)
    assert "0.771" in text and "0.77123" not in text
    assert "rule [bold]x[/bold]" in text and "why [red]" in text
    assert "section" in text and "## " not in text


def test_progress_logs_the_time_taken_and_is_quiet_off_a_terminal(caplog, capsys):
    with caplog.at_level(logging.INFO, logger="pipeline.console"), \
            c.progress("tuning", total=3, enabled=False) as advance:
        for _ in range(3):
            advance()
    err = capsys.readouterr().err  # log lines may go there (a CLI test set up logging)
    assert "━" not in err and "3/3" not in err  # but no bar is drawn
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "tuning ..." and messages[-1].startswith("tuning: done in ")


def test_progress_with_a_bar_logs_only_the_end(caplog, capsys):
    with caplog.at_level(logging.INFO, logger="pipeline.console"), \
            c.progress("bootstrap", total=2, enabled=True) as advance:
        advance(completed=2)
    assert capsys.readouterr().out == ""  # the bar goes to stderr, never stdout
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and messages[0].startswith("bootstrap: done in ")


def test_progress_does_not_claim_done_on_failure(caplog):
    with caplog.at_level(logging.INFO, logger="pipeline.console"), pytest.raises(KeyError), \
            c.progress("fitting", enabled=False):
        raise KeyError("x")
    assert not any("done in" in r.getMessage() for r in caplog.records)


TRAIN = {
    "run_id": "4f2a", "best_iteration": 187,
    "tuning": {"trials": 20, "stopped_by": "n_trials", "seconds": 73.21,
               "validation_log_loss": 0.2312345678, "configured_validation_log_loss": 0.23500001},
    "split_rows": {"train": 20011, "calibration": 6003, "test": 7984},
    "split_leads": {"train": 8000, "calibration": 2400, "test": 3219},
    "positives": {"train": 1500, "calibration": 450, "test": 607},
    "calibration": {"served": "isotonic", "rules": "sigmoid"},
    "calibration_ece": {"served": 0.005474281398927998, "rules": 0.0123},
    "served": {"served": "blend", "weight": 0.7},
}


def test_train_summary_is_a_table_not_a_dict():
    text = text_of(train.render(TRAIN))
    assert "{" not in text and "0.2312345678" not in text
    assert "7,984" in text and "3,219" in text and "7.6 %" in text  # test snapshots, leads
    assert "0.2312" in text and "1 min 13 s" in text
    assert "isotonic, ECE 0.55 pp" in text and "blend (LightGBM weight 0.7)" in text


EVALUATE = {
    "served": "lightgbm",
    "test.served": {"roc_auc": 0.7732683, "log_loss": 0.23, "ece": 0.0112,
                    "truth_roc_auc": 0.8211},
    "report": "reports/model_report.html", "test_leads": 3219, "test_snapshots": 7984,
    "test": {"roc_auc": 0.7732683108972878, "roc_auc_ci_low": 0.748, "roc_auc_ci_high": 0.7962,
             "pr_auc": 0.2808, "log_loss": 0.2300123, "ece": 0.011216189266329585,
             "capture_at_10": 0.3756, "lift_at_10": 3.756, "base_rate": 0.076},
    "calibration_ece": 0.005474281398927998,
    "promises": {"temperature": {"cold": None, "warm": "kept", "hot": "not kept"}},
}


def has_row(text: str, label: str, value: str) -> bool:
    return any(label in line and value in line for line in text.splitlines())


def test_evaluate_summary_labels_splits_and_counts():
    text = text_of(evaluate.render(EVALUATE), width=160)
    assert "{" not in text and "0.7732683" not in text
    assert "lightgbm on the test split (3,219 leads, 7,984 snapshots)" in " ".join(text.split())
    assert has_row(text, "ROC AUC", "0.773 (95 % CI 0.748–0.796)")
    assert has_row(text, "calibration error (ECE), test split", "1.12 pp")
    assert has_row(text, "calibration error (ECE), calibration split", "0.55 pp")
    assert has_row(text, "promises kept / beaten / not kept", "1 / 0 / 1 (hot)")
    assert has_row(text, "top 10 %", "37.6 %") and has_row(text, "truth ROC AUC", "0.821")


def test_mapping_table_flattens_a_stage_summary():
    from pipeline.console import mapping_table

    text = text_of(mapping_table("ingest", {"leads": 20000, "rejected": {"events": 3},
                                            "files": ["a.csv", "b.csv"], "share": 0.123456}))
    assert "{" not in text and "0.123456" not in text
    assert has_row(text, "leads", "20,000") and has_row(text, "events", "3")
    assert has_row(text, "files", "a.csv, b.csv") and has_row(text, "share", "0.123")
