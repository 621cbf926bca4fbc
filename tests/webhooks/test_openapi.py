"""Property-based testing of the live REST API with Schemathesis: it reads the OpenAPI
document, generates valid and invalid requests for every operation (bounded: a few
examples each, about a minute), and checks every answer: no 5xx, every status, content
type, header and body as documented, invalid requests refused, authentication enforced.

``schemathesis.toml`` beside this file says where the API knowingly differs from
Schemathesis' defaults, and why. Revoking tokens is left out: the run's own token would be
among those it finds and revokes, and everything after would be a 401.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.served import serve

CONFIG = Path(__file__).with_name("schemathesis.toml")


def test_schemathesis_finds_no_server_error_and_no_answer_off_the_schema(
    tmp_path: Path,
) -> None:
    served = serve(tmp_path / "home", tls=False)
    try:
        token = served.user("fuzzer", admin=True)
        done = subprocess.run(
            [
                str(Path(sys.executable).with_name("schemathesis")),
                "--config-file",
                str(CONFIG),
                "run",
                f"{served.url}/api/v1/openapi.json",
                "--header",
                f"Authorization: Bearer {token}",
                "--checks",
                "all",
                "--max-examples",
                "5",
                "--request-timeout",
                "10",
                "--seed",
                "20261203",
                "--no-shrink",
                "--exclude-name",
                "DELETE /api/v1/tokens/{token_id}",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
        # + POST …/scale, and 5 of /repositories (GitOps)
        assert "Selected: 24/25" in done.stdout
        assert "Tested: 24" in done.stdout
    finally:
        served.stop()
    assert served.proc.returncode == 0
    assert "Traceback" not in served.log.read_text(errors="replace")
