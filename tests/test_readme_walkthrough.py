"""README.md's "At head office" and "At the till" sections, run as written (issue 14, acceptance).

The bash blocks of the two sections are taken from README.md itself and run in a fresh folder
whose ``exported_models/retail-tier/<version>`` is the session's default-job model (the till
fixture: the same job as ``make build-model`` with a shorter search), with a fresh HOME (so the
data directory, admin token and outbox are the defaults a new user gets) and only the command
line tools. Then the dashboard must show the segment mix, drift and accuracy.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from edge_runtime.artifact import read_manifest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _section_bash(readme: str, heading: str) -> str:
    """The ```bash blocks of one ``## heading`` section before its first ``###`` subsection."""
    start = readme.index(f"\n## {heading}")
    ends = [at for at in (readme.find("\n## ", start + 1), readme.find("\n### ", start + 1)) if at != -1]
    section = readme[start : min(ends) if ends else len(readme)]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)
    assert blocks, f"no bash block under {heading!r}"
    return "\n".join(blocks)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_readme_runs_from_a_built_model_to_the_dashboard(till_artifact: Path, tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    script = _section_bash(readme, "At head office") + "\n" + _section_bash(readme, "At the till")
    port = _free_port()
    script = script.replace("8000", str(port))  # another test may hold 8000
    work, home = tmp_path / "clone", tmp_path / "home"
    home.mkdir()
    shutil.copytree(till_artifact, work / "exported_models" / "retail-tier" / till_artifact.name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGESEG_")}
    env["EDGESEG_KEY_DIR"] = os.environ["EDGESEG_KEY_DIR"]  # the factory key that signed the model
    env["HOME"] = str(home)
    env.pop("XDG_DATA_HOME", None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    (work / "walkthrough.sh").write_text("set -euo pipefail\n" + script, encoding="utf-8")
    # Files, not pipes: the server the README starts in the background keeps its output open.
    with open(tmp_path / "out.txt", "w") as out_file, open(tmp_path / "err.txt", "w") as err_file:
        process = subprocess.Popen(
            ["bash", "walkthrough.sh"], cwd=work, env=env, stdout=out_file, stderr=err_file, start_new_session=True
        )
    try:
        process.wait(timeout=300)
        err = (tmp_path / "err.txt").read_text(encoding="utf-8")
        print(err)  # the commands' own messages, for whoever reads a failure
        assert process.returncode == 0, f"README commands failed:\n{err[-4000:]}"
        data_dir = home / ".local" / "share" / "edgeseg"
        assert f"edgeseg-central: database sqlite:///{data_dir / 'central.db'}" in err
        segments = (work / "segments.jsonl").read_text(encoding="utf-8").splitlines()
        assert len(segments) == 60
        token = (data_dir / "admin_token").read_text(encoding="utf-8").splitlines()[0].strip()
        auth = base64.b64encode(f"analyst:{token}".encode()).decode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/dashboard", headers={"Authorization": f"Basic {auth}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            page = response.read().decode("utf-8")
        (tmp_path / "dashboard.html").write_text(page, encoding="utf-8")
        print(f"dashboard saved to {tmp_path / 'dashboard.html'}")
        assert "store-7-till-2" in page
        mix = re.search(r"Segment mix over time \((\d+) results\)", page)
        assert mix and 30 <= int(mix.group(1)) <= 60, "segment mix missing"  # cells under 10 customers hidden
        drift = page[page.index("<h2>Drift") : page.index("<h2>Accuracy")]
        inputs = [spec.name for spec in read_manifest(till_artifact).inputs]
        shown = [name for name in inputs if f"<td>{name}</td>" in drift]  # the 8 largest PSIs
        assert len(shown) >= 5, f"no PSI per input in the drift section: {drift[:600]}"
        accuracy = page[page.index("<h2>Accuracy") :]
        assert "no outcomes" not in accuracy.lower(), accuracy[:600]
        assert re.search(r"\b12\b", re.sub(r"<[^>]+>", " ", accuracy)), accuracy[:600]  # 12 customers evaluated
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)  # the server the README started in the background
        except ProcessLookupError:
            pass
        process.wait(timeout=30)
        try:
            os.killpg(process.pid, signal.SIGKILL)  # anything left of the group
        except ProcessLookupError:
            pass
