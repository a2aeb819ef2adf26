"""A plain, non-editable install works: the wheel carries the template and the console script.

Builds the wheel once per module, installs it into a fresh venv (system site-packages
supply the dependencies, so nothing is downloaded but the build backend), and runs the
installed `haproxy-k8s` from outside the repository, where only the installed package can
provide the template.
"""

from __future__ import annotations

import configparser
import email
import importlib.util
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from haproxy_k8s.config.loader import load_config
from haproxy_k8s.haproxy.render import render

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
TIMEOUT = 300


def run(*cmd: str | Path, cwd: Path, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT, check=False)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout}\n{done.stderr}"
    return done


def clean_env(**extra: str) -> dict[str, str]:
    """No PYTHONPATH: the venv must find the package it installed, not the source tree."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out)]
    if importlib.util.find_spec("hatchling") is not None:
        cmd.append("--no-build-isolation")  # the backend is here already: no download
    run(*cmd, str(REPO), cwd=out, env=clean_env(PIP_DISABLE_PIP_VERSION_CHECK="1"))
    (built,) = out.glob("haproxy_k8s-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("venv")
    run(sys.executable, "-m", "venv", "--system-site-packages", root / "v", cwd=root)
    python = root / "v" / "bin" / "python"
    run(python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", wheel, cwd=root,
        env=clean_env(PIP_DISABLE_PIP_VERSION_CHECK="1"))
    yield root / "v"


def test_wheel_ships_the_template_and_the_console_script(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert "haproxy_k8s/templates/haproxy.cfg.j2" in names
        assert "haproxy_k8s/cli/__init__.py" in names
        assert not any(n.startswith(("tests/", "examples/")) for n in names)
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        parser = configparser.ConfigParser()
        parser.read_string(zf.read(entry_points).decode())
    assert parser["console_scripts"]["haproxy-k8s"].strip() == "haproxy_k8s.cli:main"


def test_installed_command_renders_outside_the_repository(venv: Path, tmp_path: Path) -> None:
    env = clean_env()
    where = run(venv / "bin" / "python", "-c",
                "import haproxy_k8s, sys; sys.stdout.write(haproxy_k8s.__file__)",
                cwd=tmp_path, env=env).stdout
    assert Path(where).is_relative_to(venv), f"imported from {where}, not the venv"

    script = venv / "bin" / "haproxy-k8s"
    assert script.exists(), "the console script is installed"
    rendered = run(script, "render", "--config-dir", EXAMPLES, cwd=tmp_path, env=env).stdout
    # Same euid and HAProxy build as this process, so the same bytes as an in-process render.
    assert rendered == render(load_config(EXAMPLES))
    version = run(script, "--version", cwd=tmp_path, env=env).stdout
    assert version.startswith("haproxy-k8s ")


# -- the demo extra ----------------------------------------------------------------------

def requires_dist(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        (metadata,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        message = email.message_from_bytes(zf.read(metadata))
    return message.get_all("Requires-Dist") or []


def installs_with(requirement: Requirement, extra: str) -> bool:
    return requirement.marker is None or requirement.marker.evaluate({"extra": extra})


def test_cryptography_comes_with_the_demo_extra_only(wheel: Path) -> None:
    requirements = [Requirement(line) for line in requires_dist(wheel)]
    crypto = [r for r in requirements if r.name == "cryptography"]
    assert crypto, "cryptography is listed at all"
    assert not any(installs_with(r, "") for r in crypto), "a plain install pulls it in"
    assert any(installs_with(r, "demo") for r in crypto)
    # The test extra names the demo extra (the tests make certificates); hatchling
    # writes that out as the demo extra's requirements under `extra == "test"`.
    assert any(installs_with(r, "test") for r in crypto)
    assert {str(r.marker) for r in crypto} == {'extra == "demo"', 'extra == "test"'}


# Run in a fresh interpreter: this one has imported cryptography for the fixtures already.
WHAT_IMPORTS_CRYPTOGRAPHY = """
import sys
from haproxy_k8s.cli import main
try:
    main(["check", "--help"])
except SystemExit as e:
    assert e.code == 0, e.code
sys.stderr.write(",".join(sorted(m for m in sys.modules if m.split(".")[0] == "cryptography")))
"""


def test_cli_and_check_help_do_not_import_cryptography(venv: Path, tmp_path: Path) -> None:
    done = run(venv / "bin" / "python", "-c", WHAT_IMPORTS_CRYPTOGRAPHY, cwd=tmp_path,
               env=clean_env())
    assert "usage:" in done.stdout
    assert done.stderr == "", f"imported: {done.stderr}"


# cryptography is installed wherever the tests run (the test extra needs it), so its
# absence is simulated the way Python documents: None in sys.modules fails the import.
DEMO_WITHOUT_CRYPTOGRAPHY = """
import sys
sys.modules["cryptography"] = None
from haproxy_k8s.cli import main
sys.exit(main(["demo", "--duration", "1"]))
"""


def test_demo_without_the_extra_says_what_to_install(tmp_path: Path) -> None:
    # Ports the demo refuses: should the extra check ever come later, nothing starts.
    env = clean_env(HAPROXY_K8S_DEMO_PORTS="0,0,0")
    # This venv's installed package: the wheel's venv above lacks the daemon's dependencies.
    done = subprocess.run([sys.executable, "-c", DEMO_WITHOUT_CRYPTOGRAPHY],
                          cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT, check=False)
    assert done.returncode == 1, done
    assert "the demo needs the demo extra: pip install 'haproxy-k8s[demo]'" in done.stderr
    assert "Traceback" not in done.stderr, done.stderr
