"""Run a command that executes student code, under limits (used by tools/grade.py).

Every process that runs a student's code (the nbval run of a notebook, the child that
calls its functions on the hidden inputs) is started by :func:`run`, through this file
run as a small wrapper (``python grade_sandbox.py --uid N ... -- command``) that, before
it executes the command:

- sets ``RLIMIT_AS`` (memory), ``RLIMIT_CPU``, ``RLIMIT_FSIZE`` (file size) and
  ``RLIMIT_NPROC`` (processes and threads);
- when the grader runs as root: enters a new network namespace (loopback only, nothing
  outside can be reached) and drops to an unprivileged account of its own, a uid no
  other run uses at the same time, so the limit on processes counts that run's processes
  only, and the student's code cannot write the grader's files or another student's
  folder;
- otherwise: tries an unprivileged user + network namespace; failing that, sets
  ``CAMGRADE_NO_NETWORK=1``, which the grader's own Python processes turn into a guard
  that makes connections to other hosts fail (a weaker guard: code can undo it).

:func:`run` reads the output through a pipe up to a byte limit, stops the run at a
wall-clock limit, and afterwards kills every process left under the run's uid (a forked
or detached process included), then says which limit, if any, stopped it.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import os
import resource
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET = 0x00020000, 0x10000000, 0x40000000
MS_BIND, MS_REC, MS_PRIVATE = 0x1000, 0x4000, 0x40000
UID_FIRST, UID_COUNT = (
    61000,
    4000,
)  # accounts used for student code (no /etc/passwd entry)
LOCK_DIR = (
    Path("/run/lock/camgrade") if os.geteuid() == 0 else Path("/tmp/camgrade-locks")
)


@dataclass(frozen=True)
class Limits:
    """Limits for each process that runs student code."""

    # address space (RLIMIT_AS); importing torch maps about 3.2 GB
    memory_mb: int = 8192
    cpu_s: int = 600  # CPU seconds (RLIMIT_CPU)
    file_mb: int = 64  # largest file written (RLIMIT_FSIZE)
    processes: int = 256  # processes and threads of the run's account (RLIMIT_NPROC)
    output_kb: int = 2048  # output read before the run is stopped
    wall_s: float = 180.0  # wall clock for the whole run

    def named(self, limit: str) -> str:
        """The limit in words, for a report."""
        return {
            "time": f"the time limit ({self.wall_s:g} s)",
            "output": f"the output limit ({self.output_kb} KiB)",
            "cpu": f"the CPU time limit ({self.cpu_s} s)",
            "file": f"the file size limit ({self.file_mb} MiB)",
            "memory": f"the memory limit ({self.memory_mb} MiB)",
            "processes": f"the process limit ({self.processes})",
        }[limit]


KEPT_ENV = ("PATH", "LANG", "LC_ALL", "VIRTUAL_ENV")  # all a child sees of ours


def child_env(pythonpath: list[str], threads: int) -> dict[str, str]:
    """The environment of a process that runs student code: of this process's variables
    only :data:`KEPT_ENV` (no tokens, no keys), plus ``pythonpath`` and ``threads``
    threads for the maths libraries; :func:`run` adds HOME and TMPDIR."""
    env = {key: value for key, value in os.environ.items() if key in KEPT_ENV}
    env.update(
        PYTHONPATH=os.pathsep.join(pythonpath),
        MPLBACKEND="Agg",
        PYTHONDONTWRITEBYTECODE="1",
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
    )
    return env


def privileged() -> bool:
    return os.geteuid() == 0


class Account:
    """A uid of its own for one run (root only), held by a lock file while in use."""

    def __init__(self, start: int = 0) -> None:
        self.uid: int | None = None
        self._handle = None
        if not privileged():
            return
        LOCK_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
        for step in range(UID_COUNT):
            uid = UID_FIRST + (start + step) % UID_COUNT
            handle = open(LOCK_DIR / str(uid), "w")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                continue
            self.uid, self._handle = uid, handle
            kill_account(uid)  # nothing of an earlier run may survive into this one
            return
        raise RuntimeError("grade: no free sandbox account")

    def give(self, path: Path) -> None:
        """Make ``path`` (a fresh folder) the account's own, closed to every other
        account.
        """
        if self.uid is not None:
            os.chown(path, self.uid, self.uid)
        os.chmod(path, 0o700)

    def close(self) -> None:
        if self.uid is not None:
            kill_account(self.uid)
            self._handle.close()
            self.uid = None

    def __enter__(self) -> "Account":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def kill_account(uid: int) -> None:
    """SIGKILL every process of ``uid``: kill(-1) from a process of that uid."""
    for _ in range(3):
        subprocess.run(
            ["/bin/sh", "-c", "kill -9 -1"],
            user=uid,
            group=uid,
            extra_groups=[],
            check=False,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not _processes_of(uid):
            return


def _processes_of(uid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(
                    f"/proc/{entry}/status", encoding="ascii", errors="replace"
                ) as handle:
                    for line in handle:
                        if line.startswith("Uid:"):
                            if int(line.split()[1]) == uid:
                                found.append(int(entry))
                            break
            except (OSError, ValueError, IndexError):
                pass
    return found


@dataclass
class Outcome:
    returncode: int | None
    output: str  # the start and end of what the command printed (stdout and stderr)
    limit: (
        str | None
    )  # the limit that stopped the run: time, output, cpu, file (else None)


def run(
    command: list[str],
    cwd: Path,
    env: dict[str, str],
    limits: Limits,
    account: Account,
    network: bool = False,
) -> Outcome:
    """Run ``command`` in ``cwd`` under ``limits`` as ``account``; never raises for what
    the command does."""
    wrapper = [
        sys.executable,
        "-S",
        str(Path(__file__).resolve()),
        "--as-mb",
        str(limits.memory_mb),
        "--cpu-s",
        str(limits.cpu_s),
        "--file-mb",
        str(limits.file_mb),
        "--nproc",
        str(limits.processes),
    ]
    if account.uid is not None:
        wrapper += ["--uid", str(account.uid)]
    if network:
        wrapper.append("--network")
    env = dict(env, HOME=str(cwd), TMPDIR=str(cwd))
    process = subprocess.Popen(
        wrapper + ["--"] + command,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    cap = limits.output_kb * 1024
    state = {"head": bytearray(), "tail": b"", "total": 0}
    too_much = threading.Event()

    def read() -> None:
        while True:
            chunk = process.stdout.read1(65536)
            if not chunk:
                return
            state["total"] += len(chunk)
            if len(state["head"]) < 4096:
                state["head"] += chunk[: 4096 - len(state["head"])]
            state["tail"] = (state["tail"] + chunk)[-8192:]
            if state["total"] > cap:
                too_much.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    limit, deadline = None, time.monotonic() + limits.wall_s
    while process.poll() is None:
        if too_much.is_set():
            limit = "output"
            break
        if time.monotonic() > deadline:
            limit = "time"
            break
        too_much.wait(0.05)
    _stop(process, account)
    reader.join(timeout=5)
    process.stdout.close()
    returncode = process.returncode
    if limit is None and too_much.is_set():
        limit = "output"
    if limit is None and returncode is not None and returncode < 0:
        limit = {signal.SIGXCPU: "cpu", signal.SIGXFSZ: "file"}.get(-returncode)
    head, tail = bytes(state["head"]), state["tail"]
    text = head.decode("utf-8", "replace")
    if state["total"] > len(head):
        text += "\n[...]\n" + tail[-max(0, state["total"] - len(head)) :].decode(
            "utf-8", "replace"
        )
    return Outcome(returncode, text, limit)


def _stop(process: subprocess.Popen, account: Account) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if account.uid is not None:
        kill_account(account.uid)
    process.wait()


# --- the wrapper: a fresh process sets everything up, then executes the command ---


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        flags = struct.unpack(
            "16sH", fcntl.ioctl(sock, 0x8913, struct.pack("16sH", b"lo", 0))
        )[1]
        fcntl.ioctl(sock, 0x8914, struct.pack("16sH", b"lo", flags | 1))  # IFF_UP


def _isolate_network(uid: int | None) -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    flags = (
        CLONE_NEWNET
        if uid is not None or privileged()
        else CLONE_NEWUSER | CLONE_NEWNET
    )
    if libc.unshare(flags) != 0:
        return False
    try:
        _loopback_up()
    except OSError:
        pass
    return True


def _expose_interpreter(libc) -> None:
    """The account must run Python: if the interpreter lives under a folder other
    accounts cannot enter (``/root`` for a pyenv install), mount, in a mount namespace
    of this run's own, an empty tmpfs over that folder with only the way to the
    interpreter bound back in (the rest of the folder stays out of sight)."""
    prefix = Path(os.path.realpath(sys.base_prefix))
    blocked = next(
        (p for p in reversed(prefix.parents) if not os.stat(p).st_mode & 0o001), None
    )
    if blocked is None:
        return
    keep = (
        prefix.parents[len(prefix.parents) - len(blocked.parts) - 1]
        if prefix.parent != blocked
        else prefix
    )
    if libc.unshare(CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    checks = [libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None)]
    handle = os.open(keep, os.O_PATH)  # in this namespace, before the tmpfs hides it
    checks.append(
        libc.mount(b"tmpfs", str(blocked).encode(), b"tmpfs", 0, b"mode=0755")
    )
    os.mkdir(keep, 0o755)
    checks.append(
        libc.mount(
            f"/proc/self/fd/{handle}".encode(),
            str(keep).encode(),
            None,
            MS_BIND | MS_REC,
            None,
        )
    )
    if any(checks):
        raise OSError(ctypes.get_errno(), f"cannot expose {keep}")
    os.close(handle)


def _wrapper(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--as-mb", type=int, required=True)
    parser.add_argument("--cpu-s", type=int, required=True)
    parser.add_argument("--file-mb", type=int, required=True)
    parser.add_argument("--nproc", type=int, required=True)
    parser.add_argument("--uid", type=int)
    parser.add_argument("--network", action="store_true", help="keep the network")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    env = dict(os.environ)
    if not args.network and not _isolate_network(args.uid):
        env["CAMGRADE_NO_NETWORK"] = "1"
    for name, value in (
        (resource.RLIMIT_AS, args.as_mb << 20),
        (resource.RLIMIT_CPU, args.cpu_s),
        (resource.RLIMIT_FSIZE, args.file_mb << 20),
        (resource.RLIMIT_NPROC, args.nproc),
        (resource.RLIMIT_CORE, 0),
    ):
        hard = value + 5 if name == resource.RLIMIT_CPU else value
        resource.setrlimit(name, (value, hard))
    if args.uid is not None:
        _expose_interpreter(ctypes.CDLL(None, use_errno=True))
        os.setgroups([])
        os.setgid(args.uid)
        os.setuid(args.uid)
    os.umask(0o077)
    os.execvpe(command[0], command, env)
    return 127


if __name__ == "__main__":
    sys.exit(_wrapper(sys.argv[1:]))
