"""The systemd unit, its drop-ins, the sysusers file and the NCS2 udev rule, checked with
the real systemd 252 tools: `systemd-analyze verify` (which exits 0 even on unknown keys,
so any output on stderr fails), `systemd-analyze security --offline`, `systemd-sysusers
--root`."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

PACKAGING = Path(__file__).resolve().parents[2] / "packaging"
UNIT = PACKAGING / "systemd" / "backbench-agent.service"
DROPINS = sorted((PACKAGING / "systemd" / "dropins").glob("*.conf"))
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def _settings(path: Path) -> list[tuple[str, str]]:
    pairs = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, _, value = line.partition("=")
            pairs.append((key.strip(), value.strip()))
    return pairs


def _staged(tmp_path: Path, dropins: list[Path]) -> Path:
    """The unit in a folder of its own, ExecStart pointing at a binary that exists here
    (verify refuses a missing one), with ``dropins`` in its .d folder."""
    text = UNIT.read_text().replace("/usr/bin/backbench-agent", shutil.which("true") or "/bin/true")
    (tmp_path / UNIT.name).write_text(text)
    if dropins:
        d = tmp_path / f"{UNIT.name}.d"
        d.mkdir()
        for dropin in dropins:
            shutil.copy(dropin, d / dropin.name)
    return tmp_path


def _verify(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ANALYZE), "verify", "--man=no", UNIT.name], cwd=folder, capture_output=True, text=True,
        env={"SYSTEMD_UNIT_PATH": f"{folder}:", "PATH": "/usr/bin:/bin"}, timeout=60,
    )  # fmt: skip


@needs_analyze
@pytest.mark.parametrize("dropins", [[], DROPINS], ids=["unit", "unit+dropins"])
def test_the_unit_verifies_without_a_word(tmp_path: Path, dropins: list[Path]) -> None:
    done = _verify(_staged(tmp_path, dropins))
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr


@needs_analyze
def test_verify_as_used_here_catches_an_unknown_key(tmp_path: Path) -> None:
    """The check above can fail: verify's exit status alone would not."""
    folder = _staged(tmp_path, [])
    unit = folder / UNIT.name
    unit.write_text(unit.read_text().replace("[Service]\n", "[Service]\nOOMPolicyy=continue\n", 1))
    done = _verify(folder)
    assert "Unknown key" in done.stderr


@needs_analyze
def test_the_unit_is_hardened(tmp_path: Path) -> None:
    folder = _staged(tmp_path, [])
    done = subprocess.run(
        [str(ANALYZE), "security", "--offline=yes", str(folder / UNIT.name)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout)
    assert found, done.stdout[-2000:] + done.stderr
    assert float(found.group(1)) <= 2.0, done.stdout


def test_the_unit_keeps_what_the_agent_needs() -> None:
    settings = _settings(UNIT)
    keys = dict(settings)
    assert keys["Type"] == "notify" and keys["Restart"] == "on-failure" and "WatchdogSec" in keys
    # One worker OOM-killed must not stop the agent (the default OOMPolicy=stop would).
    assert keys["OOMPolicy"] == "continue"
    assert keys["KillMode"] == "mixed" and keys["UMask"] == "0007"
    assert keys["User"] == keys["Group"] == "backbench"
    # OpenVINO's and oneDNN's JIT write the code they run; the NCS2 re-enumerates.
    assert "MemoryDenyWriteExecute" not in keys and "PrivateDevices" not in keys
    assert ("DeviceAllow", "char-usb_device rw") in settings
    # Workers set RLIMIT_AS and pin threads: @resources must not be filtered out.
    denied = " ".join(v for k, v in settings if k == "SystemCallFilter" and v.startswith("~"))
    assert "@resources" not in denied
    # /proc/stat and /proc/meminfo feed the interference measure and the host manifest.
    assert "ProcSubset" not in keys


def test_the_ncs2_rule_is_for_the_group_only() -> None:
    (rule,) = (PACKAGING / "udev").glob("*.rules")
    lines = [ln for ln in rule.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines == ['SUBSYSTEM=="usb", ATTRS{idVendor}=="03e7", MODE="0660", GROUP="backbench"']


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="systemd-sysusers is not installed")
def test_sysusers_makes_the_user_and_group(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    conf = PACKAGING / "systemd" / "backbench.sysusers.conf"
    done = subprocess.run(
        ["systemd-sysusers", f"--root={tmp_path}", str(conf)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    passwd = (tmp_path / "etc" / "passwd").read_text()
    group = (tmp_path / "etc" / "group").read_text()
    (user,) = [ln for ln in passwd.splitlines() if ln.startswith("backbench:")]
    assert user.split(":")[5:] == ["/var/lib/backbench", "/usr/sbin/nologin"]
    assert any(ln.startswith("backbench:") for ln in group.splitlines())
