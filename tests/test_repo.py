"""The checkout itself: licence, packaging metadata and the nox configuration a new user meets first."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_license_file_is_the_apache_2_text_pyproject_declares() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License\n                           Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    # The SPDX expression form (PEP 639); the {text = ...} table is deprecated by setuptools.
    assert project["license"] == "Apache-2.0"


def test_readme_says_the_sdk_examples_need_the_realtime_extra() -> None:
    readme = (ROOT / "README.md").read_text()
    first_example = readme.index("with client.realtime.connect")
    note = readme.find('pip install "openai[realtime]"')
    # Before the first example, so that who copies it has installed the websockets extra it needs.
    assert 0 <= note < first_example
    assert readme[readme.rfind("\n## ", 0, note):].startswith("\n## Try it\n")


def test_nox_fails_rather_than_skips_when_its_python_is_missing(tmp_path: Path) -> None:
    import subprocess
    import sys

    # A Python that no machine has: nox must report the session failed (exit 1), not skipped (exit 0).
    out = subprocess.run(
        [sys.executable, "-m", "nox", "-f", str(ROOT / "noxfile.py"), "-s", "lint", "--force-python", "3.99"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode != 0, out.stderr
    assert "Session lint-3.99 failed" in out.stderr
    assert "skipped" not in out.stderr


def test_code_cites_only_files_in_the_repository() -> None:
    # A reader of a clone has no `shared/reference/...` next to it: comments state the fact or cite a public source.
    import re

    outside = re.compile(r"\.\./shared|shared/reference|/work/")
    found = set()
    for top in ("relay", "tests", "conformance", "bench"):
        for path in (ROOT / top).rglob("*"):
            if path.suffix not in (".py", ".md", ".js") or "node_modules" in path.parts or path == Path(__file__):
                continue
            if path.is_file() and outside.search(path.read_text(errors="replace")):
                found.add(str(path.relative_to(ROOT)))
    if outside.search((ROOT / "noxfile.py").read_text()):
        found.add("noxfile.py")
    assert not found, found
