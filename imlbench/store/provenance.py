"""Provenance of a run: library versions, the imlbench commit of a checkout, CPU, the accelerator.
Recorded beside a run's identity, never in its key: the same run elsewhere is the same run."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

LIBRARIES = ("imlbench", "numpy", "pandas", "scikit-learn", "xgboost", "torch")
OPTIONAL_LIBRARIES = ("transformers", "tokenizers")  # recorded where installed (the `hf` extra)
# the distributions that install a library's module under another name (the CPU-only xgboost wheel)
DISTRIBUTIONS = {"xgboost": ("xgboost", "xgboost-cpu")}


@functools.lru_cache(maxsize=1)
def _versions() -> tuple[tuple[str, str], ...]:
    return tuple(_read_versions().items())


def versions() -> dict[str, str]:
    """Library versions, plus `imlbench_commit` when imlbench runs from a git checkout (an editable
    install reports the same package version for every commit). Read once per process: the code a
    process runs is what it imported, whatever is installed later."""
    return dict(_versions())


def _read_versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for lib in LIBRARIES:
        found[lib] = "not installed"
        for dist in DISTRIBUTIONS.get(lib, (lib,)):
            try:
                found[lib] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
    for lib in OPTIONAL_LIBRARIES:
        try:
            found[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            pass
    commit = git_commit()
    if commit:
        found["imlbench_commit"] = commit
    return found


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """HEAD of the checkout imlbench is imported from, with "-dirty" if tracked files differ from it;
    None when not run from a checkout (a wheel) or git is unavailable."""
    root = Path(__file__).resolve().parents[2]  # imlbench/store/ -> the checkout
    if not (root / ".git").exists():
        return None

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() != root:
            return None
        dirty = git("status", "--porcelain", "--untracked-files=no")
        return git("rev-parse", "HEAD") + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


@functools.lru_cache(maxsize=1)
def cpu_info() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty elsewhere)."""
    found: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if not line.strip():
                break
            key, _, value = line.partition(":")
            found[key.strip()] = value.strip()
    except OSError:
        pass
    return found


def cpu_model() -> str:
    return cpu_info().get("model name") or platform.processor() or platform.machine() or "unknown"


@functools.lru_cache(maxsize=1)
def cpu_capability() -> str | None:
    """The instruction set torch dispatches its CPU kernels to (e.g. AVX512, AVX2): two machines with
    the same code and seeds can differ in float results when it differs."""
    try:
        import torch

        return str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # no torch, or an old one: the record says so
        return None


def accelerator() -> dict[str, Any] | None:
    """The CUDA device this process used (torch's name and CUDA version), or None. Torch is only
    looked at when the run already imported it and initialized CUDA."""
    torch = sys.modules.get("torch")
    try:
        if torch is None or not torch.cuda.is_initialized():
            return None
        index = torch.cuda.current_device()
        return {
            "name": torch.cuda.get_device_name(index),
            "cuda": torch.version.cuda,
            "count": torch.cuda.device_count(),
        }
    except Exception:  # a broken driver must not cost the record
        return None


def environment() -> dict[str, Any]:
    """Where a run executed; not part of its key."""
    info = cpu_info()
    return {
        "cpu": cpu_model(),
        "cpu_family": "/".join(info.get(k, "?") for k in ("vendor_id", "cpu family", "model")),
        "cpu_capability": cpu_capability(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "accelerator": accelerator(),
    }
