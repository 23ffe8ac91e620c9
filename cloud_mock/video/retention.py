"""Retention of the archive (docs/design.md §12.6): segments older than their source's
retention go, then, while the archive is larger than its cap, the oldest segments of all
sources. What a run loses is a prefix of it (both rules take the oldest first), recorded
as the run's watermark (cloud_mock.video.archive_index); a run that is not being written
and has nothing left is removed whole, and so is a source directory left empty.

The segment a recorder is writing is never touched: ffmpeg writes it under a `.tmp`
name and lists it in the playlist only once it is complete, and only listed segments
are deleted.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import os
import shutil
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from cloud_mock.video.archive_index import ArchiveIndex, Run

log = logging.getLogger(__name__)

DAY_S = 86_400.0


@dataclass
class Pruned:
    segments: int = 0  # segment files deleted
    runs: int = 0  # run directories removed
    bytes: int = 0  # freed
    total: int = 0  # what the archive holds afterwards


def file_sizes(path: Path, *, drop_temporary: bool = False) -> dict[str, int]:
    """The regular files of a run directory and their sizes; `drop_temporary` deletes the
    `.tmp` files an ffmpeg that was killed mid-segment left (in a run no one writes)."""
    sizes: dict[str, int] = {}
    with contextlib.suppress(FileNotFoundError, NotADirectoryError), os.scandir(path) as entries:
        for entry in entries:
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                if drop_temporary and entry.name.endswith(".tmp"):
                    os.unlink(entry.path)
                    continue
                sizes[entry.name] = entry.stat(follow_symlinks=False).st_size
            except FileNotFoundError:
                continue
    return sizes


class Pruner:
    """One pass over the archive; `prune` is called every `prune_s` by the archive."""

    def __init__(self, index: ArchiveIndex) -> None:
        self.index = index

    def prune(
        self,
        now: float,
        retention_days: Mapping[str, int],
        default_days: int,
        max_bytes: float,
        active: Collection[Path],
    ) -> Pruned:
        """`retention_days` by source slug (a source without settings gets
        `default_days`); `active`: the run directories recorders write now."""
        result = Pruned()
        runs: list[Run] = []
        for source_dir in self.index.sources():
            cutoff = now - retention_days.get(source_dir.name, default_days) * DAY_S
            for path in self.index.run_dirs(source_dir):
                run = self.index.run(path)
                old = 0
                for segment in run.segments:
                    if segment.end > cutoff:
                        break
                    old += 1
                if old:
                    run = self._drop(run, old, file_sizes(path), result)
                if self._gone_if_empty(run, active, result):
                    continue
                runs.append(run)
            self._remove_if_empty(source_dir, active)
        sizes = {r.path: file_sizes(r.path, drop_temporary=r.path not in active) for r in runs}
        result.total = sum(sum(s.values()) for s in sizes.values())
        if result.total > max_bytes:
            self._cap(runs, sizes, max_bytes, active, result)
        return result

    def _cap(
        self,
        runs: list[Run],
        sizes: dict[Path, dict[str, int]],
        max_bytes: float,
        active: Collection[Path],
        result: Pruned,
    ) -> None:
        """Delete the oldest segments of all sources until the archive fits."""
        heap = [(run.segments[0].start, i, 0) for i, run in enumerate(runs) if run.segments]
        heapq.heapify(heap)
        drop = [0] * len(runs)
        projected = result.total
        while heap and projected > max_bytes:
            _, i, position = heapq.heappop(heap)
            run = runs[i]
            projected -= sizes[run.path].get(run.segments[position].name, 0)
            drop[i] = position + 1
            if position + 1 < len(run.segments):
                heapq.heappush(heap, (run.segments[position + 1].start, i, position + 1))
        for i, count in enumerate(drop):
            if count:
                run = self._drop(runs[i], count, sizes[runs[i].path], result)
                if self._gone_if_empty(run, active, result):
                    self._remove_if_empty(run.path.parent, active)
        result.total = sum(sum(file_sizes(run.path).values()) for run in runs)

    def _drop(self, run: Run, count: int, sizes: dict[str, int], result: Pruned) -> Run:
        """Delete the first `count` segments of `run`: watermark first, then the files
        (a crash in between leaves files no playlist lists, removed with their run)."""
        doomed = run.segments[:count]
        kept = self.index.set_pruned(run, run.pruned + count)
        for segment in doomed:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(run.path / segment.name)
                result.segments += 1
                result.bytes += sizes.get(segment.name, 0)
        return kept

    def _gone_if_empty(self, run: Run, active: Collection[Path], result: Pruned) -> bool:
        if run.segments or run.path in active:
            return False
        shutil.rmtree(run.path, ignore_errors=True)
        self.index.forget(run.path)
        result.runs += 1
        return True

    def _remove_if_empty(self, source_dir: Path, active: Collection[Path]) -> None:
        if any(path.parent == source_dir for path in active):
            return
        with contextlib.suppress(OSError):  # not empty, or gone already
            source_dir.rmdir()
