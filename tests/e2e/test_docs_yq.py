"""docs/migration.md's YAML → JSON command, run as written with Debian's `yq` (the jq wrapper,
apt package `yq`; `make e2e` installs it): on the guide's LiteLLM config.yaml it prints exactly
the `general_settings` of the guide's plugin configuration. And the form the guide used to show,
`yq -o=json …` (mikefarah's Go yq), fails with Debian's — the reason it changed."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

import envoy_yaml
from test_docs_examples import MIGRATION, tagged_blocks


def yq() -> str:
    found = shutil.which("yq")
    if found is None:
        pytest.fail("yq is not installed: apt-get install yq (`make e2e` installs it; mk/e2e-tools.mk)", pytrace=False)
    return found


def is_mikefarah(binary: str) -> bool:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    return "mikefarah" in (out.stdout + out.stderr)


@pytest.fixture()
def config_yaml(tmp_path: Path) -> Path:
    [(_, text)] = tagged_blocks(MIGRATION, "litellm-config")
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def the_command() -> str:
    [(where, text)] = tagged_blocks(MIGRATION, "yq-command")
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("yq ") and lines[0].endswith(" config.yaml"), (where, lines)
    return lines[0]


def test_migration_yq_command_prints_the_plugin_general_settings(config_yaml):
    binary = yq()
    command = the_command()
    if is_mikefarah(binary):
        command = command.replace("yq ", "yq -o=json ", 1)  # as the guide says for mikefarah's
    result = subprocess.run(["bash", "-c", command], cwd=config_yaml.parent, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, f"{command}\n{result.stdout}{result.stderr}"
    [(_, envoy_config)] = tagged_blocks(MIGRATION, "envoy-config")
    [plugin] = envoy_yaml.plugin_configs(envoy_config)
    assert json.loads(result.stdout) == plugin["general_settings"]


def test_debians_yq_refuses_the_mikefarah_flag(config_yaml):
    binary = yq()
    if is_mikefarah(binary):
        pytest.fail("this machine's yq is mikefarah's; the suite expects Debian's (apt-get install yq)", pytrace=False)
    result = subprocess.run([binary, "-o=json", ".general_settings", "config.yaml"], cwd=config_yaml.parent,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and "Unknown option" in result.stderr, (result.returncode, result.stderr)
