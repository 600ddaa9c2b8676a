"""The environment an exec'd FastCGI program gets from fcgikit.spawn (PHP_FCGI_MAX_REQUESTS)."""

import pytest

from fcgikit.spawn.__main__ import build_parser
from fcgikit.spawn.child import program_environment
from fcgikit.spawn.options import validate_pool_options


def config(*flags):
    options = build_parser().parse_args(["-p", "9000", *flags, "--", "php-cgi"])
    return validate_pool_options(options, am_root=True)


def test_max_requests_0_tells_php_cgi_never_to_recycle_itself(monkeypatch):
    # php-cgi's own default is 500: without the variable it would leave every 500 requests.
    monkeypatch.delenv("PHP_FCGI_MAX_REQUESTS", raising=False)
    assert program_environment(config(), 0)["PHP_FCGI_MAX_REQUESTS"] == "0"


def test_the_users_own_setting_wins_when_max_requests_is_0(monkeypatch):
    monkeypatch.setenv("PHP_FCGI_MAX_REQUESTS", "500")
    assert program_environment(config(), 0)["PHP_FCGI_MAX_REQUESTS"] == "500"


@pytest.mark.parametrize("user_env", [None, "7"])
def test_max_requests_n_is_passed_as_php_fcgi_max_requests(monkeypatch, user_env):
    if user_env is None:
        monkeypatch.delenv("PHP_FCGI_MAX_REQUESTS", raising=False)
    else:
        monkeypatch.setenv("PHP_FCGI_MAX_REQUESTS", user_env)
    assert program_environment(config("--max-requests", "100"), 104)["PHP_FCGI_MAX_REQUESTS"] == "104"


def test_the_rest_of_the_environment_is_the_managers(monkeypatch):
    monkeypatch.setenv("SOME_APP_SETTING", "x")
    env = program_environment(config("--allow", "127.0.0.1"), 0)
    assert env["SOME_APP_SETTING"] == "x" and env["FCGI_WEB_SERVER_ADDRS"] == "127.0.0.1"
