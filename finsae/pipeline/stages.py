"""Content-keyed stage cache for the end-to-end run.

A stage's key is a hash of its name, its parameters and the keys of the stages it reads, so a
change re-runs exactly the stages it affects. Each stage writes into its own folder under
``cache_dir("stages", name, key)``; the folder is written under a temporary name and renamed
when the stage finished, so an interrupted stage is never mistaken for a finished one, and a
failed stage leaves no folder behind. ``checksums.json`` (SHA-256 of every file the stage
wrote) is verified before a cached stage is reused: a damaged stage is reported in one line and
run again.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..data.paths import cache_dir
from ..hashing import json_key
from ..integrity import check_folder, report_damaged, write_folder_checksums
from ..jsonable import dumps


@dataclass(frozen=True)
class StageResult:
    name: str
    key: str
    path: Path
    cached: bool
    seconds: float


def run_stage(name: str, params: dict, deps: list[StageResult], fn: Callable[[Path], None],
              *, force: bool = False, root: Path | None = None) -> StageResult:
    """Run `fn(folder)` unless a finished folder for the same key exists.

    fn writes its outputs into `folder`. ``_stage.json`` records name, params and deps;
    ``checksums.json`` the SHA-256 of every file.
    """
    key = json_key({"stage": name, "params": params, "deps": [d.key for d in deps]})
    base = (root or cache_dir("stages")) / name
    base.mkdir(parents=True, exist_ok=True)
    done = base / key
    if done.exists() and not force:
        problem = check_folder(done)
        if problem is None:
            return StageResult(name, key, done, True, 0.0)
        report_damaged(done, problem, f"running stage {name} again")
    tmp = base / f".{key}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    t0 = time.perf_counter()
    try:
        fn(tmp)
        seconds = time.perf_counter() - t0
        (tmp / "_stage.json").write_text(dumps(
            {"stage": name, "params": params, "deps": {d.name: d.key for d in deps},
             "seconds": seconds}))
        write_folder_checksums(tmp)
    except BaseException:  # a failed or interrupted stage leaves nothing behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(done, ignore_errors=True)
    tmp.rename(done)
    return StageResult(name, key, done, False, seconds)
