"""The gateway's own services are installed exactly: a wheel built on the controller and a hashed lock.

Each test installs a small package (made here, with dependencies built here and served from a local
folder instead of PyPI) on this machine with the role's own tasks (tests/ansible/install.yml runs
roles/gateway/tasks/python_app.yml), then changes the source or the lock and installs again. What a user
sees: whether the run changed anything, which environment the service's path points to, and what is
importable in it.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.ansible.playbooks import changed_count
from tests.harness.playbook import REPO, run_playbook

pytestmark = pytest.mark.slow

INSTALL_PLAYBOOK = Path(__file__).with_name("install.yml")
# The build backend the project's packages pin (services/*/pyproject.toml), present on the controller.
BUILD_REQUIRES = (REPO / "services" / "auth" / "pyproject.toml").read_text().split("requires = ")[1].splitlines()[0]


def _pyproject(name: str, dependencies: list[str]) -> str:
    deps = ", ".join(f'"{dep}"' for dep in dependencies)
    return (
        f'[build-system]\nrequires = {BUILD_REQUIRES}\nbuild-backend = "setuptools.build_meta"\n\n'
        f'[project]\nname = "{name}"\nversion = "1.0"\nrequires-python = ">=3.11"\ndependencies = [{deps}]\n'
    )


def _module(name: str) -> str:
    return name.replace("-", "_")


def write_package(root: Path, name: str, dependencies: list[str], value: str = "one") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(_pyproject(name, dependencies))
    (root / _module(name)).mkdir(exist_ok=True)
    (root / _module(name) / "__init__.py").write_text(f"VALUE = {value!r}\n")
    return root


def build_wheel(source: Path, outdir: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--wheel", "--outdir", str(outdir), str(source)],
        check=True,
        capture_output=True,
    )
    return next(outdir.glob(f"{_module(source.name)}-*.whl"))


def lock_line(wheel: Path, name: str) -> str:
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    return f"{name}==1.0 \\\n    --hash=sha256:{digest}\n"


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A folder of wheels pip finds instead of PyPI: the dependencies probe-dep and probe-extra."""
    tmp = tmp_path_factory.mktemp("wheels")
    wheels = tmp / "wheels"
    return {
        name: build_wheel(write_package(tmp / "src" / name, name, []), wheels) for name in ("probe-dep", "probe-extra")
    }


@pytest.fixture
def service(tmp_path: Path, index: dict[str, Path]) -> Path:
    """A service package depending on probe-dep, with a lock that also pins probe-extra (not needed by it)."""
    source = write_package(tmp_path / "src" / "probe-service", "probe-service", ["probe-dep==1.0"])
    (source / "requirements.lock").write_text(
        lock_line(index["probe-dep"], "probe-dep") + lock_line(index["probe-extra"], "probe-extra")
    )
    return source


