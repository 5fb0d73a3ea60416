"""public_base_url when it is not set: derived from the address the service listens on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from service.config import ConfigError, load_config

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config.yaml"


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, "http://127.0.0.1:8080"),
        ({"port": 8090}, "http://127.0.0.1:8090"),
        ({"host": "localhost", "port": 9000}, "http://localhost:9000"),
        ({"host": "0.0.0.0"}, "http://127.0.0.1:8080"),
        ({"host": "::"}, "http://[::1]:8080"),
        ({"host": "::1", "port": 8443}, "http://[::1]:8443"),
        ({"host": "fe80::1", "port": 81}, "http://[fe80::1]:81"),
        ({"port": 8090, "public_base_url": "https://pay.example.com"}, "https://pay.example.com"),
    ],
)
def test_public_base_url_follows_host_and_port_unless_set(
    settings: dict[str, Any], expected: str
) -> None:
    """Listening address -> link base; an explicit setting wins; IPv6 in brackets."""
    assert load_config(None, {}, **settings).public_base_url == expected


def test_the_repository_config_links_to_the_port_it_serves() -> None:
    """config.yaml (what make run uses) gives 8080, --port or INVOICE_PORT another port, and
    INVOICE_PUBLIC_BASE_URL overrides both."""
    assert load_config(REPO_CONFIG, {}).public_base_url == "http://127.0.0.1:8080"
    assert load_config(REPO_CONFIG, {}, port=8090).public_base_url == "http://127.0.0.1:8090"
    env = {"INVOICE_PORT": "9001"}
    assert load_config(REPO_CONFIG, env).public_base_url == "http://127.0.0.1:9001"
    env = {"INVOICE_PUBLIC_BASE_URL": "https://pay.example.com"}
    assert load_config(REPO_CONFIG, env, port=8090).public_base_url == "https://pay.example.com"


def test_port_zero_needs_a_public_base_url() -> None:
    """Any free port cannot be named in a link before it is chosen: a clear ConfigError."""
    with pytest.raises(ConfigError, match="public_base_url"):
        load_config(None, {}, port=0)
    url = "http://127.0.0.1:1234"
    assert load_config(None, {}, port=0, public_base_url=url).public_base_url == url
