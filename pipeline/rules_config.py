"""Read and write `rules.yaml`, the manual point rules marketing uses (format: `models.rules`).

Reading keeps YAML's node marks (`yaml.compose`), so every problem is reported as a
`ConfigError` that points at the line, e.g.

    rules.yaml:14: rule 'price list' names event type 'price_lst_download', which the events
    never contain; close matches: price_list_download

Writing produces the same format (the learned, suggested rule set) with a comment per rule
that says what the data thinks of it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from models.rules import (
    LearnedPoints,
    RuleError,
    RuleSet,
    RuleVocabulary,
    applicable_rules,
    check_ruleset,
    parse_ruleset,
    ruleset_to_dict,
    vocabulary,
)
from pipeline.errors import ConfigError
from pipeline.io import atomic_path

__all__ = ["dump_rules", "load_applicable_ruleset", "load_rules", "load_ruleset",
           "parse_rules_text", "rules_file", "write_rules"]


def load_rules(path: Path | str, vocabulary: RuleVocabulary | None = None) -> RuleSet:
    """Read and validate a rules file; with a `vocabulary` (see `models.rules.vocabulary`)
    every event type and field a rule names must exist in the data. ConfigError otherwise."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: rules file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from err
    return parse_rules_text(text, source=str(path), vocabulary=vocabulary)


def load_ruleset(
    path: Path | str,
    *,
    leads: pd.DataFrame | None = None,
    events: pd.DataFrame | None = None,
    features: pd.DataFrame | None = None,
    event_groups: Mapping[str, Iterable[str]] | None = None,
) -> RuleSet:
    """`load_rules` checked against the data the rules will be scored on: event types must
    occur in `events` or in `event_groups` (params `features.event_groups`); fields must be
    columns of `leads` or `features` (without `features`, the fit columns derived from
    `leads`). Pass `leads` whenever a rule may use a raw lead field such as company_size:
    without it only `features` columns count as fields."""
    return load_rules(path, vocabulary(leads, events, features, event_groups))


DEFAULT_RULES_FILE = "rules.yaml"


def rules_file(params: Any) -> Path:
    """The manual rules file: `rules.file` in params (a source configuration sets it under
    `params: {rules: {file: ...}}`), default rules.yaml."""
    section = getattr(params, "rules", None) or {}
    return Path(section.get("file") or DEFAULT_RULES_FILE)


def load_applicable_ruleset(
    path: Path | str,
    *,
    leads: pd.DataFrame | None = None,
    events: pd.DataFrame | None = None,
    features: pd.DataFrame | None = None,
    event_groups: Mapping[str, Iterable[str]] | None = None,
) -> tuple[RuleSet, list[str]]:
    """Like `load_ruleset`, but a rule naming an event type or field the data lacks is
    left out instead of failing the file: returns the applicable rules and one message per
    rule left out (`file:line: why`). A malformed file still raises ConfigError."""
    path = Path(path)
    ruleset = load_rules(path)
    text = path.read_text(encoding="utf-8")
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    kept, skipped = applicable_rules(ruleset, vocabulary(leads, events, features, event_groups))
    return kept, [f"{path}:{_line(node, err.path)}: {err}; the rule is left out"
                  for err in skipped]


def parse_rules_text(text: str, source: str = "rules.yaml",
                     vocabulary: RuleVocabulary | None = None) -> RuleSet:
    """`load_rules` on text already read; `source` names it in the messages."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{where}: not valid YAML: {problem}") from err
    if node is None:
        raise ConfigError(f"{source}: empty; expected a `rules:` list (see the shipped "
                          "rules.yaml for the format)")
    _refuse_duplicate_keys(node, source)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:  # e.g. a `!!python/...` tag: refused, never run
        mark = getattr(err, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise ConfigError(f"{where}: not valid YAML (line "
                          f"{mark.line + 1 if mark is not None else '?'}): "
                          f"{getattr(err, 'problem', None) or err}") from err
    try:
        ruleset = parse_ruleset(data)
        if vocabulary is not None:
            check_ruleset(ruleset, vocabulary)
    except RuleError as err:
        raise ConfigError(f"{source}:{_line(node, err.path)}: {err}") from err
    return ruleset


def _line(node: yaml.Node, path: Sequence[Any]) -> int:
    """1-based line of what `path` names: the key when it ends at a mapping key (so a block
    value reports its key's line), else the list item or the deepest node reached."""
    mark = node.start_mark
    for step in path:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(step):
                    node, mark = value, key.start_mark
                    break
            else:
                break
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) \
                and 0 <= step < len(node.value):
            node = node.value[step]
            mark = node.start_mark
        else:
            break
    return mark.line + 1


