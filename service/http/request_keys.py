"""What a request carries from the middleware and the authenticator to the handlers.

Typed ``web.RequestKey``s, apart from the app's keys (``keys.py``) so that the authenticator can
name the caller on the request without importing the module that types the app's resources
(which imports the authenticator).
"""

from __future__ import annotations

from aiohttp import web

REQUEST_ID = web.RequestKey("request_id", str)
USERNAME = web.RequestKey("username", str)
