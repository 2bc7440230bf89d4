"""The benchmark's settings (from bench/bench.py's flags) and per-run paths."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from tools.bench.tools import Load


@dataclass(frozen=True)
class Config:
    bootstrap: str
    users: int
    http_keys: int
    partitions: int
    load: Load
    put_load: Load
    session_timeout_ms: int
    phase_timeout: float  # seconds any one replay / join / failover may take
    faust_standby: int
    run_dir: Path  # logs and key files of this run
    run_id: str  # unique per run: topic, groups and faust app ids carry it
    sides: tuple[str, ...]  # "kstate", "faust": the main phases on ``users`` users
    client_tasks: int = 10  # concurrent trio tasks of the Python client-vs-random GET runs
    # PUT latency at one connection
    put_load_c1: Load = field(default_factory=lambda: Load(connections=1, threads=1))
    scale_users: int = 0  # users of the scale phase (kstate, 1 -> 3 members); 0: skipped

    @property
    def scale_topic(self) -> str:
        return f"bench-scale-{self.run_id}"

    @property
    def topic(self) -> str:
        return f"bench-users-{self.run_id}"

    def to_json(self) -> dict[str, object]:
        out = asdict(self)
        out["run_dir"] = str(self.run_dir)
        out["topic"] = self.topic
        return out
