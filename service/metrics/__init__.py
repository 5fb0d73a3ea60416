"""The service's Prometheus metrics (``Metrics``) and what feeds them: committed events
(``outcomes``), requests (``service.http.metrics``), the store's group commits (its
``on_batch`` option) and hooks other features feed (``WebhookBacklogGauges``)."""

from service.metrics.registry import MULTIPROC_ENV, Metrics, WebhookBacklogGauges, multiprocess_dir

__all__ = ["MULTIPROC_ENV", "Metrics", "WebhookBacklogGauges", "multiprocess_dir"]
