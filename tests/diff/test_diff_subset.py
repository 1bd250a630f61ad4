"""A fixed-seed slice of the differential run (tests/diff/difftool.py): SUBSET_N generated cases
through LiteLLM 1.110.2 (the oracle, .venv-oracle) and through the filter in a real Envoy.

Fails on every disagreement that tests/diff/known_differences.json does not explain; the failure
lists each class with one example. Needs the built .wasm (LLM_JWT_AUTH_WASM or `make build`) and
the oracle venv (`make oracle-venv`); `make diff-subset` sets both up. About a minute on 2 cores.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import difftool  # noqa: E402

SUBSET_SEED = int(os.environ.get("DIFF_SUBSET_SEED", "7"))
SUBSET_N = int(os.environ.get("DIFF_SUBSET_N", "150"))
COMPAT = HERE.parents[1] / "docs" / "compatibility.md"


@pytest.fixture(scope="module")
def subset_run() -> difftool.Run:
    run = difftool.run(SUBSET_SEED, SUBSET_N)
    (HERE / "last-subset-run.md").write_text(difftool.report(run))
    return run


def test_known_differences_are_documented():
    """Every allow-list entry names the compatibility-page line that makes it deliberate."""
    lines = COMPAT.read_text().splitlines()
    entries = difftool.load_known()
    ids = [e["id"] for e in entries]
    assert len(ids) == len(set(ids)), f"duplicate ids: {ids}"
    for e in entries:
        assert set(e) >= {"id", "doc", "reason", "explains", "match"}, e
        assert e["explains"] and e["match"], e
        m = re.fullmatch(r'docs/compatibility\.md, (row|section) "(.+)"', e["doc"])
        assert m, f"{e['id']}: doc must name a row or section of docs/compatibility.md"
        kind, name = m.groups()
        wanted = f"| {name} |" if kind == "row" else f"## {name}"
        assert any(line.startswith(wanted) for line in lines), f"{e['id']}: docs/compatibility.md has no {kind} {name!r}"


def test_filter_agrees_with_litellm(subset_run: difftool.Run):
    total = len(subset_run.results)
    assert total == SUBSET_N
    oracle_errors = [r for r in subset_run.results if r.lite.get("oracle_error")]
    assert not oracle_errors, f"the oracle failed on {len(oracle_errors)} cases: {oracle_errors[0].lite}"
    unexplained = subset_run.unexplained()
    if not unexplained:
        return
    by_class: dict[str, list[difftool.Result]] = {}
    for r in unexplained:
        by_class.setdefault(r.cls or "?", []).append(r)
    parts = [f"{len(unexplained)} of {total} cases disagree with LiteLLM and are not in "
             f"known_differences.json ({len(by_class)} classes; full report: tests/diff/last-subset-run.md):"]
    for cls, rs in sorted(by_class.items(), key=lambda kv: -len(kv[1])):
        r = rs[0]
        parts.append(f"\n* {len(rs)} x {cls}\n{difftool._example(r)}")
    pytest.fail("\n".join(parts), pytrace=False)
