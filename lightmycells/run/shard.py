"""Split a run's inputs over several containers: ``--shard I/N`` or the scheduler's variables.

A Kubernetes indexed Job sets ``JOB_COMPLETION_INDEX`` (0-based) and, through the manifest
the user writes, usually ``JOB_COMPLETIONS``; a SLURM array sets ``SLURM_ARRAY_TASK_ID``,
``SLURM_ARRAY_TASK_MIN`` and ``SLURM_ARRAY_TASK_COUNT``. Every container lists the same
sorted inputs and keeps every N-th one starting at its index, so shards are disjoint, cover
everything, and stay balanced across study folders without any coordination.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (0-based) of ``count``, and where that came from."""

    index: int = 0
    count: int = 1
    source: str = "default"

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(
                f"shard {self.index}/{self.count} from {self.source} is out of range "
                f"(expected 0 <= I < N)"
            )

    def select(self, items: Sequence[T]) -> list[T]:
        """The items of this shard: every ``count``-th item starting at ``index``."""
        return list(items[self.index :: self.count])

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse(text: str) -> Shard:
    """Parse ``"I/N"`` (0-based index I of N shards).

    Raises
    ------
    ValueError
        Saying what was expected and what arrived.
    """
    match = _SHARD.match(text)
    if not match:
        raise ValueError(f"--shard expects I/N such as 0/4 (got {text!r})")
    return Shard(int(match.group(1)), int(match.group(2)), source="--shard")


def from_environment(env: Mapping[str, str]) -> Shard:
    """The shard a Kubernetes indexed Job or a SLURM array assigns, else ``0/1``.

    Raises
    ------
    ValueError
        When an index variable is set without its count, or either is not an integer.
    """
    if "JOB_COMPLETION_INDEX" in env:
        return _shard(env, "JOB_COMPLETION_INDEX", "JOB_COMPLETIONS", offset_name=None)
    if "SLURM_ARRAY_TASK_ID" in env:
        # SLURM arrays may start at any number (--array=1-8); the minimum makes it 0-based.
        return _shard(env, "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT",
                      offset_name="SLURM_ARRAY_TASK_MIN")
    return Shard()


def _shard(env: Mapping[str, str], index_name: str, count_name: str,
           offset_name: str | None) -> Shard:
    if count_name not in env:
        raise ValueError(
            f"{index_name} is set but {count_name} is not; set it to the number of shards "
            f"or pass --shard I/N"
        )
    try:
        index = int(env[index_name]) - (int(env.get(offset_name, "0")) if offset_name else 0)
        count = int(env[count_name])
    except ValueError:
        raise ValueError(
            f"{index_name}={env[index_name]!r} and {count_name}={env[count_name]!r} "
            f"must be integers"
        ) from None
    return Shard(index, count, source=f"{index_name}/{count_name}")
