"""The sandbox's memory shared by processes (``FolderMemory``): one payment per reference, taken
by exactly one of several real processes racing for it, and seen by all of them."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

from service.gateway.port import EXPIRED, PAID, PENDING, GatewayStatus
from service.gateway.sandbox_memory import FolderMemory, ProcessMemory
from tests.integration.cli import REPO_ROOT, environment

AT = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)


def payment(reference: str, payment_id: str) -> GatewayStatus:
    return GatewayStatus(reference, PAID, payment_id, 15100, AT, "SANDBOX", "SANDBOX")


def test_both_memories_take_one_payment_per_reference(tmp_path: Path) -> None:
    for memory in (ProcessMemory(), FolderMemory(tmp_path / "sandbox")):
        assert memory.status("ref1") == GatewayStatus("ref1", PENDING)
        first = payment("ref1", "pay-a")
        assert memory.take(first) == (first, True)
        assert memory.take(payment("ref1", "pay-b")) == (first, False)
        assert memory.status("ref1") == first
        memory.expire("ref1")  # a paid reference stays paid
        assert memory.status("ref1") == first


def test_an_expired_reference_can_still_take_a_late_payment(tmp_path: Path) -> None:
    for memory in (ProcessMemory(), FolderMemory(tmp_path / "sandbox")):
        memory.expire("ref2")
        assert memory.status("ref2") == GatewayStatus("ref2", EXPIRED)
        late = payment("ref2", "pay-late")
        assert memory.take(late) == (late, True)
        assert memory.status("ref2") == late


def test_a_folder_is_shared_by_its_readers(tmp_path: Path) -> None:
    one, other = FolderMemory(tmp_path / "sandbox"), FolderMemory(tmp_path / "sandbox")
    taken = payment("ref3", "pay-1")
    assert one.take(taken) == (taken, True)
    assert other.status("ref3") == taken
    assert other.take(payment("ref3", "pay-2")) == (taken, False)
    staged = payment("ref3", "pay-staged")
    other.record(staged)  # tests staging a gateway's state overwrite it
    assert one.status("ref3") == staged


async def test_of_processes_racing_for_one_reference_exactly_one_takes_it(tmp_path: Path) -> None:
    folder = tmp_path / "sandbox"
    script = textwrap.dedent(
        f"""
        import sys, time
        from datetime import UTC, datetime
        from pathlib import Path
        from service.gateway.port import PAID, GatewayStatus
        from service.gateway.sandbox_memory import FolderMemory
        memory = FolderMemory(Path({str(folder)!r}))
        start = float(sys.argv[1])
        while time.time() < start:
            pass
        mine = GatewayStatus("ref4", PAID, sys.argv[2], 1, datetime.now(UTC), "SANDBOX", "X")
        held, taken = memory.take(mine)
        print(held.payment_id, taken)
        """
    )
    start = str(time.time() + 1.5)  # all start at once, after their imports
    racers = [
        await asyncio.create_subprocess_exec(
            *(sys.executable, "-c", script, start, f"pay-{i}"),
            cwd=REPO_ROOT,
            env=environment(),
            stdout=subprocess.PIPE,
        )
        for i in range(4)
    ]
    outputs = [(await racer.communicate())[0].decode().split() for racer in racers]
    assert all(racer.returncode == 0 for racer in racers)
    winners = [payment_id for payment_id, taken in outputs if taken == "True"]
    assert len(winners) == 1, outputs
    assert {payment_id for payment_id, _ in outputs} == set(winners)  # all see the winner
    assert FolderMemory(folder).status("ref4").payment_id == winners[0]
