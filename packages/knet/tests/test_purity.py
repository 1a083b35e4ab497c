"""The sans-IO rule: knet's core (every ``knet/_*.py`` but the trio driver and the key
file reader, plus ``knet.testing``) imports no trio, socket, clock, OS or threading
module, and takes no time, randomness or ordering from the process it runs in."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import knet

PACKAGE_DIR = Path(knet.__file__).parent
SRC_DIR = PACKAGE_DIR.parent
#: Modules allowed to do I/O: the trio driver and the authkey file reader.
IO_MODULES = {"_trio", "_keys"}
FORBIDDEN_MODULES = {
    "trio",
    "socket",
    "time",
    "os",
    "asyncio",
    "threading",
    "selectors",
    "secrets",
    "uuid",
}


def core_module_names() -> list[str]:
    """The core: knet/_*.py except the I/O modules (and the package __init__), plus
    testing.py."""
    names = [
        path.stem
        for path in PACKAGE_DIR.glob("_*.py")
        if path.stem not in IO_MODULES and path.stem != "__init__"
    ]
    return sorted([*names, "testing"])


CORE = core_module_names()


def parse(name: str) -> ast.Module:
    path = PACKAGE_DIR / f"{name}.py"
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import anywhere in ``tree``; relative
    imports are resolved against the knet package; ``from knet import x`` gives
    ``knet.x``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = "knet" + (f".{base}" if base else "")
            if base == "knet":
                found += [(node.lineno, f"knet.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, base))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name | ast.Attribute)
            and (node.func.id if isinstance(node.func, ast.Name) else node.func.attr)
            in {"__import__", "import_module"}
        ):
            # importlib.import_module("nacl._sodium") is checked like an import statement;
            # a computed module name cannot be checked, so it is a violation.
            first = node.args[0] if node.args else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.append((node.lineno, first.value))
            else:
                found.append((node.lineno, "<dynamic import>"))
    return found


def import_violations(name: str) -> list[str]:
    """Why module ``name`` breaks the import rules (empty if it does not)."""
    problems = []
    for line, module in imported_modules(parse(name)):
        top = module.split(".")[0]
        if top in FORBIDDEN_MODULES or module == "<dynamic import>":
            problems.append(f"{name}.py:{line} imports {module}")
        elif top == "knet" and module.removeprefix("knet.").split(".")[0] not in CORE:
            # Only core modules: importing the package or an I/O module would pull in
            # trio, socket or os through them.
            problems.append(f"{name}.py:{line} imports non-core {module}")
    return problems


def test_core_module_list_is_the_expected_one() -> None:
    """The scanned set is the core, without the trio driver and the key file reader."""
    assert {"_core", "_wire", "_crypto", "_compress", "_link", "_pmtud", "testing"} <= set(CORE)
    assert not IO_MODULES & set(CORE)
    assert "__init__" not in CORE


@pytest.mark.parametrize("name", CORE)
def test_core_module_imports_nothing_with_io(name: str) -> None:
    """No core module imports trio, socket, time, os or another I/O module, at any level."""
    assert import_violations(name) == []


def test_the_import_scan_sees_the_driver_imports() -> None:
    """The scan's positive control: the trio driver and the key reader do get flagged."""
    driver = " ".join(import_violations("_trio"))
    for module in ("trio", "socket", "time"):
        assert f"imports {module}" in driver
    assert "imports os" in " ".join(import_violations("_keys"))
    snippet = ast.parse(
        "import importlib\n"
        "importlib.import_module('socket')\n"
        "__import__(name)\n"
        "from . import _trio\n"
        "def f():\n"
        "    from time import monotonic_ns\n"
    )
    assert sorted(imported_modules(snippet)) == [
        (1, "importlib"),
        (2, "socket"),
        (3, "<dynamic import>"),
        (4, "knet._trio"),
        (6, "time"),
    ]


def _run_blocked(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter where importing trio, socket and the other
    forbidden modules that Python itself does not load at start-up fails."""
    blocked = sorted(FORBIDDEN_MODULES - {"os", "time", "threading"})
    prelude = textwrap.dedent(
        f"""
        import sys
        for name in {blocked!r}:
            assert name not in sys.modules, name
            sys.modules[name] = None  # any import of it now raises ImportError
        """
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC_DIR), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_core_imports_without_trio_or_socket() -> None:
    """With trio and socket unimportable, knet._core and knet.testing import and work."""
    result = _run_blocked(
        """
        import knet._core
        import knet.testing
        assert "knet._trio" not in sys.modules
        net = knet.testing.FakeNetwork(seed=1)
        a, b = net.add_core(1), net.add_core(2)
        for core, me, peer in ((a, 1, 2), (b, 2, 1)):
            core.add_host(peer)
            core.set_link(peer, 0, local=(f"127.0.0.{me}", 5405),
                          remote=(f"127.0.0.{peer}", 5405), now=net.now)
            core.open_channel(0)
        net.run_for(10_000_000_000)
        a.send(b"no trio here", net.now)
        net.run_for(10_000_000)
        assert [e.payload for e in net.received(2)] == [b"no trio here"]
        assert "knet._trio" not in sys.modules
        print("core ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "core ok"


def test_blocked_interpreter_refuses_the_driver() -> None:
    """Control: in the same blocked interpreter the trio driver cannot be imported."""
    result = _run_blocked(
        """
        try:
            import knet._trio
        except ImportError as exc:
            print("refused:", exc)
        else:
            raise SystemExit("the driver imported although trio and socket are blocked")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("refused:")


def _ambient_uses(tree: ast.AST) -> list[tuple[int, str]]:
    """Uses of process-global time, randomness, identity or hashing in ``tree``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            owner, attr = node.value.id, node.attr
            if owner in {"os", "time", "secrets", "uuid", "datetime"}:
                found.append((node.lineno, f"{owner}.{attr}"))
            elif owner == "random" and attr != "Random":
                found.append((node.lineno, f"random.{attr} (the global generator)"))
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            # Called or passed on (``key=id``): both order things by memory address.
            if node.id in {"id", "hash", "urandom", "uuid4", "uuid1"}:
                found.append((node.lineno, f"{node.id}()"))
        elif isinstance(node, ast.ImportFrom) and node.module in {"random", "datetime"}:
            names = {alias.name for alias in node.names}
            if names - {"Random"}:
                found.append((node.lineno, f"from {node.module} import {sorted(names)}"))
    return found


@pytest.mark.parametrize("name", CORE)
def test_core_module_takes_no_time_randomness_or_identity_from_the_process(name: str) -> None:
    """No core module uses os.urandom, time.*, global random, uuid, id() or hash()."""
    assert _ambient_uses(parse(name)) == []


def test_the_ambient_scan_catches_what_it_looks_for() -> None:
    """The scan's positive control on a snippet, and on the key reader's os.urandom."""
    snippet = ast.parse(
        textwrap.dedent(
            """
            import time, os, random
            a = time.monotonic_ns()
            b = os.urandom(8)
            c = sorted(items, key=id)
            d = sorted(items, key=lambda x: id(x))
            e = random.random()
            f = hash("x")
            g = random.Random(1)
            """
        )
    )
    assert sorted(_ambient_uses(snippet)) == [
        (3, "time.monotonic_ns"),
        (4, "os.urandom"),
        (5, "id()"),
        (6, "id()"),
        (7, "random.random (the global generator)"),
        (8, "hash()"),
    ]
    assert "os.urandom" in [what for _, what in _ambient_uses(parse("_keys"))]
