"""openspec/ stays true: every scenario in a spec is named by a test's docstring, and specs have the required form."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "openspec" / "specs").glob("*/spec.md"))


def test_every_scenario_is_checked_by_a_named_test():
    tests_text = "\n".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py"))
    missing = []
    for spec in SPECS:
        for name in re.findall(r"^#### Scenario: (.+)$", spec.read_text(), flags=re.M):
            if f"Scenario: {name.strip()}" not in tests_text:
                missing.append(f"{spec.parent.name}: {name}")
    assert SPECS and not missing, f"scenarios without a test naming them: {missing}"


def test_specs_have_purpose_requirements_and_shall():
    for spec in SPECS:
        text = spec.read_text()
        assert "## Purpose" in text and "## Requirements" in text, spec
        requirements = re.split(r"^### Requirement: ", text, flags=re.M)[1:]
        assert requirements, spec
        for block in requirements:
            assert "SHALL" in block, f"{spec}: requirement without SHALL: {block.splitlines()[0]}"
            assert "#### Scenario:" in block, f"{spec}: requirement without a scenario: {block.splitlines()[0]}"
