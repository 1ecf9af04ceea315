"""What the benchmarks share: peak memory of one call, other processes' CPU load, the
versions and commit of a run, and writing its results."""

from __future__ import annotations

import contextlib
import ctypes
import datetime as _dt
import gc
import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from pathlib import Path

import torch
import torchvision
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
MIB = 1024.0 * 1024.0


def tiny() -> nn.Module:
    """A smoke-test network shaped like a ResNet: ``layer4`` (16 channels), ``fc``."""
    return nn.Sequential(
        OrderedDict(
            stem=nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU()),
            layer4=nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU()),
            avgpool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
            fc=nn.Linear(16, 10),
        )
    )


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class RssSampler(threading.Thread):
    """Samples this process's resident set size (/proc/self/statm) every ``interval_s``.

    Torch releases the GIL inside its kernels, so the thread samples during the call.
    """

    def __init__(self, interval_s: float = 0.0005) -> None:
        super().__init__(daemon=True)
        self.interval_s = interval_s
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.fd = os.open("/proc/self/statm", os.O_RDONLY)
        self.baseline = self.read()
        self.peak = self.baseline
        self._halt = threading.Event()
        self._started = threading.Event()

    def read(self) -> int:
        return int(os.pread(self.fd, 256, 0).split()[1]) * self.page

    def run(self) -> None:
        self._started.set()
        while not self._halt.is_set():
            self.peak = max(self.peak, self.read())
            time.sleep(self.interval_s)

    def __enter__(self) -> RssSampler:
        self.start()
        self._started.wait()
        return self

    def __exit__(self, *exc: object) -> None:
        self._halt.set()
        self.join()
        self.peak = max(self.peak, self.read())
        os.close(self.fd)


class Glibc:
    """Makes freed CPU tensor memory go back to the OS at once: RSS tracks what is used.

    glibc raises its mmap threshold (up to 32 MiB) each time a large block is freed;
    later blocks below it come from the heap and stay resident after free. Fixing the
    threshold and trimming the heap before each call keeps RSS equal to live memory plus
    small change. It costs time, so the benchmarks fix it for the memory phase only,
    after all timing.
    """

    def __init__(self) -> None:
        try:
            self.libc = ctypes.CDLL("libc.so.6")
            self.ok = bool(self.libc.malloc_trim)
        except (OSError, AttributeError):
            self.libc, self.ok = None, False

    def fix_mmap_threshold(self, threshold: int = 64 * 1024) -> bool:
        if not self.ok:
            return False
        ok_mmap = self.libc.mallopt(-3, threshold) == 1  # M_MMAP_THRESHOLD
        return ok_mmap and self.libc.mallopt(-1, 1024 * 1024) == 1  # M_TRIM_THRESHOLD

    def trim(self) -> None:
        if self.ok:
            self.libc.malloc_trim(0)


def peak_bytes(call, device: torch.device, glibc: Glibc) -> float:
    """Memory one call needs above what was in use just before it: on CUDA the
    allocator's peak counter, on the CPU the resident set size sampled by a thread."""
    gc.collect()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        call()
        sync(device)
        return float(torch.cuda.max_memory_allocated(device) - before)
    glibc.trim()
    with RssSampler() as sampler:
        call()
    return float(sampler.peak - sampler.baseline)


def tensor_peak_bytes(call) -> float:
    """Peak of live CPU tensor memory during one call, above the level before it, in
    bytes: exact, from the allocation and free events that torch's profiler records
    (tensors only: no allocator slack, thread stacks or library buffers, which the
    resident set also counts). Slower than the call itself: for memory, never timing."""
    from torch.profiler import ProfilerActivity, profile

    gc.collect()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = call()
        del result
    events = sorted(
        (event.start_ns(), event.nbytes())
        for event in prof.profiler.kineto_results.events()
        if event.name() == "[memory]"
    )
    level = peak = 0
    for _, change in events:
        level += change
        peak = max(peak, level)
    return float(peak)


class OtherLoad:
    """Share of the machine's CPU time that other processes used since it was made.

    On a machine with few cores, anything else running slows the contenders unevenly;
    the benchmarks report this so a noisy run can be recognised and redone.
    """

    def __init__(self) -> None:
        self.tick = os.sysconf("SC_CLK_TCK")
        self.start_busy, self.start_own = self._busy(), self._own()
        self.start_wall = time.perf_counter()

    @staticmethod
    def _busy() -> int | None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            line = Path("/proc/stat").read_text().split("\n", 1)[0]
            fields = [int(v) for v in line.split()[1:]]
            # user nice system idle iowait irq softirq steal ...
            return sum(fields[:3]) + sum(fields[5:8])
        return None

    @staticmethod
    def _own() -> int | None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            after_name = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
            # utime, stime (all threads), cutime, cstime (children waited for)
            return sum(int(v) for v in after_name[11:15])
        return None

    def share(self) -> float | None:
        busy, own = self._busy(), self._own()
        if None in (busy, own, self.start_busy, self.start_own):
            return None
        elapsed = time.perf_counter() - self.start_wall
        capacity = elapsed * self.tick * (os.cpu_count() or 1)
        other = max(0.0, (busy - self.start_busy) - (own - self.start_own))
        return other / capacity if capacity > 0 else None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                return f"{name} ({os.cpu_count()} logical CPUs)"
    return platform.processor() or "CPU"


def versions() -> dict[str, object]:
    """Python, torch, torchvision, camlib, the peers, and the code's commit."""
    from importlib.metadata import PackageNotFoundError, version

    import camlib

    found = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "camlib": camlib.__version__,
    }
    for label in ("grad-cam", "torchcam", "captum"):
        try:
            found[label] = version(label)
        except PackageNotFoundError:
            found[label] = None
    found.update(code_state())
    return found


def code_state() -> dict[str, object]:
    """The git commit of the run's code, and whether camlib/ or benchmarks/ differ from
    it (changed tracked files or new Python files, results aside; None without git)."""

    def git(*args: str) -> str | None:
        with contextlib.suppress(Exception):
            return subprocess.run(
                ["git", *args],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
                timeout=10,
            ).stdout.strip()
        return None

    changed = git(
        "status",
        "--porcelain",
        "--untracked-files=all",
        "--",
        "camlib",
        "benchmarks",
        ":(exclude)benchmarks/results",
    )
    if changed is not None:
        changed = [
            line
            for line in changed.splitlines()
            if not line.startswith("??") or line.endswith(".py")
        ]
    return {
        "commit": git("rev-parse", "HEAD"),
        "uncommitted_changes": None if changed is None else bool(changed),
    }


def run_meta(load: OtherLoad, wall: float, **fields) -> dict:
    """A benchmark's ``meta``: the date, its own ``fields``, other processes' CPU share
    since ``load`` was made, the versions (with the commit), seconds since ``wall``."""
    now = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    return {
        "date": now,
        **fields,
        "other_processes_cpu_share": load.share(),
        "versions": versions(),
        "total_seconds": time.perf_counter() - wall,
        "argv": sys.argv[1:],
    }


def write_json(path: Path | None, payload: dict) -> None:
    """Write ``payload`` as indented JSON to ``path`` (folder made) unless None."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=2) + "\n")