def _refuse_duplicate_keys(node: yaml.Node, source: str) -> None:
    """YAML keeps the last of two equal keys silently; a rules file never means that."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            line = key.start_mark.line + 1
            if key.value in seen:
                raise ConfigError(f"{source}:{line}: key `{key.value}` appears twice in one "
                                  f"mapping (first at line {seen[key.value]})")
            seen[key.value] = line
            _refuse_duplicate_keys(value, source)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _refuse_duplicate_keys(item, source)


# --------------------------------------------------------------------------- writing


def _fmt(x: float, digits: int = 1) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _rule_comment(learned: LearnedPoints, j: int) -> str:
    lift = learned.lift[j]
    return (f"manual {_fmt(learned.manual[j], 0)} -> learned {_fmt(learned.points[j])} "
            f"(95% CI {_fmt(learned.ci_low[j])} .. {_fmt(learned.ci_high[j])}), "
            f"fires on {100 * learned.support[j]:.1f}% of snapshots, lift "
            f"{_fmt(lift, 2)}: {learned.verdict[j]}")


def _flow(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000,
                          allow_unicode=True).strip()


def dump_rules(ruleset: RuleSet, learned: LearnedPoints | None = None,
               header: str | None = None) -> str:
    """rules.yaml text for a rule set: one flow-style line per rule, band sets in block
    style. With `learned`, each rule gets a comment with manual vs learned points, interval,
    support, lift and verdict, and the header states the scale."""
    data = ruleset_to_dict(ruleset)
    lines = [f"# {line}".rstrip() for line in (header or "").splitlines()]
    if learned is not None:
        lines += [
            f"# Scale: {_fmt(learned.pdo)} points double the odds of converting "
            f"({learned.scaling}).",
            f"# Learned on {learned.n_rows} training snapshots of {learned.n_leads} leads "
            f"({learned.positives} converted), {learned.n_bootstrap} bootstrap resamples.",
        ]
    lines.append("rules:")
    index = {name: j for j, name in enumerate(learned.rules)} if learned is not None else {}
    for rule in data["rules"]:
        if rule["name"] in index:
            lines.append(f"  # {_rule_comment(learned, index[rule['name']])}")
        lines.append(f"  - {_flow(rule)}")
    if "bands" in data:
        lines.append("bands:")
        for pb, (set_name, spec) in zip(ruleset.bands, data["bands"].items(), strict=True):
            if pb.note:
                lines.append(f"  # {set_name}: {pb.note}")
            lines.append("  " + yaml.safe_dump({set_name: spec}, default_flow_style=None,
                                                sort_keys=False, allow_unicode=True).strip())
    return "\n".join(lines) + "\n"


def write_rules(path: Path | str, ruleset: RuleSet, learned: LearnedPoints | None = None,
                header: str | None = None) -> Path:
    """Write `dump_rules(...)` atomically; the file loads back with `load_rules`."""
    path = Path(path)
    text = dump_rules(ruleset, learned, header)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def fading_block(faded: RuleSet, names: Sequence[str]) -> str:
    """Commented rules.yaml lines that make `names` fade at their group's learned half-life
    (to uncomment, then rerun `leadprop rules` on the file so their points are relearned:
    the points above were learned on counts that do not fade)."""
    if not names:
        return ""
    by_name = {r["name"]: r for r in ruleset_to_dict(faded)["rules"]}
    lines = ["", "# Suggested decay, learned per intent group on the training split (see",
             "# rules_summary.md). To use it, replace the rules of the same name above with",
             "# these lines and rerun `leadprop rules` with this file as `rules.file`, so the",
             "# points are relearned on counts that fade:"]
    lines += [f"#   - {_flow(by_name[n])}" for n in names]
    return "\n".join(lines) + "\n"
