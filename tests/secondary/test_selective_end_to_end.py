"""Selective sync with real processes on both backends: a selection over the CI
workload replicates exactly the selected items; narrowing and widening it on a running
secondary; orphans listed and deleted only when asked; per-item lag recorded."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from geo_sync.workload import Workload
from replicators.type_map import REPLICATORS
from tests.compare import differences
from tests.deployment import CONVERGE_TIMEOUT, Deployment, deployment_for, wait_for

Selected = Callable[[str, str], bool]


def _rules(include: dict[str, list[str]], exclude: dict[str, list[str]]) -> str:
    def table(rules: dict[str, list[str]]) -> str:
        return "{ " + ", ".join(f"{json.dumps(k)} = {json.dumps(v)}"
                                for k, v in rules.items()) + " }"
    return f"[secondary.selection]\ninclude = {table(include)}\nexclude = {table(exclude)}\n"


def select_in_config(deployment: Deployment, include: dict[str, list[str]],
                     exclude: dict[str, list[str]]) -> None:
    """Write ``[secondary.selection]`` into the secondary's config (replacing one)."""
    config = deployment.secondary.config
    text = re.sub(r"\n\[secondary\.selection\]\n(?:[^\[].*\n)*", "\n", config.read_text())
    config.write_text(text.rstrip("\n") + "\n\n" + _rules(include, exclude))


# The selections, and the same rules written independently as the test's own predicates.
FIRST = ({"repository": ["group0/"], "artifact": ["pipelines/1*"]}, {"*": ["jobs/r*"]})


def first(type_name: str, path: str) -> bool:
    return {"repository": path.startswith("group0/"),
            "artifact": path.startswith("pipelines/1"),
            "job_log": not path.startswith("jobs/r")}[type_name]


NARROW = ({"repository": ["group0/"], "artifact": ["pipelines/r*"]}, {"*": ["jobs/r*"]})


def narrow(type_name: str, path: str) -> bool:
    return path.startswith("pipelines/r") if type_name == "artifact" else first(type_name, path)


WIDE = ({"repository": ["group0/"]}, {})


def wide(type_name: str, path: str) -> bool:
    return path.startswith("group0/") if type_name == "repository" else True


@pytest.fixture(params=["production", "embedded"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    with deployment_for(request.param, tmp_path) as built:
        yield built


def _rows(deployment: Deployment) -> int:
    with deployment.secondary.engine.connect() as conn:
        return sum(conn.execute(select(func.count()).select_from(r.registry_table)).scalar_one()
                   for r in REPLICATORS.values())


def _on_primary(deployment: Deployment, selected: Selected) -> dict[str, int]:
    """Selected items per type on the primary, counted by the type's own discovery."""
    root = deployment.primary.settings.storage_root
    return {r.name: sum(1 for path in r.discover(root / r.storage_dir)
                        if selected(r.name, path)) for r in REPLICATORS.values()}


def wait_selected(deployment: Deployment, selected: Selected) -> None:
    """Until the mirror holds exactly the selected items, equal to the primary's, and the
    registries hold a row for each and nothing else."""
    primary = deployment.primary.settings.storage_root
    mirror = deployment.secondary.settings.mirror_root

    def done() -> bool:
        return (deployment.caught_up() and deployment.registry_busy() == 0
                and not differences(primary, mirror, selected)
                and _rows(deployment) == sum(_on_primary(deployment, selected).values()))
    try:
        wait_for(done, "the mirror to equal the primary's selected items", CONVERGE_TIMEOUT)
    except AssertionError:
        raise AssertionError(f"not converged: {differences(primary, mirror, selected)[:10]}; "
                             f"rows {_rows(deployment)}, selected on the primary "
                             f"{_on_primary(deployment, selected)}; logs in "
                             f"{deployment.logs}") from None


def _run_rounds(workload: Workload, *numbers: int) -> None:
    for number in numbers:
        workload.round(number)


def test_a_selection_replicates_exactly_the_selected_items_and_can_change_while_running(
        deployment: Deployment, tmp_path: Path) -> None:
    began = time.time()
    workload = deployment.workload(tmp_path / "scratch")
    workload.initial()
    select_in_config(deployment, *FIRST)
    deployment.start()
    wait_selected(deployment, first)
    _run_rounds(workload, 1, 2)  # round 1 renames group0/project0.git out of the selection
    wait_selected(deployment, first)

    status = deployment.status()
    assert status["selection"]["selective"]
    assert "repository: include group0/" in status["selection"]["rules"]
    expected = _on_primary(deployment, first)
    assert {name: counts["total"] for name, counts in status["types"].items()} == expected
    assert all(c["synced"] == c["total"] for c in status["types"].values())
    text = deployment.secondary.cli("status", check=False).stdout
    assert "selective" in text and "artifact: include pipelines/1*" in text

    # Narrow: artifacts of pipelines/1* leave; their copies stay until orphans --delete.
    select_in_config(deployment, *NARROW)
    deployment.secondary.cli("secondary", "reselect")
    leaving = {p for p in REPLICATORS["artifact"].discover(
        deployment.secondary.mirror("artifacts")) if not narrow("artifact", p)}
    assert leaving

    def forgotten() -> bool:
        return (deployment.caught_up()
                and _rows(deployment) == sum(_on_primary(deployment, narrow).values()))
    wait_for(forgotten, "the narrowed selection's backfill", CONVERGE_TIMEOUT)
    status = deployment.status()
    assert status["types"]["artifact"]["total"] == _on_primary(deployment, narrow)["artifact"]
    listed = deployment.secondary.cli("orphans", check=False)
    assert listed.returncode == 1
    assert {line.split()[-1] for line in listed.stdout.splitlines()
            if line.startswith("would delete artifact")} >= leaving
    assert all((deployment.secondary.mirror("artifacts") / p).exists() for p in leaving)
    assert deployment.secondary.cli("orphans", "--delete", check=False).returncode == 1
    assert not any((deployment.secondary.mirror("artifacts") / p).exists() for p in leaving)
    _run_rounds(workload, 3)
    wait_selected(deployment, narrow)

    # Widen: every artifact and job log again, found in the catalog.
    select_in_config(deployment, *WIDE)
    deployment.secondary.cli("secondary", "reselect")
    wait_selected(deployment, wide)
    assert deployment.secondary.cli("orphans", check=False).returncode == 0

    # Lag: every verified change's times are in order and within this test's life.
    def verified() -> bool:
        counts = deployment.status()["types"]["artifact"]
        return counts["verified"] == counts["total"]
    wait_for(verified, "the artifacts to be verified", CONVERGE_TIMEOUT)
    model = REPLICATORS["artifact"].registry_table
    with deployment.secondary.engine.connect() as conn:
        rows = conn.execute(select(model.change_committed_at, model.change_synced_at,
                                   model.change_verified_at)).all()
    assert rows
    for committed, synced, checked in rows:
        assert committed is not None and synced is not None and checked is not None
        assert began - 1 <= committed.timestamp() <= synced.timestamp() <= checked.timestamp()
    lag = deployment.status()["item_lag"]["artifact"]
    assert lag["samples"] == len(rows)
    assert 0 <= lag["p50_seconds"] <= lag["p99_seconds"] <= lag["max_seconds"]
    assert lag["max_seconds"] <= time.time() - began
    assert lag["oldest_unverified_at"] is None
