"""What a process loads before its first request: importing the Python API or the CLI loads neither pandas nor
networkx (most of a second between them on a small machine); they are imported where a frame or a graph is built.
Each check runs in a fresh interpreter, since this one has long loaded both."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("pandas", "networkx")

OPENAI_ARCHITECTURE = """
name: startup
models:
  api: {backend: openai, model: some-model, base_url: "http://127.0.0.1:9/v1"}
layers:
  - generator: {model: api, samples: 2}
"""


def heavy_modules_after(code: str) -> list[str]:
    """Which of HEAVY a fresh interpreter has loaded once `code` has run."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize(
    "code",
    [
        "from archon_search.runtime.api import Architecture",
        "import archon_search.cli",
        "import archon_search.backends.openai_api",
        "import archon_search.lang.render",
    ],
)
def test_importing_loads_neither_pandas_nor_networkx(code):
    assert heavy_modules_after(code) == []


def test_the_first_request_of_an_openai_architecture_needs_neither(tmp_path):
    path = tmp_path / "arch.yaml"
    path.write_text(OPENAI_ARCHITECTURE)
    code = (
        "from archon_search.runtime.api import Architecture\n"
        "from archon_search.runtime.pool import make_backend\n"
        f"arch = Architecture.load({str(path)!r}, cache=False)\n"
        "make_backend(arch.checked.arch.models['api'])"
    )
    assert heavy_modules_after(code) == []
