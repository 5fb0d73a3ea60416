"""The read side: the ``ReadModel`` interface every reader of the views goes through.

``read_model`` holds the interface and the records it answers with; ``invoice_state``,
``status_history`` and ``rows`` hold what every backend's views share (a state's stored text,
the rows each event makes); each backend's views and queries live in a subpackage of their own
(``sqlite``, ``postgresql``), and ``backends`` picks them for a store.
"""

from service.views.read_model import LedgerEntry, ReadModel, UserRecord, Viewer, VisibleInvoice

__all__ = ["LedgerEntry", "ReadModel", "UserRecord", "Viewer", "VisibleInvoice"]
