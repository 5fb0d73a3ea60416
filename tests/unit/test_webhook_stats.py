"""What the webhooks tell the metrics: each delivery outcome counted and told to the listener
(the app's ``Metrics.webhook_delivered``); an outcome outside the label's fixed set refused."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from service.metrics.registry import WEBHOOK_OUTCOMES
from service.views.read_model import FailedWebhookRow
from service.webhooks.admin import reason
from service.webhooks.stats import WebhookStats


def test_each_outcome_is_counted_and_told_to_the_listener() -> None:
    told: list[str] = []
    stats = WebhookStats(told.append)

    for outcome in ("delivered", "retrying", "delivered", "failed", "lost_race"):
        stats.count(outcome)

    assert told == ["delivered", "retrying", "delivered", "failed", "lost_race"]
    assert stats.deliveries == {"delivered": 2, "retrying": 1, "failed": 1, "lost_race": 1}


def test_an_outcome_outside_the_fixed_label_set_is_refused() -> None:
    told: list[str] = []
    stats = WebhookStats(told.append)

    with pytest.raises(ValueError, match="msg_"):
        stats.count("msg_0123")  # an id must never become a label value

    assert told == []
    assert not stats.deliveries
    assert "msg_0123" not in WEBHOOK_OUTCOMES


def test_a_failure_reads_as_its_error_or_else_its_status() -> None:
    at = datetime(2026, 3, 1, tzinfo=UTC)
    url, event = "https://x.example/h", "invoice.paid"
    answered = FailedWebhookRow("msg_1", url, event, at, 500, "", endpoint_disabled=False)
    unanswered = FailedWebhookRow("msg_2", url, event, at, 0, "timeout", endpoint_disabled=False)
    gone = FailedWebhookRow("msg_3", url, event, at, 410, "", endpoint_disabled=True)

    assert reason(answered) == "HTTP 500"
    assert reason(unanswered) == "timeout"
    assert reason(gone) == "HTTP 410; endpoint disabled"
