"""Tests of pycorosync-keygen (corosync.tools.keygen), alone and against corosync-keygen.

The comparison tests run the real corosync-keygen 3.1.7 (Debian package ``corosync``)
and ours with the same arguments in twin directories, and compare exit code, stdout,
stderr (with the program name swapped) and the files left behind (type, mode, owner,
size, and the bytes when the random source is a fixed file). The deliberate differences
listed in the module docstring of ``corosync.tools.keygen`` each have a test that runs
both tools and pins the difference down.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import knet
from corosync.tools import keygen

IS_ROOT = os.geteuid() == 0
# Permission errors need a user without CAP_DAC_OVERRIDE: nobody when we are root.
UNPRIVILEGED_UID = 65534 if IS_ROOT else os.geteuid()
UNPRIVILEGED_GID = 65534 if IS_ROOT else os.getegid()
CLIENTS_SRC = Path(keygen.__file__).resolve().parents[2]
SOURCE_BYTES = bytes((i * 7 + 3) % 256 for i in range(5000))  # a fixed "random" source
BANNER = "Corosync Cluster Engine Authentication key generator.\n"


def _find_real_keygen() -> str | None:
    found = shutil.which("corosync-keygen")
    if found is None and os.access("/usr/sbin/corosync-keygen", os.X_OK):
        found = "/usr/sbin/corosync-keygen"
    return found


REAL_KEYGEN = _find_real_keygen()
requires_real = pytest.mark.skipif(
    REAL_KEYGEN is None,
    reason="the real corosync-keygen is not installed (apt-get install corosync)",
)


class Run(NamedTuple):
    code: int
    out: bytes
    err: bytes


# --- runners -------------------------------------------------------------------------


def run(args: Sequence[str]) -> Run:
    """Our tool in this process, in the current directory."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = keygen.main(args)
    return Run(code, _encode(out.getvalue()), _encode(err.getvalue()))


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "POSIXLY_CORRECT"}
    env["LC_ALL"] = "C"  # glibc's getopt and strerror messages in English
    env["PYTHONPATH"] = str(CLIENTS_SRC)
    return env


