"""Settings: read from a YAML file, each overridable by an ``INVOICE_<NAME>`` environment variable.

Development mode (the default ``config.yaml``) runs with the sandbox gateway, the spec's dev
accounts and well-known secrets, so it starts with zero setup. Any other mode refuses to start
until the secrets are set: a production service never runs on a secret that is in a README.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import yaml
from marshmallow import Schema, ValidationError, validate
from marshmallow import fields as f

ENV_PREFIX = "INVOICE_"
DEVELOPMENT = "development"
DEV_TOKEN_SECRET = "dev-token-secret-not-for-production"
DEV_CALLBACK_TOKEN = "dev-callback-token"
DEV_WEBHOOK_SECRET_KEY = "dev-webhook-secret-key-not-for-production"
# SPEC: webhook retries at once, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (seconds).
DEFAULT_WEBHOOK_SCHEDULE = "0,5,300,1800,7200,18000,36000,36000"
# More processes than this on one machine is a mistake in the number, not a plan: a few per core
# is already past the point where they help (docs/performance.md).
MAX_WORKERS = 64


class ConfigError(Exception):
    """The settings are invalid or incomplete; the message names the setting."""


@dataclass(frozen=True, slots=True)
class Config:
    mode: str = DEVELOPMENT
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1  # service processes sharing the port (``serve --workers N``)
    database: str = "data/invoices.db"
    synchronous: str = "FULL"
    public_base_url: str = ""  # derived from host and port when not set (_with_base_url)
    token_secret: str = ""
    token_ttl_seconds: int = 24 * 3600
    callback_token: str = ""
    gateway: str = "sandbox"
    xendit_secret_key: str = ""
    xendit_base_url: str = "https://api.xendit.co"
    xendit_timeout_seconds: float = 10.0
    xendit_attempts: int = 3
    reconcile_interval_seconds: float = 0.0
    reconcile_window_seconds: int = 24 * 3600
    invoice_ttl_seconds: int = 2 * 3600
    idempotency_ttl_seconds: int = 24 * 3600
    conflict_timeout_seconds: float = 5.0
    refund_delay_seconds: float = 0.0
    expiry_interval_seconds: float = 0.5
    max_body_bytes: int = 1024 * 1024
    keepalive_timeout_seconds: float = 30.0
    request_read_timeout_seconds: float = 30.0
    send_timeout_seconds: float = 30.0
    log_level: str = "INFO"
    log_format: str = "auto"
    metrics: bool = True  # /metrics and the request histograms (bench/: on against off)
    metrics_token: str = ""  # when set, /metrics asks for ``Authorization: Bearer <it>``
    shutdown_timeout_seconds: float = 15.0  # in-flight requests' time to finish after SIGTERM
    merchant_name: str = "OnIndonesia Sandbox"
    merchant_city: str = "Jakarta"
    merchant_account_id: str = "936000000000000001"
    webhook_secret_key: str = ""  # encrypts the endpoints' secrets in the log
    webhook_retry_schedule: str = DEFAULT_WEBHOOK_SCHEDULE
    webhook_timeout_seconds: float = 15.0
    webhook_concurrency: int = 50  # deliveries in flight at once
    webhook_poll_interval_seconds: float = 0.5  # how often due retries are looked for
    webhook_disable_after_seconds: int = 5 * 24 * 3600  # failing this long disables an endpoint

    @property
    def development(self) -> bool:
        return self.mode == DEVELOPMENT

    @property
    def webhook_schedule(self) -> tuple[float, ...]:
        return tuple(float(part) for part in self.webhook_retry_schedule.split(","))


class _ConfigSchema(Schema):
    mode = f.String(validate=validate.OneOf([DEVELOPMENT, "production"]))
    host = f.String(validate=validate.Length(min=1))
    port = f.Integer(validate=validate.Range(min=0, max=65535))
    workers = f.Integer(validate=validate.Range(min=1, max=MAX_WORKERS))
    database = f.String(validate=validate.Length(min=1))
    synchronous = f.String(validate=validate.OneOf(["OFF", "NORMAL", "FULL", "EXTRA"]))
    public_base_url = f.Url(require_tld=False, schemes={"http", "https"})
    token_secret = f.String()
    token_ttl_seconds = f.Integer(validate=validate.Range(min=60))
    callback_token = f.String()
    gateway = f.String(validate=validate.OneOf(["sandbox", "xendit"]))
    xendit_secret_key = f.String()
    xendit_base_url = f.Url(require_tld=False, schemes={"http", "https"})
    xendit_timeout_seconds = f.Float(validate=validate.Range(min=0.1, max=120))
    xendit_attempts = f.Integer(validate=validate.Range(min=1, max=10))
    reconcile_interval_seconds = f.Float(validate=validate.Range(min=0))
    reconcile_window_seconds = f.Integer(validate=validate.Range(min=60))
    invoice_ttl_seconds = f.Integer(validate=validate.Range(min=1))
    idempotency_ttl_seconds = f.Integer(validate=validate.Range(min=60))
    conflict_timeout_seconds = f.Float(validate=validate.Range(min=0, max=600))
    refund_delay_seconds = f.Float(validate=validate.Range(min=0))
    expiry_interval_seconds = f.Float(validate=validate.Range(min=0.01, max=60))
    max_body_bytes = f.Integer(validate=validate.Range(min=1024))
    keepalive_timeout_seconds = f.Float(validate=validate.Range(min=0.1, max=3600))
    request_read_timeout_seconds = f.Float(validate=validate.Range(min=0.1, max=600))
    send_timeout_seconds = f.Float(validate=validate.Range(min=0.1, max=600))
    log_level = f.String(validate=validate.OneOf(["DEBUG", "INFO", "WARNING", "ERROR"]))
    log_format = f.String(validate=validate.OneOf(["auto", "json", "console"]))
    metrics = f.Boolean()
    metrics_token = f.String()
    shutdown_timeout_seconds = f.Float(validate=validate.Range(min=0, max=600))
    merchant_name = f.String(validate=validate.Length(min=1, max=25))
    merchant_city = f.String(validate=validate.Length(min=1, max=15))
    merchant_account_id = f.String(validate=validate.Regexp(r"^[0-9]{1,19}$"))
    webhook_secret_key = f.String()
    webhook_retry_schedule = f.String(
        validate=validate.Regexp(r"^[0-9]+(\.[0-9]+)?(,[0-9]+(\.[0-9]+)?){0,29}$")
    )
    webhook_timeout_seconds = f.Float(validate=validate.Range(min=0.1, max=120))
    webhook_concurrency = f.Integer(validate=validate.Range(min=1, max=1000))
    webhook_poll_interval_seconds = f.Float(validate=validate.Range(min=0.01, max=60))
    webhook_disable_after_seconds = f.Integer(validate=validate.Range(min=60))


def load_config(
    path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Config:
    """Defaults, then the YAML file, then ``INVOICE_*`` variables, then ``overrides``."""
    values: dict[str, Any] = {}
    if path is not None:
        values.update(_read_yaml(Path(path)))
    environ = os.environ if environ is None else environ
    names = {field.name for field in fields(Config)}
    values.update(
        {
            key[len(ENV_PREFIX) :].lower(): value
            for key, value in environ.items()
            if key.startswith(ENV_PREFIX) and key[len(ENV_PREFIX) :].lower() in names
        }
    )
    values.update({key: value for key, value in overrides.items() if value is not None})
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
    try:
        loaded = _ConfigSchema().load({key: _plain(value) for key, value in values.items()})
    except ValidationError as error:
        raise ConfigError(f"invalid setting(s): {error.messages}") from error
    config = Config(**loaded)
    if config.workers > 1 and config.port == 0:
        # Each process would bind a port of its own: clients could not reach them as one.
        raise ConfigError(f"workers {config.workers} needs a fixed port, not port 0")
    return _with_secrets(_with_base_url(config))


def _with_base_url(config: Config) -> Config:
    """``public_base_url`` when it is not set: the address the service listens on, so that
    ``serve --port 8090`` gives payment links on 8090. Behind a proxy, or listening on a
    wildcard address for other machines, it must be set to the address clients use."""
    if config.public_base_url:
        return config
    if config.port == 0:
        raise ConfigError(
            "port 0 (any free port) needs public_base_url: the payment links cannot name a port"
            f" not yet chosen (environment variable {ENV_PREFIX}PUBLIC_BASE_URL)"
        )
    # A wildcard address is where the service listens, not an address a browser can open:
    # links name the same machine's loopback instead.
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(config.host, config.host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address in a URL
    return replace(config, public_base_url=f"http://{host}:{config.port}")


def _with_secrets(config: Config) -> Config:
    """Development gets well-known secrets; any other mode must be given its own."""
    if config.gateway == "xendit" and not config.xendit_secret_key:
        raise ConfigError(
            f"gateway xendit needs xendit_secret_key (environment variable"
            f" {ENV_PREFIX}XENDIT_SECRET_KEY)"
        )
    if config.development:
        return replace(
            config,
            token_secret=config.token_secret or DEV_TOKEN_SECRET,
            callback_token=config.callback_token or DEV_CALLBACK_TOKEN,
            webhook_secret_key=config.webhook_secret_key or DEV_WEBHOOK_SECRET_KEY,
        )
    for name in ("token_secret", "callback_token", "webhook_secret_key"):
        value = getattr(config, name)
        if len(value) < 16 or value in (
            DEV_TOKEN_SECRET,
            DEV_CALLBACK_TOKEN,
            DEV_WEBHOOK_SECRET_KEY,
        ):
            raise ConfigError(
                f"{name} must be set to a secret of at least 16 characters outside development"
                f" mode (environment variable {ENV_PREFIX}{name.upper()})"
            )
    return config


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from error
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ConfigError(f"{path} must hold a mapping of settings")
    return content


def _plain(value: Any) -> Any:
    # YAML gives numbers; the environment gives text. marshmallow accepts both for numbers,
    # but a number where text is expected must be turned into text first.
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
