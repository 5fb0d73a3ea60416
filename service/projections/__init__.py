"""Compatibility only, until issue 15's merge: the views moved to ``service.views``.

``service.application`` still imports ``invoice_stream`` from here; the merge points it at
``service.views.streams`` and deletes this package.
"""