def run_real(
    args: Sequence[str | bytes],
    cwd: Path,
    *,
    env: dict[str, str] | None = None,
    umask: int = -1,
    unprivileged: bool = False,
) -> Run:
    """The real corosync-keygen in ``cwd``."""
    assert REAL_KEYGEN is not None
    drop = unprivileged and IS_ROOT
    proc = subprocess.run(
        ["corosync-keygen", *args],  # argv[0] as typed in a shell: glibc's getopt prints it
        executable=REAL_KEYGEN,
        cwd=cwd,
        capture_output=True,
        env=env or _env(),
        umask=umask,
        timeout=30,
        check=False,
        user=UNPRIVILEGED_UID if drop else None,
        group=UNPRIVILEGED_GID if drop else None,
        extra_groups=[] if drop else None,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


def run_ours(
    args: Sequence[str | bytes], cwd: Path, *, env: dict[str, str] | None = None, umask: int = -1
) -> Run:
    """Our tool as a program (``python -m corosync.tools.keygen``) in ``cwd``."""
    proc = subprocess.run(
        [sys.executable, "-m", "corosync.tools.keygen", *args],
        cwd=cwd,
        capture_output=True,
        env=env or _env(),
        umask=umask,
        timeout=60,
        check=False,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


def run_ours_unprivileged(args: Sequence[str], cwd: Path) -> Run:
    """Our tool as an unprivileged user (a forked child that drops root, if we are root)."""
    if not IS_ROOT:
        with contextlib.chdir(cwd):
            return run(args)
    read_fd, write_fd = os.pipe()
    with warnings.catch_warnings():
        # The child only runs our tool and exits; it takes no lock another thread holds.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; its result goes through the pipe
        try:
            os.close(read_fd)
            os.setgroups([])
            os.setresgid(UNPRIVILEGED_GID, UNPRIVILEGED_GID, UNPRIVILEGED_GID)
            os.setresuid(UNPRIVILEGED_UID, UNPRIVILEGED_UID, UNPRIVILEGED_UID)
            os.chdir(cwd)
            result = run(args)
            payload = [result.code, result.out.hex(), result.err.hex()]
        except BaseException as exc:
            payload = [-1, "", repr(exc).encode().hex()]
        with os.fdopen(write_fd, "w") as stream:
            stream.write(json.dumps(payload))
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as stream:
        code, out, err = json.loads(stream.read())
    os.waitpid(pid, 0)
    return Run(code, bytes.fromhex(out), bytes.fromhex(err))


# --- directories and snapshots -----------------------------------------------------------


@pytest.fixture
def make_dir() -> Iterator[Callable[[], Path]]:
    """Fresh directories outside root's private tmp, writable by the unprivileged user."""
    made: list[Path] = []

    def make() -> Path:
        path = Path(tempfile.mkdtemp(prefix="pycorosync-keygen-test-"))
        path.chmod(0o755)
        if IS_ROOT:
            os.chown(path, UNPRIVILEGED_UID, UNPRIVILEGED_GID)
        made.append(path)
        return path

    yield make
    for path in made:
        for root, dirs, _files in os.walk(path):
            for name in dirs:
                with contextlib.suppress(OSError):
                    os.chmod(os.path.join(root, name), 0o755, follow_symlinks=False)
        shutil.rmtree(path)


def snapshot(directory: Path, *, contents: bool) -> dict[str, tuple[object, ...]]:
    """What the tool left in ``directory``: per entry type, mode, owner, size, bytes."""
    entries: dict[str, tuple[object, ...]] = {}
    for root, dirs, files in os.walk(directory):
        for name in sorted(dirs + files):
            path = Path(root, name)
            info = path.lstat()
            kind = stat.S_IFMT(info.st_mode)
            row: tuple[object, ...] = (kind, stat.S_IMODE(info.st_mode), info.st_uid)
            if stat.S_ISLNK(info.st_mode):
                row += (os.readlink(path),)
            elif stat.S_ISREG(info.st_mode):
                row += (info.st_size,)
                if contents:
                    row += (path.read_bytes(),)
            entries[str(path.relative_to(directory))] = row
    return entries


def normalise(real: bytes) -> bytes:
    """The real tool's output with our program name."""
    return real.replace(b"corosync-keygen", b"pycorosync-keygen")


# Setups for twin directories (each gets the same files before its tool runs).
def _source(d: Path) -> None:
    (d / "src").write_bytes(SOURCE_BYTES)
    (d / "short").write_bytes(SOURCE_BYTES[:100])
    (d / "adir").mkdir()
    (d / "old").write_bytes(b"old key" * 40)
    (d / "old").chmod(0o644)
    (d / "old400").write_bytes(b"old key" * 40)
    (d / "old400").chmod(0o400)
    (d / "link").symlink_to("target")
    (d / "dangling").symlink_to("missing/target")
    (d / "loop").symlink_to("loop")


def compare(
    make_dir: Callable[[], Path],
    args: Sequence[str | bytes],
    *,
    contents: bool = False,
    env: dict[str, str] | None = None,
    umask: int = -1,
) -> Run:
    """Run both tools in twin directories and assert the same results; return ours."""
    real_dir, our_dir = make_dir(), make_dir()
    _source(real_dir)
    _source(our_dir)
    real = run_real(args, real_dir, env=env, umask=umask)
    ours = run_ours(args, our_dir, env=env, umask=umask)
    assert (ours.code, ours.out, ours.err) == (real.code, normalise(real.out), normalise(real.err))
    assert snapshot(our_dir, contents=contents) == snapshot(real_dir, contents=contents)
    return ours


# --- comparison with the real corosync-keygen ------------------------------------------

SAME_AS_COROSYNC = [
    # the key file and the size
    ["-k", "authkey"],
    ["-k", "authkey", "-s", "128"],
    ["-s", "4096", "-k", "authkey"],
    ["-k", "authkey", "-s", " 200"],
    ["-k", "authkey", "-s", "\t\n 150"],
    ["-k", "authkey", "-s", "+200"],
    ["-k", "authkey", "-s", "0200"],
    ["-k", "a", "-s", "300", "-s", "200"],
    ["-k", "a", "-k", "b"],
    ["-k", "-s"],
    # bad sizes (checked while parsing, before anything is printed)
    ["-k", "authkey", "-s", "127"],
    ["-k", "authkey", "-s", "4097"],
    ["-k", "authkey", "-s", "0"],
    ["-k", "authkey", "-s", "-5"],
    ["-k", "authkey", "-s", "abc"],
    ["-k", "authkey", "-s", "128x"],
    ["-k", "authkey", "-s", "200 "],
    ["-k", "authkey", "-s", "0x100"],
    ["-k", "authkey", "-s", "1_000"],
    ["-k", "authkey", "-s", ""],
    ["-k", "authkey", "-s", "99999999999999999999999"],
    ["-s", "5", "-x"],
    ["-s", "5", "-h"],
    # -l, -h and their long forms
    ["-l", "-k", "authkey"],
    ["--less-secure", "-k", "authkey"],
    ["-h"],
    ["--help"],
    ["--he"],
    ["-h", "-x"],
    ["-hx"],
    ["-l", "-h"],
    # bad command lines
    ["-x"],
    ["-xh"],
    ["-x", "-h"],
    ["-m", "src"],
    ["-:"],
    ["--bogus"],
    ["--bogus=3"],
    ["-k"],
    ["-s"],
    ["-r"],
    ["--key-file"],
    ["--k"],
    ["--help=3"],
    ["--less-secure=1"],
    ["--=x"],
    # long options, prefixes, clusters, operands, "--"
    ["--key-file=authkey"],
    ["--key-file", "authkey"],
    ["--key", "authkey"],
    ["--k=authkey"],
    ["--key-file="],
    ["--size=300", "--key-file", "authkey"],
    ["--s=200", "-k", "authkey"],
    ["-lkauthkey"],
    ["-lk", "authkey"],
    ["-s300", "-kauthkey"],
    ["operand", "-k", "authkey", "another"],
    ["-", "-k", "authkey"],
    ["-k", "authkey", "--", "-s", "5"],
    ["-k", "authkey", "--", "-x"],
    # random sources
    ["-r", "/dev/random", "-k", "authkey"],
    ["-r", "//dev/random", "-k", "authkey"],
    ["-r", "nosuch", "-k", "authkey"],
    ["-r", "", "-k", "authkey"],
    # key file paths
    ["-k", "adir"],
    ["-k", "adir/"],
    ["-k", "newdir/"],
    ["-k", "old/"],
    ["-k", "old/x"],
    ["-k", "missing/x"],
    ["-k", "/nonexistent-pycorosync-dir/authkey"],
    ["-k", ""],
    ["-k", "loop"],
    ["-k", "dangling"],
]


@requires_real
@pytest.mark.parametrize("args", SAME_AS_COROSYNC, ids=" ".join)
def test_same_as_corosync(make_dir: Callable[[], Path], args: list[str]) -> None:
    """Exit code, stdout, stderr and files match corosync-keygen for the same arguments."""
    compare(make_dir, args)


SAME_BYTES_AS_COROSYNC = [
    ["-r", "src", "-k", "authkey"],
    ["-r", "src", "-s", "4096", "-k", "authkey"],
    ["--random-file=src", "-s", "128", "-k", "authkey"],
    ["--r", "src", "-k", "authkey"],
    ["-r", "/dev/zero", "-k", "authkey"],
    ["-r", "src", "-k", "old"],
    ["-r", "src", "-k", "old400"],
    ["-r", "src", "-k", "link"],
    ["-r", "src", "-k", "adir/authkey"],
]


@requires_real
@pytest.mark.parametrize("args", SAME_BYTES_AS_COROSYNC, ids=" ".join)
def test_same_key_bytes_as_corosync(make_dir: Callable[[], Path], args: list[str]) -> None:
    """From a fixed random source both tools write the very same key bytes and files."""
    compare(make_dir, args, contents=True)


@requires_real
def test_same_as_corosync_for_non_utf8_path(make_dir: Callable[[], Path]) -> None:
    """A key file name that is not UTF-8 is used and printed byte for byte."""
    ours = compare(make_dir, [b"-k", b"key\xff", b"-r", b"src"], contents=True)
    assert b"Writing corosync key to key\xff.\n" in ours.out


@requires_real
def test_same_as_corosync_under_full_umask(make_dir: Callable[[], Path]) -> None:
    """With umask 0777 the key still ends up 0400, as corosync's."""
    compare(make_dir, ["-k", "authkey", "-r", "src"], umask=0o777, contents=True)


@requires_real
def test_same_as_corosync_with_posixly_correct(make_dir: Callable[[], Path]) -> None:
    """POSIXLY_CORRECT stops option parsing at the first operand, as in glibc."""
    env = _env() | {"POSIXLY_CORRECT": "1"}
    compare(make_dir, ["-k", "authkey", "operand", "-x"], env=env)
    compare(make_dir, ["operand", "-k", "authkey"], env=env)


def _feed_in_two_chunks(fifo: Path, data: bytes, split: int) -> threading.Thread:
    """Write ``data`` into ``fifo`` in two parts, pausing between them (a slow source)."""

    def feed() -> None:
        with fifo.open("wb", buffering=0) as stream:
            stream.write(data[:split])
            time.sleep(0.5)
            stream.write(data[split:])

    thread = threading.Thread(target=feed)
    thread.start()
    return thread


@requires_real
def test_same_as_corosync_for_a_slow_random_source(make_dir: Callable[[], Path]) -> None:
    """A source that delivers the key in two reads prints corosync's progress line."""
    results = []
    for runner in (run_real, run_ours):
        directory = make_dir()
        os.mkfifo(directory / "slow")
        feeder = _feed_in_two_chunks(directory / "slow", SOURCE_BYTES[:128], 100)
        results.append(runner(["-r", "slow", "-s", "128", "-k", "authkey"], directory))
        feeder.join()
        assert (directory / "authkey").read_bytes() == SOURCE_BYTES[:128]
    real, ours = results
    assert ours == Run(real.code, normalise(real.out), real.err)
    assert ours.out == (
        BANNER.encode() + b"Gathering 1024 bits for key from slow.\n"
        b"Press keys on your keyboard to generate entropy (224 bits still needed).\n"
        b"Writing corosync key to authkey.\n"
    )


def _unprivileged_setup(d: Path) -> None:
    (d / "ro").mkdir()
    (d / "ro" / "mine").write_bytes(b"old key" * 40)
    (d / "ro" / "mine").chmod(0o600)
    (d / "readonly").write_bytes(b"old key" * 40)
    (d / "readonly").chmod(0o400)
    if IS_ROOT:
        for path in (d / "ro" / "mine", d / "readonly"):
            os.chown(path, UNPRIVILEGED_UID, UNPRIVILEGED_GID)
    (d / "ro").chmod(0o555)


@requires_real
@pytest.mark.parametrize(
    "args",
    [
        ["-k", "authkey"],  # a new key belongs to the user who made it
        ["-k", "ro/new"],  # directory not writable
        ["-k", "readonly"],  # own key file, mode 0400: corosync cannot reopen it
        ["-k", "ro/mine"],  # writable file in an unwritable directory: written in place
    ],
    ids=" ".join,
)
def test_same_as_corosync_without_privileges(make_dir: Callable[[], Path], args: list[str]) -> None:
    """Run by an unprivileged user, both tools fail or succeed alike on permissions."""
    real_dir, our_dir = make_dir(), make_dir()
    _unprivileged_setup(real_dir)
    _unprivileged_setup(our_dir)
    real = run_real(args, real_dir, unprivileged=True)
    ours = run_ours_unprivileged(args, our_dir)
    assert ours == Run(real.code, normalise(real.out), normalise(real.err))
    assert snapshot(our_dir, contents=False) == snapshot(real_dir, contents=False)


@requires_real
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.sampled_from(
            [
                "-k", "-r", "-s", "-l", "-h", "-x", "-m", "-lk", "-lh", "-hx", "-xh",
                "-s300", "-kkey3", "--", "-", "--key-file", "--key-file=key2", "--k",
                "--size", "--size=200", "--s=4097", "--random-file", "--r=src",
                "--less-secure", "--less-secure=1", "--help", "--he", "--help=1",
                "--bogus", "--=x", "key4", "src", "nosuch", "200", "127",
                "4096", "abc", " 150", "+128", "",
            ]
        ),
        max_size=6,
    )
)  # fmt: skip
def test_command_line_parsing_matches_corosync(args: list[str]) -> None:
    """Any mix of good and bad options parses exactly as corosync-keygen's getopt_long."""
    args = ["-k", "key", *args]  # never the default /etc/corosync/authkey
    with (
        tempfile.TemporaryDirectory() as real_dir,
        tempfile.TemporaryDirectory() as our_dir,
    ):
        for directory in (real_dir, our_dir):
            Path(directory, "src").write_bytes(SOURCE_BYTES)
            Path(directory, "adir").mkdir()
        real = run_real(args, Path(real_dir))
        with contextlib.chdir(our_dir):
            ours = run(args)
        assert ours == Run(real.code, normalise(real.out), normalise(real.err))
        assert snapshot(Path(our_dir), contents=False) == snapshot(Path(real_dir), contents=False)


