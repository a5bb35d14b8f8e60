"""The service and its OpenAPI description agree: schemathesis, every check, on a real service over real stores.

Bounded (a fixed seed and example count) so it stays a few seconds. What JSON Schema cannot say (following oneself
is refused with 422, a post over its maxLength with 413) is in ``tests/contract/schemathesis.toml``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from bench.service_process import ServiceProcess
from tests.service_support import served, served_graph

__all__ = ["served", "served_graph"]  # module fixtures

CONFIG = Path(__file__).parent / "contract" / "schemathesis.toml"
SEED = "14513723550144211734994498270659314863"  # one that once found three mismatches, kept as a regression seed


def test_the_service_meets_its_openapi_description_under_every_schemathesis_check(
    served: ServiceProcess, tmp_path: Path
) -> None:
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    assert st is not None, "schemathesis is missing: install the dev extras (pip install -e '.[dev]')"
    args = [st, "--config-file", str(CONFIG), "run", served.url + "/openapi.json", "--checks", "all"]
    args += ["--max-examples", "100", "--seed", SEED, "--no-color"]
    result = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failure" not in result.stdout.split("SUMMARY")[-1]
    assert served.alive()
