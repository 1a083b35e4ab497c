"""One real corosync 3 (the Debian package) in a network namespace of its own, for
tests that compare our clients and tools with corosync's.

:func:`running_corosync` starts ``corosync -f`` with the given config in a fresh
namespace (with a private ``/run``: corosync refuses to start while another one holds
``/run/corosync.pid``) and yields a :class:`Namespace` whose methods run the real
``corosync-cmapctl``, our ``pycorosync-cmapctl`` or a Python script inside it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

__all__ = ["CLIENTS_SRC", "Namespace", "Result", "real_corosync_skip_reason", "running_corosync"]

CLIENTS_SRC = Path(__file__).resolve().parents[1] / "packages" / "clients" / "src"
_START_TIMEOUT = 30.0  # seconds; a guard against hangs


@attrs.frozen
class Result:
    rc: int
    out: str
    err: str


@attrs.frozen
class Namespace:
    name: str
    tmp: Path

    def _env(self) -> dict[str, str]:
        env = dict(os.environ, PYTHONPATH=str(CLIENTS_SRC))
        env.pop("PYCOROSYNC_IPC_PREFIX", None)
        return env

    def run(self, argv: list[str], stdin: bytes | None = None) -> Result:
        done = subprocess.run(
            ["ip", "netns", "exec", self.name, *argv],
            input=stdin if stdin is not None else b"",
            capture_output=True,
            timeout=60,
            env=self._env(),
            check=False,
        )
        return Result(done.returncode, done.stdout.decode(), done.stderr.decode())

    @staticmethod
    def _ours_argv() -> list[str]:
        return [sys.executable, "-m", "corosync.tools.cmapctl"]

    def real(self, *args: str, stdin: bytes | None = None) -> Result:
        return self.run(["corosync-cmapctl", *args], stdin)

    def ours(self, *args: str, stdin: bytes | None = None) -> Result:
        result = self.run([*self._ours_argv(), *args], stdin)
        # Our program name in getopt errors and usage, for comparison with the real one.
        return attrs.evolve(
            result, err=result.err.replace("pycorosync-cmapctl", "corosync-cmapctl")
        )

    def python(self, script: str) -> Result:
        return self.run([sys.executable, "-c", textwrap.dedent(script)])

    def popen_ours(self, *args: str) -> subprocess.Popen[bytes]:
        """Our cmapctl with pipes (for -t/-T tracking)."""
        return subprocess.Popen(
            ["ip", "netns", "exec", self.name, *self._ours_argv(), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self._env(),
        )


def real_corosync_skip_reason() -> str | None:
    """Why a real corosync cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root to create a network namespace"
    for tool in ("ip", "corosync", "corosync-cmapctl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt package iproute2/corosync)"
    return None


@contextlib.contextmanager
def running_corosync(tmp: Path, config_text: str, tag: str) -> Iterator[Namespace]:
    """corosync -f with ``config_text`` in a new namespace ``<tag>-<pid>-<random>``
    until the block ends; skips the test when it cannot run here."""
    reason = real_corosync_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    conf = tmp / "corosync.conf"
    conf.write_text(config_text)
    name = f"{tag}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    proc: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        start = f"mount -t tmpfs {tag} /run && exec corosync -f -c {conf}"
        with (tmp / "corosync.stderr").open("wb") as log_file:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", name, "sh", "-c", start],
                stdout=subprocess.DEVNULL,
                stderr=log_file,
            )
        space = Namespace(name, tmp)
        deadline = time.monotonic() + _START_TIMEOUT
        while space.real("-g", "runtime.votequorum.this_node_id").rc != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                log = (tmp / "corosync.stderr").read_text(errors="replace")
                pytest.fail(f"corosync did not start (rc {proc.poll()}): {log}")
            time.sleep(0.2)
        yield space
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        subprocess.run(["ip", "netns", "delete", name], check=False)