@requires_real
def test_same_as_corosync_when_the_mode_cannot_be_set(make_dir: Callable[[], Path]) -> None:
    """A key file whose mode cannot be changed (a procfs file): exit 3 with corosync's message."""
    real_dir, our_dir = make_dir(), make_dir()
    # /proc/self/comm is each tool's own process name: harmless to try, and chmod fails there.
    real = run_real(["-k", "/proc/self/comm"], real_dir)
    ours = run_ours(["-k", "/proc/self/comm"], our_dir)
    assert ours == Run(real.code, normalise(real.out), normalise(real.err))
    assert ours.code == 3
    assert ours.err == (
        b"pycorosync-keygen: Failed to set key file permissions to 0400: Operation not permitted\n"
    )


# --- deliberate differences, pinned against the real tool --------------------------------


@requires_real
def test_read_error_names_the_random_source(make_dir: Callable[[], Path]) -> None:
    """A read error names the source; 3.1.7 always says /dev/random."""
    real_dir, our_dir = make_dir(), make_dir()
    for directory in (real_dir, our_dir):
        (directory / "adir").mkdir()
    real = run_real(["-r", "adir", "-k", "authkey"], real_dir)
    ours = run_ours(["-r", "adir", "-k", "authkey"], our_dir)
    assert real.err == b"corosync-keygen: Could not read /dev/random: Is a directory\n"
    assert ours.err == b"pycorosync-keygen: Could not read adir: Is a directory\n"
    assert (ours.code, ours.out) == (real.code, real.out) == (1, ours.out)


