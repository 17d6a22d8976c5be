"""Worker count: WEB_CONCURRENCY first, else the CPUs the process may really use."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.server_config import cgroup_cpu_quota, worker_count


def cgroup_v2(tmp_path: Path, cpu_max: str) -> Path:
    (tmp_path / "cpu.max").write_text(cpu_max + "\n")
    return tmp_path


def cgroup_v1(tmp_path: Path, quota: int, period: int) -> Path:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text(f"{period}\n")
    return tmp_path


@pytest.mark.parametrize(
    ("cpu_max", "quota"), [("max 100000", None), ("200000 100000", 2.0), ("150000 100000", 1.5)]
)
def test_cgroup_v2_quota(tmp_path: Path, cpu_max: str, quota: float | None) -> None:
    assert cgroup_cpu_quota(cgroup_v2(tmp_path, cpu_max)) == quota


def test_cgroup_v1_quota(tmp_path: Path) -> None:
    assert cgroup_cpu_quota(cgroup_v1(tmp_path, 300000, 100000)) == 3.0
    unlimited = tmp_path / "unlimited"
    unlimited.mkdir()
    assert cgroup_cpu_quota(cgroup_v1(unlimited, -1, 100000)) is None


def test_no_cgroup_files_means_no_quota(tmp_path: Path) -> None:
    assert cgroup_cpu_quota(tmp_path) is None


def test_web_concurrency_wins_over_everything(tmp_path: Path) -> None:
    count, inputs = worker_count(
        5, minimum=2, maximum=8, affinity=64, cgroup_root=cgroup_v2(tmp_path, "100000 100000")
    )
    assert count == 5
    assert inputs == {"source": "WEB_CONCURRENCY"}


def test_a_container_quota_beats_the_hosts_core_count(tmp_path: Path) -> None:
    count, inputs = worker_count(
        None, minimum=1, maximum=16, affinity=64, cgroup_root=cgroup_v2(tmp_path, "300000 100000")
    )
    assert count == 3
    assert inputs["cgroup_quota"] == 3.0
    assert inputs["affinity"] == 64


def test_the_affinity_mask_bounds_it_without_a_quota(tmp_path: Path) -> None:
    count, _ = worker_count(None, minimum=1, maximum=16, affinity=6, cgroup_root=tmp_path)
    assert count == 6


def test_a_fractional_quota_rounds_up(tmp_path: Path) -> None:
    count, _ = worker_count(
        None, minimum=1, maximum=16, affinity=8, cgroup_root=cgroup_v2(tmp_path, "150000 100000")
    )
    assert count == 2


@pytest.mark.parametrize(("cpus", "expected"), [(1, 2), (4, 4), (32, 8)])
def test_floor_and_cap(tmp_path: Path, cpus: int, expected: int) -> None:
    count, _ = worker_count(None, minimum=2, maximum=8, affinity=cpus, cgroup_root=tmp_path)
    assert count == expected
