"""The deploy/examples/*.yaml Envoy configurations, run as written: their ports and wasm path
swapped for the test's, then started in a real Envoy with two workers."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pytest

import harness

WASM_IN_EXAMPLES = "target/wasm32-wasip1/release/llm_jwt_auth.wasm"


def render(example: Path, swaps: Sequence[tuple[str, str]]) -> str:
    """`example`'s text with each `(old, new)` replaced, and its wasm path with the built one —
    each one must be there to replace, so the test notices when the example changes."""
    text = example.read_text()
    for old, new in [*swaps, (WASM_IN_EXAMPLES, str(harness.require_wasm()))]:
        assert old in text, f"{example.name} no longer has {old!r}: update this test's substitutions"
        text = text.replace(old, new)
    return text


def start(example: Path, tmp: Path, text: str, name: str) -> harness.Envoy:
    """Envoy on the rendered `text` (written under `tmp` with the example's file name)."""
    path = tmp / example.name
    path.write_text(text)
    envoy = harness.Envoy(path, name=name, concurrency=2, workdir=tmp)
    try:
        envoy.start()
    except harness.EnvoyFailed as exc:
        pytest.fail(f"Envoy refused {example.name}:\n{exc.log}", pytrace=False)
    return envoy
