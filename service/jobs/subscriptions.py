"""The names of the jobs that follow the log with a stored checkpoint and write their effects
into it (a webhook message queued, a refund completed). Their checkpoints belong to the log as
much as its events do: a copy of the log without them would make those effects again for old
events, so ``migrate-store`` moves them with it. A new such job adds its name here."""

WEBHOOK_OUTBOX = "webhook-outbox"
REFUND_WORKER = "refund-worker"

LOG_SUBSCRIPTIONS: tuple[str, ...] = (WEBHOOK_OUTBOX, REFUND_WORKER)