@requires_real
def test_short_random_source_fails_instead_of_spinning(make_dir: Callable[[], Path]) -> None:
    """A source that ends early fails with exit 1; 3.1.7 loops forever."""
    real_dir, our_dir = make_dir(), make_dir()
    for directory in (real_dir, our_dir):
        (directory / "short").write_bytes(SOURCE_BYTES[:100])
    assert REAL_KEYGEN is not None
    with pytest.raises(subprocess.TimeoutExpired):
        subprocess.run(
            [REAL_KEYGEN, "-r", "short", "-s", "128", "-k", "authkey"],
            cwd=real_dir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=1,
            check=False,
        )
    ours = run_ours(["-r", "short", "-s", "128", "-k", "authkey"], our_dir)
    assert ours == Run(
        1,
        BANNER.encode() + b"Gathering 1024 bits for key from short.\n"
        b"Press keys on your keyboard to generate entropy (224 bits still needed).\n",
        b"pycorosync-keygen: Unexpected end of short\n",
    )
    assert sorted(os.listdir(our_dir)) == ["short"]


@requires_real
def test_hard_links_keep_the_old_key(make_dir: Callable[[], Path]) -> None:
    """The key is a new file: a hard link to the old one keeps the old key (corosync's doesn't)."""
    old = b"old key" * 40
    real_dir, our_dir = make_dir(), make_dir()
    for directory in (real_dir, our_dir):
        (directory / "src").write_bytes(SOURCE_BYTES)
        (directory / "authkey").write_bytes(old)
        os.link(directory / "authkey", directory / "twin")
    real = run_real(["-r", "src", "-k", "authkey"], real_dir)
    ours = run_ours(["-r", "src", "-k", "authkey"], our_dir)
    assert (ours.code, ours.out) == (real.code, real.out) == (0, real.out)
    assert (real_dir / "twin").read_bytes() == SOURCE_BYTES[:256]
    assert (our_dir / "twin").read_bytes() == old
    assert (our_dir / "authkey").read_bytes() == SOURCE_BYTES[:256]


@requires_real
def test_overwritten_key_belongs_to_the_running_user(make_dir: Callable[[], Path]) -> None:
    """Ours replaces a key owned by someone else with one of its own; corosync keeps the owner."""
    real_dir, our_dir = make_dir(), make_dir()
    for directory in (real_dir, our_dir):
        (directory / "authkey").write_bytes(b"old key" * 40)
        if IS_ROOT:  # only root can make a file owned by another user
            os.chown(directory / "authkey", UNPRIVILEGED_UID, UNPRIVILEGED_GID)
    assert run_real(["-k", "authkey"], real_dir).code == 0
    assert run_ours(["-k", "authkey"], our_dir).code == 0
    assert (real_dir / "authkey").stat().st_uid == UNPRIVILEGED_UID
    assert (our_dir / "authkey").stat().st_uid == os.geteuid()
    assert stat.S_IMODE((our_dir / "authkey").stat().st_mode) == 0o400


def _drain_fifo(fifo: Path, into: list[bytes]) -> threading.Thread:
    def drain() -> None:
        with fifo.open("rb") as stream:
            into.append(stream.read())

    thread = threading.Thread(target=drain)
    thread.start()
    return thread


