"""The ``workers`` setting: 1 by default, from the file, ``INVOICE_WORKERS`` or ``--workers``,
1 to 64, and more than 1 only on a fixed port."""

from __future__ import annotations

import pytest

from service.cli import _parser
from service.config import MAX_WORKERS, ConfigError, load_config


def test_one_process_by_default() -> None:
    assert load_config(None, {}).workers == 1


def test_from_the_environment_and_overridden_by_the_command_line() -> None:
    assert load_config(None, {"INVOICE_WORKERS": "3"}).workers == 3
    assert load_config(None, {"INVOICE_WORKERS": "3"}, workers=2).workers == 2


def test_serve_takes_workers() -> None:
    args = _parser().parse_args(["serve", "--workers", "4"])
    assert args.workers == 4


@pytest.mark.parametrize("workers", [0, -1, MAX_WORKERS + 1])
def test_out_of_range_is_refused_naming_the_setting(workers: int) -> None:
    with pytest.raises(ConfigError, match="workers"):
        load_config(None, {}, workers=workers)


def test_not_a_number_is_refused() -> None:
    with pytest.raises(ConfigError, match="workers"):
        load_config(None, {"INVOICE_WORKERS": "many"})


def test_several_workers_need_a_fixed_port() -> None:
    with pytest.raises(ConfigError, match="fixed port"):
        load_config(None, {}, workers=2, port=0, public_base_url="http://127.0.0.1:1")
    assert load_config(None, {}, workers=1, port=0, public_base_url="http://x:1").workers == 1
