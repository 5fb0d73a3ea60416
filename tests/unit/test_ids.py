"""Event ids and invoice ids: their formats, their order, and randomness never handed out twice."""

from __future__ import annotations

import os
import re
import time
import uuid
from collections import Counter

from eventstore.entropy import random_bytes
from eventstore.model import new_event_id
from service.application.ids import new_invoice_id


def test_an_event_id_is_a_canonical_uuid7_carrying_the_current_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    text = new_event_id()
    after = time.time_ns() // 1_000_000

    parsed = uuid.UUID(text)
    assert str(parsed) == text
    assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
    assert before <= parsed.int >> 80 <= after


def test_event_ids_are_unique_and_sort_by_time() -> None:
    ids = [new_event_id() for _ in range(20_000)]
    time.sleep(0.002)  # the next millisecond
    later = new_event_id()

    assert len(set(ids)) == len(ids)
    assert all(later > earlier for earlier in ids)


def test_random_bytes_are_never_handed_out_twice_even_across_a_page() -> None:
    draws = [random_bytes(10) for _ in range(2_000)]  # five pages of 4 KiB

    assert all(len(draw) == 10 for draw in draws)
    assert len(set(draws)) == len(draws)


def test_a_forked_child_draws_other_bytes_than_its_parent() -> None:
    random_bytes(10)  # the pool has a page the child would inherit
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: write its next draw and leave at once
        os.write(writer, random_bytes(16))
        os._exit(0)
    os.close(writer)
    os.waitpid(pid, 0)
    childs = os.read(reader, 16)
    os.close(reader)

    assert len(childs) == 16
    assert childs != random_bytes(16)


def test_an_invoice_id_is_the_service_prefix_and_13_characters_each_equally_likely() -> None:
    ids = [new_invoice_id("ONDELIVERY") for _ in range(20_000)]

    assert all(re.fullmatch(r"OD[0-9A-Za-z]{13}", invoice) for invoice in ids)
    assert len(set(ids)) == len(ids)
    counts = Counter(character for invoice in ids for character in invoice[2:])
    expected = 20_000 * 13 / 62
    assert len(counts) == 62
    assert all(abs(count - expected) < 0.12 * expected for count in counts.values())