@requires_real
def test_non_regular_key_file_keeps_its_mode(make_dir: Callable[[], Path]) -> None:
    """A FIFO as key file gets the key in place and keeps its mode (corosync sets 0400)."""
    modes = []
    for runner in (run_real, run_ours):
        directory = make_dir()
        (directory / "src").write_bytes(SOURCE_BYTES)
        os.mkfifo(directory / "pipe", 0o644)
        (directory / "pipe").chmod(0o644)
        received: list[bytes] = []
        reader = _drain_fifo(directory / "pipe", received)
        result = runner(["-r", "src", "-s", "128", "-k", "pipe"], directory)
        reader.join()
        assert result.code == 0
        assert received == [SOURCE_BYTES[:128]]
        info = (directory / "pipe").lstat()
        assert stat.S_ISFIFO(info.st_mode)
        modes.append(stat.S_IMODE(info.st_mode))
    assert modes == [0o400, 0o644]


# --- our tool on its own ------------------------------------------------------------------


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty current directory holding a fixed random source ``src``."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("POSIXLY_CORRECT", raising=False)
    (tmp_path / "src").write_bytes(SOURCE_BYTES)
    return tmp_path


def _lines(*lines: str) -> bytes:
    return "".join(line + "\n" for line in lines).encode()


def _written(keyfile: str, bits: int = 2048, source: str = "/dev/urandom") -> bytes:
    return _lines(
        BANNER.rstrip("\n"),
        f"Gathering {bits} bits for key from {source}.",
        f"Writing corosync key to {keyfile}.",
    )


def _leftovers(directory: Path) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name.endswith(".tmp"))


def test_writes_a_256_byte_key_with_mode_0400(workdir: Path) -> None:
    """By default the key has 256 bytes, mode 0400, and the three corosync lines are printed."""
    result = run(["-k", "authkey"])
    assert result == Run(0, _written("authkey"), b"")
    info = (workdir / "authkey").stat()
    assert (info.st_size, stat.S_IMODE(info.st_mode), info.st_uid) == (256, 0o400, os.geteuid())
    assert _leftovers(workdir) == []


def test_default_key_file_is_etc_corosync_authkey() -> None:
    """The default key file, random source and size are corosync's."""
    assert keygen.DEFAULT_KEYFILE == "/etc/corosync/authkey"
    assert keygen.DEFAULT_RANDOM_FILE == "/dev/urandom"
    assert keygen.DEFAULT_KEY_SIZE == 256
    assert "instead of the default /etc/corosync/authkey." in keygen.USAGE


@pytest.mark.parametrize("size", [128, 129, 256, 1000, 4096])
def test_key_is_readable_by_knet(workdir: Path, size: int) -> None:
    """knet.read_authkey accepts every key size the tool allows and reads the same bytes."""
    assert run(["-k", "authkey", "-s", str(size)]).code == 0
    key = knet.read_authkey(workdir / "authkey")
    assert len(key) == size
    assert key == (workdir / "authkey").read_bytes()


def test_keys_from_urandom_differ(workdir: Path) -> None:
    """Two runs give two different keys from /dev/urandom."""
    assert run(["-k", "one"]).code == run(["-k", "two"]).code == 0
    assert (workdir / "one").read_bytes() != (workdir / "two").read_bytes()


def test_key_comes_from_the_random_file(workdir: Path) -> None:
    """-r reads the key from the named file: the first size bytes of it."""
    result = run(["-r", "src", "-s", "300", "-k", "authkey"])
    assert result == Run(0, _written("authkey", 2400, "src"), b"")
    assert knet.read_authkey(workdir / "authkey") == SOURCE_BYTES[:300]


def test_dev_random_prints_the_keyboard_hint(workdir: Path) -> None:
    """-r /dev/random prints corosync's keyboard hint (the name is compared, not the device)."""
    result = run(["-r", "/dev/random", "-k", "authkey"])
    assert result.out == _lines(
        BANNER.rstrip("\n"),
        "Gathering 2048 bits for key from /dev/random.",
        "Press keys on your keyboard to generate entropy.",
        "Writing corosync key to authkey.",
    )
    assert run(["-r", "//dev/random", "-k", "other"]).out == _written(
        "other", source="//dev/random"
    )


def test_slow_random_source_reports_missing_bits(workdir: Path) -> None:
    """Each short read prints how many bits are still needed."""
    os.mkfifo(workdir / "slow")
    feeder = _feed_in_two_chunks(workdir / "slow", SOURCE_BYTES[:200], 72)
    result = run(["-r", "slow", "-s", "200", "-k", "authkey"])
    feeder.join()
    assert result.code == 0
    assert b"(1024 bits still needed).\n" in result.out
    assert (workdir / "authkey").read_bytes() == SOURCE_BYTES[:200]


@pytest.mark.parametrize(
    ("size", "bits"), [(" 200", 1600), ("\t150", 1200), ("+128", 1024), ("0200", 1600)]
)
def test_size_accepts_what_strtoll_accepts(workdir: Path, size: str, bits: int) -> None:
    """-s takes strtoll's base-10 forms: leading blanks, a sign, leading zeros."""
    result = run(["-k", "authkey", "-s", size])
    assert result == Run(0, _written("authkey", bits), b"")
    assert (workdir / "authkey").stat().st_size == bits // 8


@pytest.mark.parametrize(
    "size", ["127", "4097", "0", "-128", "abc", "128x", "200 ", "0x100", "1_000", "", "٢٠٠"]
)
def test_bad_size_is_refused(workdir: Path, size: str) -> None:
    """A size outside 128..4096 or not a whole number: exit 1, corosync's message, no file."""
    result = run(["-k", "authkey", "-s", size])
    assert result == Run(
        1, b"", b"pycorosync-keygen: Unsupported key size (supported <128,4096>)\n\n"
    )
    assert sorted(os.listdir(workdir)) == ["src"]


