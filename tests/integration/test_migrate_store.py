"""``python -m service migrate-store SOURCE TARGET`` run as an operator would, on a database the
real app filled with invoices in every final state: the copy holds the same events (ids,
positions, times, hashes), verifies, has the same views, and a run cut short goes on."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from eventstore import NO_STREAM, NewEvent, open_store
from tests.dumps import read_log, sqlite_view_rows
from tests.integration.cli import run_cli
from tests.integration.populated import Populated


@pytest.fixture
def source(final_states_template: tuple[Path, Populated], tmp_path: Path) -> Path:
    path = tmp_path / "source.db"
    shutil.copy(final_states_template[0], path)
    return path


def test_the_copy_has_every_event_unchanged_and_the_same_views(
    source: Path, tmp_path: Path
) -> None:
    target = tmp_path / "target.db"

    done = run_cli(tmp_path, "migrate-store", str(source), str(target))

    assert done.returncode == 0, done.stderr
    events = read_log(source)
    assert read_log(target) == events
    assert f"copied {len(events):,} events" in done.stdout
    assert f"verified: {len(events):,} events" in done.stdout
    assert "copying events" in done.stderr
    assert "rebuilding views" in done.stderr
    copied = sqlite_view_rows(target)
    assert copied["invoice_view"], "a rebuild that wrote nothing would differ"
    assert copied == sqlite_view_rows(source)
    assert run_cli(tmp_path, "verify", "--db", str(target)).returncode == 0


def test_a_run_cut_short_goes_on_from_where_it_stopped(source: Path, tmp_path: Path) -> None:
    events = read_log(source)
    target = tmp_path / "target.db"

    async def copy_half() -> None:
        async with await open_store(target) as store:
            await store.import_events(events[: len(events) // 2])

    asyncio.run(copy_half())

    done = run_cli(tmp_path, "migrate-store", str(source), str(target))

    assert done.returncode == 0, done.stderr
    assert f"resumed after position {len(events) // 2:,}" in done.stdout
    assert read_log(target) == events
    assert sqlite_view_rows(target) == sqlite_view_rows(source)


def test_a_target_with_a_log_of_its_own_is_refused_untouched(source: Path, tmp_path: Path) -> None:
    target = tmp_path / "target.db"

    async def write_own() -> None:
        async with await open_store(target) as store:
            await store.append("other", [NewEvent("E", {"n": 1})], NO_STREAM)

    asyncio.run(write_own())
    before = read_log(target)

    done = run_cli(tmp_path, "migrate-store", str(source), str(target))

    assert done.returncode == 2
    assert "not the start of the source's log" in done.stderr
    assert read_log(target) == before


@pytest.mark.parametrize(
    ("source_name", "target_name", "message"),
    [
        ("missing.db", "target.db", "does not exist"),
        ("source.db", "source.db", "the same store"),
        ("source.db", "nowhere/target.db", "does not exist"),
        ("source.db", "mysql://db/x", "mysql"),
    ],
)
def test_impossible_moves_are_refused_with_a_reason(
    source: Path, tmp_path: Path, source_name: str, target_name: str, message: str
) -> None:
    target = target_name if "://" in target_name else str(tmp_path / target_name)

    done = run_cli(tmp_path, "migrate-store", str(tmp_path / source_name), target)

    assert done.returncode == 2
    assert message in done.stderr
