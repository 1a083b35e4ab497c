"""cmap GET round trips per second and latency: our daemon against the real corosync.

Usage (from the repository root, as root: it creates a network namespace)::

    .venv/bin/python bench/ipc_bench.py                 # full table, 3 s per cell
    .venv/bin/python bench/ipc_bench.py --duration 5
    .venv/bin/python bench/ipc_bench.py --quick         # smoke run: short cells
    .venv/bin/python bench/ipc_bench.py --pin same      # server and client on CPU 0

Every row is one client process doing ``cmap GET totem.token`` in a loop, one request
in flight at a time, for ``--duration`` seconds after a short warm-up. Each round trip
is timed with ``time.perf_counter_ns``; ``rt/s`` is round trips over the loop's
elapsed time, ``p50``/``p99`` the round-trip latency percentiles.

Servers (one at a time, in a network namespace the benchmark creates, since the
libqb/pycorosync socket names are abstract Unix sockets, per namespace), both started
from the same one-node configuration (knet on 127.0.0.1 inside the namespace,
``totem.token = 3000``, state and log files in a temporary directory), with
``system.qb_ipc_type: socket`` for the SOCKET rows and the default (native, i.e. SHM)
for the SHM rows:

* ``corosync``: Debian's corosync 3 (``corosync -f -c CONF``);
* ``pycorosync``: our daemon, ``python -m corosync_executive -f -c CONF`` (totem,
  knet, every service; the same process a ``pycorosync`` unit runs).

Each server counts as started once ``corosync-cmapctl -g totem.token`` answers.

Clients:

* ``python``: our ``corosync.cmap`` (``initialize`` then ``handle.get``), over the
  transport the server chose (checked against the row's transport);
* ``libcmap``: the real C ``libcmap.so.4`` loaded with ctypes (``cmap_initialize``,
  ``cmap_get_uint32``, ``cmap_finalize``); the loop is Python, each iteration one
  ctypes call into libcmap, so the column includes about a microsecond of ctypes
  overhead per call (a C loop would be slightly faster; forking ``corosync-cmapctl -g``
  per request would measure process start-up instead of IPC). libqb's client follows
  the transport the server announces, so the same library serves both row kinds.

``--pin same`` runs server and client on CPU 0, ``--pin split`` the server on CPU 0
and the client on CPU 1 (``taskset``); the default leaves placement to the scheduler,
and on a small VM the numbers then jump between the two cases from run to run (a
cross-CPU wake-up costs tens of microseconds there).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC_PATHS = [
    str(ROOT / "packages" / name / "src") for name in ("executive", "clients", "knet", "totem")
]
KEY = "totem.token"
CS_OK = 1
# --pin: (server CPU, client CPU) for taskset; None leaves the choice to the scheduler.
PINS: dict[str, tuple[int | None, int | None]] = {
    "none": (None, None),
    "same": (0, 0),
    "split": (0, 1),
}
HEADER = f"{'server':<11} {'transport':<9} {'client':<8} {'rt/s':>9} {'p50 us':>8} {'p99 us':>8}"

COROSYNC_CONF = """\
totem {{
    version: 2
    cluster_name: ipcbench
    transport: knet
    crypto_cipher: none
    crypto_hash: none
    token: 3000
}}
nodelist {{
    node {{
        nodeid: 1
        name: node1
        ring0_addr: 127.0.0.1
    }}
}}
quorum {{
    provider: corosync_votequorum
}}
logging {{
    to_stderr: no
    to_syslog: no
    to_logfile: yes
    logfile: {tmp}/corosync.log
}}
system {{
{ipc_type}    state_dir: {tmp}
}}
"""


# ------------------------------------------------------------------ client side


def _measure(get: Callable[[], object], duration: float) -> dict[str, float]:
    """Time ``get`` round trips, one at a time, for ``duration`` seconds."""
    warmup_end = time.monotonic() + min(0.2, duration / 4)
    while time.monotonic() < warmup_end:
        get()
    latencies: list[int] = []
    clock = time.perf_counter_ns
    start = clock()
    end = start + int(duration * 1e9)
    now = start
    while now < end:
        get()
        after = clock()
        latencies.append(after - now)
        now = after
    latencies.sort()
    count = len(latencies)
    return {
        "count": count,
        "rate": count / ((now - start) / 1e9),
        "p50_us": latencies[count // 2] / 1000,
        "p99_us": latencies[min(count - 1, count * 99 // 100)] / 1000,
    }


def _python_client(duration: float, transport: str) -> dict[str, float]:
    from corosync import cmap  # only the worker process needs it

    with cmap.initialize() as handle:
        if handle.transport.name.lower() != transport:
            raise RuntimeError(f"the server chose {handle.transport.name}, not {transport}")
        if handle.get(KEY) != 3000:
            raise RuntimeError(f"{KEY} is not 3000 on this server")
        return _measure(lambda: handle.get(KEY), duration)


def _libcmap_client(duration: float) -> dict[str, float]:
    lib = ctypes.CDLL(ctypes.util.find_library("cmap") or "libcmap.so.4")
    lib.cmap_initialize.argtypes = [ctypes.POINTER(ctypes.c_uint64)]
    lib.cmap_get_uint32.argtypes = [ctypes.c_uint64, ctypes.c_char_p, ctypes.c_void_p]
    lib.cmap_finalize.argtypes = [ctypes.c_uint64]
    for function in (lib.cmap_initialize, lib.cmap_get_uint32, lib.cmap_finalize):
        function.restype = ctypes.c_int
    handle = ctypes.c_uint64()
    error = lib.cmap_initialize(ctypes.byref(handle))
    if error != CS_OK:
        raise RuntimeError(f"cmap_initialize failed: cs_error {error}")
    try:
        value = ctypes.c_uint32()
        key = KEY.encode()
        pointer = ctypes.addressof(value)
        get_uint32 = lib.cmap_get_uint32
        raw = handle.value
        error = get_uint32(raw, key, pointer)
        if error != CS_OK or value.value != 3000:
            raise RuntimeError(f"cmap_get_uint32 gave cs_error {error}, value {value.value}")
        return _measure(lambda: get_uint32(raw, key, pointer), duration)
    finally:
        lib.cmap_finalize(handle.value)


def _worker(client: str, duration: float, transport: str) -> int:
    try:
        if client == "python":
            result = _python_client(duration, transport)
        else:
            result = _libcmap_client(duration)
        print(json.dumps(result), flush=True)
    except Exception as exc:  # reported to the parent as the row's error
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return 1
    return 0


# ------------------------------------------------------------------ orchestration


def _ns_exec(ns: str, argv: list[str], cpu: int | None = None) -> list[str]:
    pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
    return ["ip", "netns", "exec", ns, *pin, *argv]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [*SRC_PATHS, env.get("PYTHONPATH")]))
    env.pop("PYCOROSYNC_IPC_PREFIX", None)
    return env


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextmanager
def _namespace() -> Iterator[str]:
    name = f"ipcbench{os.getpid()}"
    subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(_ns_exec(name, ["ip", "link", "set", "lo", "up"]), check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)


def _wait_for_cmap(ns: str, proc: subprocess.Popen[str], what: str, log: Path) -> None:
    """Poll ``corosync-cmapctl -g totem.token`` until the server answers (both servers
    hold the key; the real tool picks the transport the server announces)."""
    deadline = time.monotonic() + 30
    probe = _ns_exec(ns, ["corosync-cmapctl", "-g", KEY])
    while subprocess.run(probe, capture_output=True, check=False).returncode != 0:
        if proc.poll() is not None or time.monotonic() > deadline:
            text = log.read_text(errors="replace") if log.exists() else ""
            raise RuntimeError(f"{what} did not start (rc {proc.poll()}): {text}")
        time.sleep(0.2)


@contextmanager
def _server(ns: str, server: str, transport: str, cpu: int | None) -> Iterator[None]:
    """Run one server (``corosync`` or ``pycorosync``) in ``ns`` with the same
    one-node configuration, until the block ends (SIGTERM)."""
    with tempfile.TemporaryDirectory(prefix="ipcbench-") as tmp:
        ipc_type = "    qb_ipc_type: socket\n" if transport == "socket" else ""
        conf = Path(tmp) / "corosync.conf"
        conf.write_text(COROSYNC_CONF.format(tmp=tmp, ipc_type=ipc_type))
        stderr_path = Path(tmp) / "stderr"
        if server == "corosync":
            # corosync refuses to start while another one holds /run/corosync.pid (rc 18):
            # a private /run in the mount namespace of `ip netns exec` lets it run beside
            # any other corosync on this host (and leaves theirs alone).
            start = f"mount -t tmpfs ipcbench /run && exec corosync -f -c {conf}"
            argv = ["sh", "-c", start]
        else:
            # Our daemon keeps its pid lock in system.state_dir (the temporary directory).
            argv = [sys.executable, "-m", "corosync_executive", "-f", "-c", str(conf)]
        with stderr_path.open("w") as log:
            proc = subprocess.Popen(
                _ns_exec(ns, argv, cpu),
                env=_env(),
                stdout=subprocess.DEVNULL,
                stderr=log,
                text=True,
            )
        try:
            _wait_for_cmap(ns, proc, server, stderr_path)
            yield
        finally:
            _stop(proc)


def _run_client(
    ns: str, client: str, transport: str, duration: float, cpu: int | None
) -> dict[str, float] | str:
    argv = [sys.executable, __file__, "--client", client, "--duration", str(duration)]
    done = subprocess.run(
        _ns_exec(ns, [*argv, "--transport", transport], cpu),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    if not lines:
        return f"FAILED: no output (rc {done.returncode}) {done.stderr.strip()[-200:]}"
    result: dict[str, float | str] = json.loads(lines[-1])
    if "error" in result:
        return f"FAILED: {result['error']}"
    return {key: float(value) for key, value in result.items()}


def _row(server: str, transport: str, client: str, result: dict[str, float] | str) -> str:
    head = f"{server:<11} {transport:<9} {client:<8}"
    if isinstance(result, str):
        return f"{head} {result}"
    return f"{head} {result['rate']:>9.0f} {result['p50_us']:>8.1f} {result['p99_us']:>8.1f}"


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "ipc_bench needs root: it creates a network namespace (ip netns add)"
    for tool in ("ip", "taskset", "corosync", "corosync-cmapctl"):
        if shutil.which(tool) is None:
            return f"ipc_bench needs {tool!r} (apt-get install iproute2 util-linux corosync)"
    if (
        ctypes.util.find_library("cmap") is None
        and not Path("/usr/lib/x86_64-linux-gnu/libcmap.so.4").exists()
    ):
        return "ipc_bench needs libcmap.so.4 (apt-get install libcmap4)"
    return None


def _bench(duration: float, pin: str) -> int:
    reason = _skip_reason()
    if reason is not None:
        print(reason, file=sys.stderr)
        return 2
    if pin == "split" and len(os.sched_getaffinity(0)) < 2:
        print("ipc_bench --pin split needs two CPUs", file=sys.stderr)
        return 2
    server_cpu, client_cpu = PINS[pin]
    print(f"cmap GET {KEY}, one request in flight, {duration:g} s per row, pin: {pin}")
    print(HEADER)
    failed = False

    def emit(server: str, transport: str, client: str, result: dict[str, float] | str) -> None:
        nonlocal failed
        failed = failed or (isinstance(result, str) and result.startswith("FAILED"))
        print(_row(server, transport, client, result), flush=True)

    def rows(server: str, transport: str) -> None:
        for client in ("python", "libcmap"):
            result = _run_client(ns, client, transport, duration, client_cpu)
            emit(server, transport, client, result)

    with _namespace() as ns:
        for transport in ("socket", "shm"):
            for server in ("corosync", "pycorosync"):
                with _server(ns, server, transport, server_cpu):
                    rows(server, transport)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the benchmark (or one of its child roles)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per row")
    parser.add_argument("--quick", action="store_true", help="smoke run: 0.3 s per row")
    parser.add_argument(
        "--pin",
        choices=tuple(PINS),
        default="none",
        help="CPU pinning (taskset): none, same (server and client on CPU 0), "
        "split (server on CPU 0, client on CPU 1)",
    )
    parser.add_argument("--client", choices=("python", "libcmap"), help=argparse.SUPPRESS)
    parser.add_argument("--transport", choices=("socket", "shm"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.duration <= 0:
        parser.error("--duration must be positive")
    if args.client is not None:
        return _worker(args.client, args.duration, args.transport or "socket")
    return _bench(0.3 if args.quick else args.duration, args.pin)


if __name__ == "__main__":
    sys.exit(main())