@pytest.mark.parametrize("flag", ["-l", "--less-secure", "--less"])
def test_less_secure_is_accepted_and_ignored(workdir: Path, flag: str) -> None:
    """-l changes nothing, as in corosync."""
    result = run([flag, "-r", "src", "-k", "authkey"])
    assert result == Run(0, _written("authkey", source="src"), b"")
    assert (workdir / "authkey").read_bytes() == SOURCE_BYTES[:256]


@pytest.mark.parametrize("args", [["-h"], ["--help"], ["--h"], ["-l", "-h", "-x"], ["-hx"]])
def test_help_prints_usage_and_exits_0(workdir: Path, args: list[str]) -> None:
    """-h prints the usage text plus a blank line, exits 0 and writes nothing."""
    result = run(args)
    assert result == Run(0, (keygen.USAGE + "\n").encode(), b"")
    assert result.out.startswith(
        b"Usage: pycorosync-keygen [-k <keyfile>] [-s size] [-m <randomfile>] [-l] [-h]\n"
    )
    assert sorted(os.listdir(workdir)) == ["src"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-x"], "invalid option -- 'x'"),
        (["-xh"], "invalid option -- 'x'"),
        (["-m", "src"], "invalid option -- 'm'"),
        (["-k"], "option requires an argument -- 'k'"),
        (["-l", "-s"], "option requires an argument -- 's'"),
        (["-r"], "option requires an argument -- 'r'"),
        (["--bogus"], "unrecognized option '--bogus'"),
        (["--bogus=3"], "unrecognized option '--bogus=3'"),
        (["--key-file"], "option '--key-file' requires an argument"),
        (["--k"], "option '--key-file' requires an argument"),
        (["--help=3"], "option '--help' doesn't allow an argument"),
        (["--l=1"], "option '--less-secure' doesn't allow an argument"),
        (
            ["--=x"],
            (
                "option '--=x' is ambiguous; possibilities: '--key-file' '--less-secure'"
                " '--random-file' '--size' '--help'"
            ),
        ),
    ],
)
def test_bad_command_line(workdir: Path, args: list[str], message: str) -> None:
    """Unknown flags and missing arguments: glibc's message, corosync's line, exit 1."""
    result = run(args)
    assert result == Run(
        1, b"Error parsing command line options.\n", f"pycorosync-keygen: {message}\n".encode()
    )
    assert sorted(os.listdir(workdir)) == ["src"]


def test_options_act_in_order(workdir: Path) -> None:
    """The first bad option stops parsing: a bad size before -h or -x wins."""
    assert run(["-s", "5", "-h"]).code == 1
    assert run(["-s", "5", "-x"]).out == b""
    assert run(["-x", "-s", "5"]).out == b"Error parsing command line options.\n"


@pytest.mark.parametrize(
    ("args", "keyfile", "size"),
    [
        (["--key-file=a"], "a", 256),
        (["--key-file", "a"], "a", 256),
        (["--key", "a"], "a", 256),
        (["--k=a"], "a", 256),
        (["--size=300", "-k", "a"], "a", 300),
        (["--s", "200", "-k", "a"], "a", 200),
        (["-lka"], "a", 256),
        (["-s300", "-ka"], "a", 300),
        (["-k", "a", "-k", "b"], "b", 256),
        (["-k", "a", "-s", "300", "-s", "200"], "a", 200),
        (["-k", "-s"], "-s", 256),
        (["operand", "-k", "a", "-", "more"], "a", 256),
        (["-k", "a", "--", "-x", "-s", "5"], "a", 256),
    ],
)
def test_option_forms(workdir: Path, args: list[str], keyfile: str, size: int) -> None:
    """Long names, prefixes, clusters, repeats, operands and "--" work as in getopt_long."""
    result = run(args)
    assert result == Run(0, _written(keyfile, size * 8), b"")
    assert (workdir / keyfile).stat().st_size == size


def test_posixly_correct_stops_at_the_first_operand(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under POSIXLY_CORRECT the options after an operand are ignored, as glibc does."""
    monkeypatch.setenv("POSIXLY_CORRECT", "1")
    assert run(["-k", "a", "operand", "-x"]) == Run(0, _written("a"), b"")


def test_main_reads_sys_argv(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without arguments main() parses sys.argv[1:]."""
    monkeypatch.setattr(sys, "argv", ["pycorosync-keygen", "-k", "fromargv", "-s", "128"])
    assert run(None) == Run(0, _written("fromargv", 1024), b"")  # type: ignore[arg-type]


def test_runs_as_a_program(workdir: Path) -> None:
    """``python -m corosync.tools.keygen`` is the same tool, with its exit code."""
    assert run_ours(["-k", "authkey", "-s", "128"], workdir) == Run(
        0, _written("authkey", 1024), b""
    )
    assert run_ours(["-s", "1"], workdir).code == 1


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("nosuch", "Failed to open random source: No such file or directory"),
        ("", "Failed to open random source: No such file or directory"),
        (".", "Could not read .: Is a directory"),
    ],
)
def test_bad_random_source(workdir: Path, source: str, message: str) -> None:
    """A random source that cannot be opened or read: exit 1 and no key file."""
    result = run(["-r", source, "-k", "authkey"])
    assert result == Run(
        1,
        _lines(BANNER.rstrip("\n"), f"Gathering 2048 bits for key from {source}."),
        f"pycorosync-keygen: {message}\n".encode(),
    )
    assert not (workdir / "authkey").exists()


