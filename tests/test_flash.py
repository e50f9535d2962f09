"""flash.sh: arguments, and a real --root run into a temporary Raspberry Pi OS-like tree.

The tree run does everything flash.sh does for an SD card except building wheels: it is given a
wheelhouse (``--wheelhouse``) holding this checkout's own wheel, built once here with pip, so no
download happens. Users and groups are made in the tree by the real ``systemd-sysusers --root``
and units enabled by the real ``systemctl --root``; agent.yaml is checked with the real
``check-config`` (``LOA_PYTHON``)."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.config import load_config

ROOT = Path(__file__).resolve().parent.parent
FLASH = ROOT / "flash.sh"
DEVICE = "xa-quang-son-07"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE7yQ4uVQk1Z0m2wq5n3aJ0dYz3F6cQ8yXo4eTzW3h0s tech@laptop"
BUNDLE_YAML = """\
central:
  mqtt_url: mqtts://mqtt.quang-tri.gov.vn:8883
  username: xa-quang-son-07
  password_file: /etc/loa/mqtt-password
  signing_public_key_files:
    - /etc/loa/central-signing.pub
  groups: [xa-quang-son]
"""

PIP_WHEEL = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index"]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="owners in the tree need root")
needs_systemd = pytest.mark.skipif(
    shutil.which("systemd-sysusers") is None, reason="systemd is not installed"
)


def flash(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(FLASH), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "LOA_PYTHON": sys.executable, "PYTHONPATH": str(ROOT), **(env or {})},
    )


def call(function: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run one of flash.sh's functions alone: sourced, flash.sh defines them and runs nothing."""
    script = 'set -euo pipefail; source "$0"; "$@"'
    return subprocess.run(
        ["bash", "-c", script, str(FLASH), function, *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def make_tree(path: Path) -> Path:
    """The parts of a Raspberry Pi OS root that flash.sh reads: it has no gpio group of its own."""
    (path / "etc").mkdir(parents=True)
    (path / "etc" / "os-release").write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n')
    (path / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (path / "etc" / "group").write_text("root:x:0:\ndialout:x:20:\nsudo:x:27:\naudio:x:29:\nplugdev:x:46:\n")
    return path


@dataclass
class Box:
    tree: Path
    bundle: Path
    key: Path
    wheels: Path

    def args(self, *extra: str) -> list[str]:
        return ["--device-id", DEVICE, "--root", str(self.tree), "--wheelhouse", str(self.wheels), *extra]

    def full(self) -> list[str]:
        return self.args("--central-bundle", str(self.bundle), "--ssh-key", str(self.key))

    def ids(self, table: str, name: str) -> int:
        for line in (self.tree / "etc" / table).read_text().splitlines():
            fields = line.split(":")
            if fields[0] == name:
                return int(fields[2])
        raise AssertionError(f"{name} is not in the tree's /etc/{table}")

    def members(self, group: str) -> set[str]:
        for line in (self.tree / "etc" / "group").read_text().splitlines():
            fields = line.split(":")
            if fields[0] == group:
                return set(filter(None, fields[3].split(",")))
        raise AssertionError(f"no group {group}")

    def owned(self, relative: str, mode: int, user: str, group: str) -> Path:
        path = self.tree / relative.lstrip("/")
        info = path.lstat()
        assert (oct(info.st_mode & 0o7777), info.st_uid, info.st_gid) == (
            oct(mode),
            self.ids("passwd", user) if user != "root" else 0,
            self.ids("group", group) if group != "root" else 0,
        ), relative
        return path


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This checkout's wheel, as flash.sh builds it (same SOURCE_DATE_EPOCH idea), without network."""
    directory = tmp_path_factory.mktemp("wheelhouse")
    result = subprocess.run(
        [*PIP_WHEEL, "-w", str(directory), str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={**os.environ, "SOURCE_DATE_EPOCH": "1700000000"},
    )
    assert result.returncode == 0, result.stderr
    return directory


@pytest.fixture
def box(tmp_path: Path, wheels: Path) -> Box:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "central.yaml").write_text(BUNDLE_YAML)
    (bundle / "mqtt-password").write_text("s3cret-for-07\n")
    (bundle / "central-signing.pub").write_text("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n")
    key = tmp_path / "tech.pub"
    key.write_text(KEY + "\n")
    return Box(make_tree(tmp_path / "root"), bundle, key, wheels)


def snapshot(tree: Path) -> dict[str, tuple[object, ...]]:
    """Everything a second run could change: kind, mode, owner, bytes, link target, mtime."""
    seen: dict[str, tuple[object, ...]] = {}
    for path in sorted(tree.rglob("*")):
        info = path.lstat()
        if path.is_symlink():
            content: object = os.readlink(path)
        elif path.is_file():
            content = path.read_bytes()
        else:
            content = None
        key = str(path.relative_to(tree))
        seen[key] = (info.st_mode, info.st_uid, info.st_gid, content, info.st_mtime_ns if content else 0)
    return seen


def test_flash_sh_parses() -> None:
    result = subprocess.run(["bash", "-n", str(FLASH)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck_finds_nothing() -> None:
    result = subprocess.run(["shellcheck", str(FLASH)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


@pytest.mark.skipif(shutil.which("apt-cache") is None, reason="not a Debian system")
@pytest.mark.parametrize(
    ("package", "installable"),
    [
        ("bash", True),
        ("loa-no-such-package", False),  # as python3-lgpio on Debian 12: apt prints nothing
        ("mail-transport-agent", False),  # purely virtual: apt says "Candidate: (none)"
    ],
)
def test_apt_candidate_is_empty_unless_apt_can_install_the_package(package: str, installable: bool) -> None:
    result = call("apt_candidate", package)
    assert result.returncode == 0, result.stderr
    assert bool(result.stdout.strip()) is installable, result.stdout


# ---- arguments -------------------------------------------------------------------------------


def bad_arguments(box: Box) -> Iterator[tuple[list[str], str]]:
    """Each wrong call and a word its one sentence must contain."""
    tree, not_a_key = str(box.tree), str(box.bundle / "mqtt-password")
    wrong_bundle = box.args("--central-bundle", tree)
    yield [], "--device-id"
    yield ["--device-id"], "needs a value"
    yield ["--device-id", "Xa Quang Son"], "not a box id"
    yield ["--device-id", "xa"], "not a box id"
    yield ["--devise-id", DEVICE], "unknown argument '--devise-id'"
    yield ["--root", tree], "--device-id is required"
    yield ["--device-id", DEVICE, "--root", str(box.tree / "nowhere")], "not a directory"
    yield ["--device-id", DEVICE, "--root", str(box.bundle)], "does not look like a Raspberry Pi OS root"
    yield ["--device-id", DEVICE, "--root", tree, "--image", str(box.key)], "not both"
    yield ["--device-id", DEVICE, "--image", str(box.tree / "pi.img")], "is not a file"
    yield ["--device-id", DEVICE, "--root", tree, "--ssh-key", not_a_key], "SSH public key"
    yield ["--device-id", DEVICE, "--root", tree, "--wheelhouse", tree], "no loa-*.whl"
    yield wrong_bundle, "central.yaml"


def test_each_wrong_or_missing_argument_is_one_sentence_and_exit_2(box: Box) -> None:
    before = snapshot(box.tree)
    for args, words in bad_arguments(box):
        result = flash(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert result.stdout == "", args  # refused before any step
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("flash.sh: ") and lines[0].endswith("."), lines
        assert words in lines[0], (args, lines)
    assert snapshot(box.tree) == before


def test_a_bundle_naming_a_file_it_lacks_is_refused(box: Box) -> None:
    (box.bundle / "mqtt-password").unlink()
    result = flash(*box.full())
    assert result.returncode == 2
    assert result.stderr == (
        f"flash.sh: {box.bundle}/central.yaml names /etc/loa/mqtt-password, which is not in the bundle.\n"
    )


def test_a_tree_for_another_cpu_needs_a_wheelhouse_built_for_it(box: Box) -> None:
    python = box.tree / "usr" / "bin" / "python3.11"
    python.parent.mkdir(parents=True)
    header = bytearray(64)
    header[:4] = b"\x7fELF"
    header[18:20] = (183 if os.uname().machine != "aarch64" else 62).to_bytes(2, "little")
    python.write_bytes(bytes(header))
    (box.tree / "usr" / "bin" / "python3").symlink_to("python3.11")
    result = flash("--device-id", DEVICE, "--root", str(box.tree))
    assert result.returncode == 2
    assert "pass --wheelhouse DIR." in result.stderr and len(result.stderr.splitlines()) == 1


@needs_root
@needs_systemd
def test_a_bundle_that_check_config_refuses_writes_no_config(box: Box) -> None:
    (box.bundle / "central.yaml").write_text(BUNDLE_YAML.replace("mqtts://", "http://"))
    result = flash(*box.full())
    assert result.returncode == 2
    assert "central.mqtt_url" in result.stdout + result.stderr
    assert result.stderr.splitlines()[-1].startswith("flash.sh: check-config refuses")
    assert not (box.tree / "etc" / "loa" / "agent.yaml").exists()


# ---- a real run into a tree --------------------------------------------------------------------


@needs_root
@needs_systemd
def test_root_writes_the_expected_files_owners_modes_and_enabled_units(box: Box) -> None:
    result = flash(*box.full())
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^==> \d+ change\(s\) made for xa-quang-son-07$", result.stdout, re.MULTILINE)

    # users and groups, as systemd-sysusers made them in the tree
    assert box.ids("passwd", "loa-agent") > 0
    agent_entry = next(
        x for x in (box.tree / "etc/passwd").read_text().splitlines() if x.startswith("loa-agent:")
    )
    assert agent_entry.split(":")[3] == str(box.ids("group", "loa"))  # the crew's group is its own
    for group in ("gpio", "audio", "dialout", "plugdev"):
        assert "loa-agent" in box.members(group), group
    assert "loa-admin" in box.members("loa") and "loa-admin" in box.members("sudo")

    # configuration
    box.owned("/etc/loa", 0o750, "root", "loa")
    config = load_config(box.owned("/etc/loa/agent.yaml", 0o640, "root", "loa"))
    assert config.device.id == DEVICE
    assert config.central is not None and config.central.groups == ("xa-quang-son",)
    assert config.central.password_file == Path("/etc/loa/mqtt-password")
    assert box.owned("/etc/loa/mqtt-password", 0o400, "loa-agent", "root").read_text() == "s3cret-for-07\n"
    box.owned("/etc/loa/central-signing.pub", 0o644, "root", "root")
    assert "items: []" in box.owned("/etc/loa/schedule.yaml", 0o640, "root", "loa").read_text()

    # SSH: keys only, the key in the admin's authorized_keys
    drop_in = box.owned("/etc/ssh/sshd_config.d/loa.conf", 0o644, "root", "root").read_text()
    assert "PasswordAuthentication no" in drop_in.splitlines()
    box.owned("/home/loa-admin/.ssh", 0o700, "loa-admin", "loa-admin")
    keys = box.owned("/home/loa-admin/.ssh/authorized_keys", 0o600, "loa-admin", "loa-admin")
    assert keys.read_text() == KEY + "\n"
    box.owned("/etc/sudoers.d/loa-admin", 0o440, "root", "root")

    # units, wheelhouse, commands
    unit = box.owned("/etc/systemd/system/loa-agent.service", 0o644, "root", "root")
    assert unit.read_bytes() == (ROOT / "systemd" / "loa-agent.service").read_bytes()
    box.owned("/etc/systemd/system/loa-firstboot.service", 0o644, "root", "root")
    wants = box.tree / "etc/systemd/system/multi-user.target.wants"
    assert {p.name: os.readlink(p) for p in wants.iterdir()} == {
        "loa-firstboot.service": "/etc/systemd/system/loa-firstboot.service"
    }
    box.owned("/opt/loa/flash.sh", 0o755, "root", "root")
    for wheel in box.wheels.glob("*.whl"):
        assert (
            box.owned(f"/opt/loa/wheelhouse/{wheel.name}", 0o644, "root", "root").read_bytes()
            == wheel.read_bytes()
        )
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = set(re.findall(r"\bsudo (loa[\w-]*) ", readme))
    assert commands >= {"loa", "loa-agent"}, commands
    for command in commands:
        assert os.readlink(box.tree / "usr/local/bin" / command) == f"/opt/loa/venv/bin/{command}"


@needs_root
@needs_systemd
def test_a_second_run_changes_nothing_and_says_so(box: Box) -> None:
    assert flash(*box.full()).returncode == 0
    before = snapshot(box.tree)
    again = flash(*box.full())
    assert again.returncode == 0, again.stderr
    assert (
        again.stdout.splitlines()[-1]
        == f"==> nothing changed: {box.tree} was already provisioned for {DEVICE}"
    )
    assert snapshot(box.tree) == before


@needs_root
@needs_systemd
def test_the_wheels_of_what_the_box_takes_from_debian_stay_out_of_its_wheelhouse(
    box: Box, tmp_path: Path
) -> None:
    """A wheelhouse built with plain ``pip wheel`` holds cryptography and PyJWT wheels: the box takes
    both from Debian (flash.sh's FROM_DEBIAN), so they are not copied, and a copy an older run left
    in the tree goes."""
    given = tmp_path / "given-wheels"
    shutil.copytree(box.wheels, given)
    debian = ["cryptography-50.0.2-cp311-abi3-manylinux_2_34_x86_64.whl", "PyJWT-2.15.1-py3-none-any.whl"]
    for name in [*debian, "requests-2.34.2-py3-none-any.whl"]:
        (given / name).write_bytes(b"a wheel")
    left = box.tree / "opt/loa/wheelhouse/pyjwt-2.8.0-py3-none-any.whl"
    left.parent.mkdir(parents=True)
    left.write_bytes(b"from an older run")
    result = flash("--device-id", DEVICE, "--root", str(box.tree), "--wheelhouse", str(given))
    assert result.returncode == 0, result.stdout + result.stderr
    copied = {p.name for p in (box.tree / "opt/loa/wheelhouse").iterdir()}
    assert copied == {p.name for p in given.iterdir()} - set(debian)
    assert "requests-2.34.2-py3-none-any.whl" in copied


@needs_root
@needs_systemd
def test_dry_run_prints_every_step_and_touches_nothing(box: Box) -> None:
    before = snapshot(box.tree)
    result = flash(*box.full(), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert snapshot(box.tree) == before
    for step in ("users and groups", "wheelhouse", "configuration", "SSH", "systemd units", "first boot"):
        assert re.search(rf"^==> {step}", result.stdout, re.MULTILINE), step
    for planned in ("would write /etc/loa/agent.yaml (0640 root:loa)", "would enable loa-firstboot.service"):
        assert planned in result.stdout
    assert result.stdout.splitlines()[-1].endswith("change(s) would be made; nothing was touched")
    # and after a real run, a dry run has nothing to do
    assert flash(*box.full()).returncode == 0
    assert flash(*box.full(), "--dry-run").stdout.splitlines()[-1].startswith("==> nothing changed")


@needs_root
@needs_systemd
def test_a_hand_edited_config_is_kept_and_a_later_bundle_is_appended(box: Box) -> None:
    assert flash(*box.args()).returncode == 0
    config = box.tree / "etc/loa/agent.yaml"
    edited = config.read_text().replace("pin: 18,", "pin: 26,")
    assert edited != config.read_text()
    config.write_text(edited)
    kept = flash(*box.args())
    assert "kept /etc/loa/agent.yaml: edited by hand" in kept.stdout
    assert config.read_text() == edited
    added = flash(*box.full())
    assert added.returncode == 0, added.stderr
    text = config.read_text()
    assert text.startswith(edited) and text.endswith(BUNDLE_YAML)
    assert load_config(config).central is not None


def test_first_boot_dry_run_names_its_steps_and_touches_nothing(tmp_path: Path) -> None:
    before = Path("/etc/sysusers.d/loa.conf").exists(), Path("/opt/loa").exists()
    result = flash("--first-boot", "--dry-run")
    assert result.returncode == 0, result.stderr
    for step in ("Debian packages", "users and groups", "Python environment", "loa-agent"):
        assert f"==> {step}" in result.stdout
    assert "+ systemctl disable loa-firstboot.service" in result.stdout
    assert (Path("/etc/sysusers.d/loa.conf").exists(), Path("/opt/loa").exists()) == before


# ---- an SD-card image, loop-mounted for real -------------------------------------------------

SECTOR = 512
BOOT_START, BOOT_SECTORS = 2048, 8 * 2048  # 8 MiB, left unformatted: flash.sh does not touch it
ROOT_START, ROOT_SECTORS = BOOT_START + BOOT_SECTORS, 40 * 2048
MKFS = ["mkfs.ext4", "-q", "-F"]  # the size in KiB follows the device, as mkfs takes it


def make_image(path: Path, tree: Path) -> Path:
    """An MBR image as Raspberry Pi OS ships: boot first, the ext4 root second, made from ``tree``."""
    with path.open("wb") as image:
        image.truncate((ROOT_START + ROOT_SECTORS) * SECTOR)
        mbr = bytearray(SECTOR)
        for slot, (kind, start, count) in enumerate(
            [(0x0C, BOOT_START, BOOT_SECTORS), (0x83, ROOT_START, ROOT_SECTORS)]
        ):
            mbr[446 + 16 * slot : 462 + 16 * slot] = struct.pack("<B3sB3sII", 0, b"", kind, b"", start, count)
        mbr[510:512] = b"\x55\xaa"
        image.write(mbr)
    subprocess.run(
        [*MKFS, "-d", str(tree), "-E", f"offset={ROOT_START * SECTOR}", str(path), str(ROOT_SECTORS // 2)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return path


@contextmanager
def mounted_root(image: Path, into: Path) -> Iterator[Path]:
    loop = subprocess.run(
        ["losetup", "--find", "--show", "--read-only", "--offset", str(ROOT_START * SECTOR), str(image)],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout.strip()
    try:
        into.mkdir(exist_ok=True)
        subprocess.run(
            ["mount", "-o", "ro,noload", loop, str(into)], check=True, capture_output=True, timeout=30
        )
        try:
            yield into
        finally:
            subprocess.run(["umount", str(into)], check=True, timeout=30)
    finally:
        subprocess.run(["losetup", "-d", loop], check=True, timeout=30)


@pytest.fixture
def image(box: Box, tmp_path: Path) -> Path:
    if shutil.which("mkfs.ext4") is None or shutil.which("losetup") is None:
        pytest.skip("mkfs.ext4 or losetup is missing")
    path = make_image(tmp_path / "raspios.img", box.tree)
    try:
        with mounted_root(path, tmp_path / "probe"):
            pass
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"no loop mounts here: {exc.stderr!r}")
    return path


@needs_root
@needs_systemd
def test_image_is_written_through_a_loop_mount_and_a_second_run_changes_nothing(
    box: Box, image: Path, tmp_path: Path
) -> None:
    untouched = image.read_bytes()
    dry = flash("--device-id", DEVICE, "--image", str(image), "--wheelhouse", str(box.wheels), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would write /etc/loa/agent.yaml (0640 root:loa)" in dry.stdout
    assert image.read_bytes() == untouched  # read-only loop device, journal not replayed

    args = [
        "--device-id",
        DEVICE,
        "--image",
        str(image),
        "--wheelhouse",
        str(box.wheels),
        "--ssh-key",
        str(box.key),
    ]
    first = flash(*args)
    assert first.returncode == 0, first.stdout + first.stderr
    with mounted_root(image, tmp_path / "look") as root:
        assert load_config(root / "etc/loa/agent.yaml").device.id == DEVICE
        assert (root / "home/loa-admin/.ssh/authorized_keys").read_text() == KEY + "\n"
        wants = root / "etc/systemd/system/multi-user.target.wants/loa-firstboot.service"
        assert os.readlink(wants) == "/etc/systemd/system/loa-firstboot.service"
        assert "loa-agent:" in (root / "etc/passwd").read_text()
    second = flash(*args)
    assert second.returncode == 0, second.stderr
    assert (
        second.stdout.splitlines()[-1] == f"==> nothing changed: {image} was already provisioned for {DEVICE}"
    )
    assert not list(tmp_path.glob("tmp.*"))  # and nothing is left mounted or behind
    assert str(image) not in subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout


def test_an_image_without_a_partition_table_is_refused(box: Box, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("losetup needs root")
    blank = tmp_path / "blank.img"
    blank.write_bytes(bytes(4096))
    result = flash("--device-id", DEVICE, "--image", str(blank), "--wheelhouse", str(box.wheels))
    assert result.returncode == 2
    said = "has no second partition in an MBR table, as Raspberry Pi OS images have."
    assert result.stderr == f"flash.sh: --image {blank} {said}\n"


def test_on_the_box_a_dry_run_names_every_step_and_touches_nothing(box: Box) -> None:
    watched = [Path(p) for p in ("/etc/loa", "/opt/loa", "/etc/sysusers.d/loa.conf", "/usr/local/bin/loa")]
    before = [p.exists() for p in watched]
    result = flash("--device-id", DEVICE, "--wheelhouse", str(box.wheels), "--dry-run")
    assert result.returncode == 0, result.stderr
    steps = re.findall(r"^==> (\S+(?: \S+)?)", result.stdout, re.MULTILINE)
    assert steps[:7] == [
        "Debian packages",
        "users and",
        "wheelhouse in",
        "Python environment",
        "configuration in",
        "SSH: keys",
        "systemd units,",
    ]
    assert steps[7] == "loa-agent"
    assert "+ systemctl restart loa-agent.service" in result.stdout
    assert [p.exists() for p in watched] == before


def test_the_environment_is_made_from_the_wheelhouse_alone_and_only_when_it_changed(tmp_path: Path) -> None:
    """install_venv, as the first boot runs it, with no index at all: a real venv and real pip.
    The wheelhouse holds one small wheel named loa, whose only dependencies come from Debian
    (python3-cryptography and python3-jwt, which flash.sh installs and `make test` too)."""
    source = tmp_path / "src"
    (source / "loa_probe").mkdir(parents=True)
    (source / "loa_probe" / "__init__.py").write_text("VERSION = 1\n")
    (source / "setup.py").write_text(  # what the box takes from Debian, and only from there
        "from setuptools import setup\nsetup(name='loa', version='9.0', packages=['loa_probe'],"
        " install_requires=['cryptography>=38', 'PyJWT>=2.6'])\n"
    )
    prefix = tmp_path / "opt-loa"
    wheelhouse = prefix / "wheelhouse"

    def build() -> None:
        result = subprocess.run(
            [*PIP_WHEEL, "-w", str(wheelhouse), str(source)], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr

    def install() -> subprocess.CompletedProcess[str]:
        script = 'set -euo pipefail; source "$0"; PREFIX="$1"; install_venv; echo "changes=$CHANGES"'
        return subprocess.run(
            ["bash", "-c", script, str(FLASH), str(prefix)], capture_output=True, text=True, timeout=300
        )

    def version() -> str:
        python = prefix / "venv" / "bin" / "python"
        code = "import cryptography as c, jwt, loa_probe as p; print(c.__file__, jwt.__file__, p.VERSION)"
        return subprocess.run(
            [str(python), "-c", code], capture_output=True, text=True, cwd="/"
        ).stdout.strip()

    build()
    first = install()
    assert first.returncode == 0, first.stderr
    assert "--no-index" in first.stdout and first.stdout.endswith("changes=1\n")
    debian = "/usr/lib/python3/dist-packages"
    assert version() == f"{debian}/cryptography/__init__.py {debian}/jwt/__init__.py 1"
    again = install()
    assert again.stdout == "changes=0\n"  # the same wheelhouse: pip is not even started
    (source / "loa_probe" / "__init__.py").write_text("VERSION = 2\n")
    for wheel in wheelhouse.glob("*.whl"):
        wheel.unlink()
    build()
    assert install().stdout.endswith("changes=1\n")
    assert version().endswith(" 2")