def install(
    source: Path, venv: Path, index: dict[str, Path], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    wheels = next(iter(index.values())).parent
    return run_playbook(
        INSTALL_PLAYBOOK,
        venv.parent / "ansible",
        {"install_source": str(source), "install_venv": str(venv)},
        env={"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels), "PIP_CONFIG_FILE": os.devnull, **(env or {})},
    )


def installed(source: Path, venv: Path, index: dict[str, Path]) -> subprocess.CompletedProcess[str]:
    result = install(source, venv, index)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return result


def run_in(venv: Path, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, check=False)


def value_in(venv: Path) -> str:
    result = run_in(venv, "import probe_service; print(probe_service.VALUE)")
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_an_unchanged_tree_and_lock_install_nothing_again(
    tmp_path: Path, service: Path, index: dict[str, Path]
) -> None:
    venv = tmp_path / "opt" / "venv"
    first = installed(service, venv, index)
    assert "installed=True" in first.stdout
    assert value_in(venv) == "one"
    target = venv.resolve()

    again = installed(service, venv, index)
    assert changed_count(again) == 0, again.stdout[-3000:]
    assert "installed=False" in again.stdout
    assert venv.resolve() == target

    # A fresh checkout (every file newer) builds the same wheel bytes, so nothing is installed either.
    later = time.time() + 3600
    for path in service.rglob("*"):
        os.utime(path, (later, later))
    touched = installed(service, venv, index)
    assert changed_count(touched) == 0, touched.stdout[-3000:]
    assert venv.resolve() == target


def test_the_dependencies_are_exactly_the_lock(tmp_path: Path, service: Path, index: dict[str, Path]) -> None:
    venv = tmp_path / "opt" / "venv"
    installed(service, venv, index)
    # probe-extra is in the lock only: the lock decides, not the package's own loose requirements.
    assert run_in(venv, "import probe_dep, probe_extra").returncode == 0

    # A lock that drops a package gives an environment without it: nothing lingers from before.
    (service / "requirements.lock").write_text(lock_line(index["probe-dep"], "probe-dep"))
    changed = installed(service, venv, index)
    assert "installed=True" in changed.stdout
    assert run_in(venv, "import probe_dep").returncode == 0
    assert "No module named 'probe_extra'" in run_in(venv, "import probe_extra").stderr


def test_a_changed_source_installs_a_fresh_environment_beside_the_running_one(
    tmp_path: Path, service: Path, index: dict[str, Path]
) -> None:
    venv = tmp_path / "opt" / "venv"
    installed(service, venv, index)
    first = venv.resolve()

    (service / "probe_service" / "__init__.py").write_text("VALUE = 'two'\n")
    changed = installed(service, venv, index)
    assert "installed=True" in changed.stdout
    assert value_in(venv) == "two"
    second = venv.resolve()
    assert second != first
    # The environment the running service was started from stays until the next change.
    assert run_in(first, "import probe_service; print(probe_service.VALUE)").stdout.strip() == "one"

    (service / "probe_service" / "__init__.py").write_text("VALUE = 'three'\n")
    installed(service, venv, index)
    assert value_in(venv) == "three"
    assert second.is_dir()
    assert not first.exists()
    assert sorted(p.name for p in (venv.parent / "venvs").iterdir()) == sorted([second.name, venv.resolve().name])


def test_a_dependency_whose_hash_does_not_match_is_refused(
    tmp_path: Path, service: Path, index: dict[str, Path]
) -> None:
    venv = tmp_path / "opt" / "venv"
    installed(service, venv, index)
    target = venv.resolve()

    # Attack: the file served for probe-dep 1.0 is not the one the lock was made from (a compromised
    # mirror or index). pip must refuse it, and the service must keep its working environment.
    lock = service / "requirements.lock"
    text = lock.read_text()
    lock.write_text(text.replace(text.split("--hash=sha256:")[1].split()[0], "0" * 64))
    refused = install(service, venv, index)
    assert refused.returncode != 0
    assert "THESE PACKAGES DO NOT MATCH THE HASHES" in refused.stdout
    assert venv.resolve() == target
    assert value_in(venv) == "one"


def lock_entries(lock: str) -> dict[str, str]:
    """name: the whole entry (name==version \\ and its hashes), for each package of a pip-compile lock."""
    entries: dict[str, str] = {}
    name = ""
    for line in lock.splitlines():
        if line and not line.startswith((" ", "#")):
            name = line.split("==")[0]
            entries[name] = line
        elif name and line.strip().startswith("--hash="):
            entries[name] += "\n" + line
    return entries


@pytest.mark.parametrize("service", ["auth", "mcp-proxy"])
def test_the_services_locks_pin_every_dependency_with_hashes(service: str) -> None:
    source = REPO / "services" / service
    lock = (source / "requirements.lock").read_text()
    entries = lock_entries(lock)
    # Every package pinned with ==, with at least one hash (pip's --require-hashes refuses anything else).
    for name, entry in entries.items():
        assert re.match(rf"^{re.escape(name)}==\S+ \\$", entry.splitlines()[0]) and "--hash=sha256:" in entry, entry
    # Every direct dependency of pyproject.toml is pinned at the version pyproject.toml names.
    declared = (source / "pyproject.toml").read_text().split("\ndependencies = [")[1].split("]")[0]
    for spec in re.findall(r'"([^"]+)"', declared):
        name, _, version = spec.partition("==")
        entry = entries.get(name.lower().replace("_", "-"), "")
        assert entry.startswith(f"{name.lower()}=={version} "), (
            f"{spec} is not what requirements.lock pins: regenerate it"
        )
    # It was made by the documented command.
    assert f"--output-file=services/{service}/requirements.lock" in lock and "--generate-hashes" in lock


def test_the_build_leaves_nothing_behind_on_the_controller(
    tmp_path: Path, service: Path, index: dict[str, Path]
) -> None:
    scratch = tmp_path / "controller-tmp"
    scratch.mkdir()
    result = install(service, tmp_path / "opt" / "venv", index, env={"TMPDIR": str(scratch)})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert list(scratch.iterdir()) == []
    assert not (service / "build").exists() and not (service / "dist").exists()