def test_random_source_that_ends_early(workdir: Path) -> None:
    """A source shorter than the key: one progress line, then exit 1 without a key."""
    (workdir / "short").write_bytes(SOURCE_BYTES[:200])
    result = run(["-r", "short", "-k", "authkey"])
    assert result.code == 1
    assert result.out.endswith(b"(448 bits still needed).\n")
    assert result.err == b"pycorosync-keygen: Unexpected end of short\n"
    assert not (workdir / "authkey").exists()


def test_random_read_error(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An I/O error while reading the source: exit 1 naming the source."""

    def failing_read(fd: int, n: int) -> bytes:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "read", failing_read)
    result = run(["-r", "src", "-k", "authkey"])
    assert (result.code, result.err) == (
        1,
        b"pycorosync-keygen: Could not read src: Input/output error\n",
    )


def _fails_to_create(keyfile: str, reason: str) -> Run:
    return Run(
        2,
        _lines(BANNER.rstrip("\n"), "Gathering 2048 bits for key from /dev/urandom."),
        f"pycorosync-keygen: Could not create {keyfile}: {reason}\n".encode(),
    )


@pytest.mark.parametrize(
    ("keyfile", "reason"),
    [
        ("adir", "Is a directory"),
        ("adir/", "Is a directory"),
        ("newdir/", "Is a directory"),
        ("afile/", "Is a directory"),
        ("afile/x", "Not a directory"),
        ("missing/x", "No such file or directory"),
        ("missing/x/", "No such file or directory"),
        ("", "No such file or directory"),
        ("loop", "Too many levels of symbolic links"),
        ("dangling-into-missing", "No such file or directory"),
    ],
)
def test_key_file_that_cannot_be_created(workdir: Path, keyfile: str, reason: str) -> None:
    """A key file path that cannot be a file: exit 2 with the system's reason."""
    (workdir / "adir").mkdir()
    (workdir / "afile").write_bytes(b"x")
    (workdir / "loop").symlink_to("loop")
    (workdir / "dangling-into-missing").symlink_to("missing/key")
    before = snapshot(workdir, contents=True)
    assert run(["-k", keyfile]) == _fails_to_create(keyfile, reason)
    assert snapshot(workdir, contents=True) == before


def test_existing_key_is_overwritten(workdir: Path) -> None:
    """An existing key file (even mode 0400) is replaced without asking, as corosync does."""
    (workdir / "authkey").write_bytes(b"old key" * 40)
    (workdir / "authkey").chmod(0o400)
    assert run(["-r", "src", "-k", "authkey"]) == Run(0, _written("authkey", source="src"), b"")
    assert (workdir / "authkey").read_bytes() == SOURCE_BYTES[:256]
    assert stat.S_IMODE((workdir / "authkey").stat().st_mode) == 0o400
    assert _leftovers(workdir) == []


def test_longest_file_name_works(workdir: Path) -> None:
    """Key file names up to NAME_MAX (255 bytes, ASCII or not) are written like any other."""
    for name in ("k" * 255, "é" * 127):
        assert run(["-k", name, "-s", "128"]) == Run(0, _written(name, 1024), b"")
        assert (workdir / name).stat().st_size == 128
    assert _leftovers(workdir) == []


def test_symlink_is_followed(workdir: Path) -> None:
    """A symlinked key file: the file it points to gets the key, the link stays."""
    (workdir / "real").mkdir()
    (workdir / "authkey").symlink_to("real/authkey")
    assert run(["-r", "src", "-k", "authkey"]).code == 0
    assert (workdir / "authkey").is_symlink()
    assert (workdir / "real" / "authkey").read_bytes() == SOURCE_BYTES[:256]
    assert stat.S_IMODE((workdir / "real" / "authkey").stat().st_mode) == 0o400
    assert run(["-r", "src", "-s", "128", "-k", "authkey"]).code == 0
    assert (workdir / "authkey").is_symlink()
    assert (workdir / "real" / "authkey").read_bytes() == SOURCE_BYTES[:128]
    assert _leftovers(workdir / "real") == []


def test_mode_is_0400_whatever_the_umask(workdir: Path) -> None:
    """The umask does not change the key's mode."""
    for mask in (0o777, 0o000, 0o022):
        old = os.umask(mask)
        try:
            assert run(["-k", f"key{mask:o}"]).code == 0
        finally:
            os.umask(old)
        assert stat.S_IMODE((workdir / f"key{mask:o}").stat().st_mode) == 0o400


def test_key_is_written_atomically(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While the key is written the old key is intact and the new one is already 0400."""
    (workdir / "authkey").write_bytes(b"old key" * 40)
    seen = []
    real_write = os.write

    def watching_write(fd: int, data: bytes) -> int:
        (temporary,) = _leftovers(workdir)
        mode = stat.S_IMODE((workdir / temporary).stat().st_mode)
        seen.append(((workdir / "authkey").read_bytes(), mode))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", watching_write)
    assert run(["-r", "src", "-k", "authkey"]).code == 0
    assert seen == [(b"old key" * 40, 0o400)]
    assert (workdir / "authkey").read_bytes() == SOURCE_BYTES[:256]


def test_short_writes_are_completed(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that takes a few bytes at a time still writes the whole key."""
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, bytes(data[:7])))
    assert run(["-r", "src", "-k", "authkey"]).code == 0
    assert (workdir / "authkey").read_bytes() == SOURCE_BYTES[:256]


def _failing(error: int) -> Callable[..., object]:
    def fail(*_args: object) -> object:
        raise OSError(error, os.strerror(error))

    return fail


