"""The workload runner is a library: the CLI's summary and report are not its business."""

from __future__ import annotations

import json
import os
import subprocess
import sys

# the CLI side (cli_run.py) orchestrates summary and report after a run; the runner must not
FORBIDDEN = (
    "sagellm_obs.run_summary",
    "sagellm_obs.summary",
    "sagellm_obs.report",
    "sagellm_obs.cli",
)


def test_the_workload_runner_imports_neither_summary_nor_report() -> None:
    code = (
        "import json, sys\n"
        "import sagellm_obs.workload\n"
        "import sagellm_obs.workload.http_runner\n"
        "import sagellm_obs.workload.runner\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('sagellm_obs'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=300,
    )
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert "sagellm_obs.workload.runner" in loaded
    bad = [m for m in loaded if m.startswith(FORBIDDEN)]
    assert bad == []
