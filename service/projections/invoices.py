"""Compatibility only, until issue 15's merge: ``invoice_stream`` moved to ``service.views``."""

from service.views.streams import invoice_stream

__all__ = ["invoice_stream"]