@pytest.mark.parametrize(
    ("function", "error", "code", "message", "writing"),
    [
        ("fchmod", errno.EPERM, 3,
         "Failed to set key file permissions to 0400: Operation not permitted", False),
        ("write", errno.ENOSPC, 4, "Could not write authkey: No space left on device", True),
        ("fsync", errno.EIO, 4, "Could not write authkey: Input/output error", True),
        ("replace", errno.EBUSY, 2, "Could not create authkey: Device or resource busy", True),
    ],
)  # fmt: skip
def test_failure_keeps_the_old_key(
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    function: str,
    error: int,
    code: int,
    message: str,
    writing: bool,
) -> None:
    """A failure while writing: corosync's exit code and message, old key intact, no debris."""
    (workdir / "authkey").write_bytes(b"old key" * 40)
    monkeypatch.setattr(os, function, _failing(error))
    result = run(["-k", "authkey"])
    lines = [BANNER.rstrip("\n"), "Gathering 2048 bits for key from /dev/urandom."]
    if writing:
        lines.append("Writing corosync key to authkey.")
    assert result == Run(code, _lines(*lines), f"pycorosync-keygen: {message}\n".encode())
    assert (workdir / "authkey").read_bytes() == b"old key" * 40
    assert _leftovers(workdir) == []


def test_write_making_no_progress_fails(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that stores nothing is reported as a full device, not retried forever."""
    monkeypatch.setattr(os, "write", lambda fd, data: 0)
    result = run(["-k", "authkey"])
    assert (result.code, result.err) == (
        4,
        b"pycorosync-keygen: Could not write authkey: No space left on device\n",
    )
    assert not (workdir / "authkey").exists()
    assert _leftovers(workdir) == []


def test_close_failure(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failing close of the key file: exit 5, and the old key stays."""
    (workdir / "authkey").write_bytes(b"old key" * 40)
    real_close, real_fsync = os.close, os.fsync
    written: list[int] = []

    def remember_fsync(fd: int) -> None:
        written.append(fd)
        real_fsync(fd)

    def failing_close(fd: int) -> None:
        real_close(fd)
        if fd in written:
            raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", remember_fsync)
    monkeypatch.setattr(os, "close", failing_close)
    result = run(["-k", "authkey"])
    assert (result.code, result.err) == (
        5,
        b"pycorosync-keygen: Could not close authkey: Input/output error\n",
    )
    assert (workdir / "authkey").read_bytes() == b"old key" * 40
    assert _leftovers(workdir) == []


@pytest.mark.parametrize("function", ["read", "write"])
def test_interrupt_leaves_no_debris(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, function: str
) -> None:
    """Ctrl-C while reading or writing: exit 130, old key intact, no temporary file."""
    (workdir / "authkey").write_bytes(b"old key" * 40)

    def interrupted(*_args: object) -> object:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, function, interrupted)
    assert run(["-k", "authkey"]).code == 130
    assert (workdir / "authkey").read_bytes() == b"old key" * 40
    assert _leftovers(workdir) == []


def test_fifo_key_file_is_written_in_place(workdir: Path) -> None:
    """A FIFO key file receives the key and stays a FIFO with its mode."""
    os.mkfifo(workdir / "pipe", 0o600)
    (workdir / "pipe").chmod(0o640)
    received: list[bytes] = []
    reader = _drain_fifo(workdir / "pipe", received)
    result = run(["-r", "src", "-k", "pipe"])
    reader.join()
    assert result == Run(0, _written("pipe", source="src"), b"")
    assert received == [SOURCE_BYTES[:256]]
    info = (workdir / "pipe").lstat()
    assert stat.S_ISFIFO(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o640


def test_unprivileged_user_cannot_reopen_own_readonly_key(make_dir: Callable[[], Path]) -> None:
    """Without privileges an existing 0400 key is refused (exit 2) and left alone."""
    directory = make_dir()
    _unprivileged_setup(directory)
    result = run_ours_unprivileged(["-k", "readonly"], directory)
    assert result == _fails_to_create("readonly", "Permission denied")
    assert (directory / "readonly").read_bytes() == b"old key" * 40


def test_unprivileged_user_cannot_write_into_readonly_directory(
    make_dir: Callable[[], Path],
) -> None:
    """Without privileges a key in an unwritable directory fails with exit 2."""
    directory = make_dir()
    _unprivileged_setup(directory)
    result = run_ours_unprivileged(["-k", "ro/new"], directory)
    assert result == _fails_to_create("ro/new", "Permission denied")
    assert sorted(os.listdir(directory / "ro")) == ["mine"]


def test_writable_key_in_readonly_directory_is_written_in_place(
    make_dir: Callable[[], Path],
) -> None:
    """Where no file can be made, a writable existing key is rewritten in place, 0400."""
    directory = make_dir()
    _unprivileged_setup(directory)
    inode = (directory / "ro" / "mine").stat().st_ino
    result = run_ours_unprivileged(["-s", "200", "-k", "ro/mine"], directory)
    assert result == Run(0, _written("ro/mine", 1600), b"")
    info = (directory / "ro" / "mine").stat()
    assert (info.st_ino, info.st_size, stat.S_IMODE(info.st_mode)) == (inode, 200, 0o400)
    assert info.st_uid == UNPRIVILEGED_UID
    assert knet.read_authkey(directory / "ro" / "mine") == (directory / "ro" / "mine").read_bytes()


def test_unprivileged_key_belongs_to_its_maker(make_dir: Callable[[], Path]) -> None:
    """A key made by an unprivileged user is theirs, mode 0400."""
    directory = make_dir()
    assert run_ours_unprivileged(["-k", "authkey"], directory).code == 0
    info = (directory / "authkey").stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (UNPRIVILEGED_UID, 0o400)


def test_exit_codes_are_corosyncs() -> None:
    """The exit codes are those of corosync-keygen."""
    assert [int(code) for code in keygen.ExitCode] == [0, 1, 2, 3, 4, 5]
