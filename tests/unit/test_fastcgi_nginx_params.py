"""The FastCGI params nginx sends are written once (fastcgi/nginx_params.py): the image's
nginx.conf, the stack's rendered config, the tests' nginx and the benchmark's agree."""

import re
from pathlib import Path

from fcgikit.fastcgi import nginx_params
from fcgikit.fastcgi.nginx_params import app_params, cgi_params, quote, render, stock_params
from fcgikit.testing import nginx as test_nginx

IMAGE_CONF = Path(__file__).resolve().parents[2] / "images" / "nginx" / "nginx.conf"
PARAM = re.compile(r"^\s*fastcgi_param (\S+) (.*);$")


def params_by_location(conf: str) -> dict[str, list[tuple[str, str]]]:
    """The fastcgi_param lines of each location that has any (the health server's has none)."""
    found: dict[str, list[tuple[str, str]]] = {}
    location = None
    for line in conf.splitlines():
        opened = re.match(r"^\s*location (.+) \{$", line)
        if opened:
            location = opened.group(1)
            if found.get(location):
                location = None  # another server's location of the same name
            else:
                found[location] = []
        elif (param := PARAM.match(line)) and location is not None:
            found[location].append((param.group(1), param.group(2)))
    return found


def rendered(params) -> list[tuple[str, str]]:
    return [(name, quote(value)) for name, value in params]


def test_the_images_nginx_conf_sends_exactly_the_params_of_nginx_params():
    locations = params_by_location(IMAGE_CONF.read_text())
    assert locations["/"] == rendered(app_params())
    assert locations["/cgi-bin/"] == rendered(cgi_params("/srv"))
    assert locations["@fcgikit_fallback"] == rendered(app_params() + [("FCGIKIT_FALLBACK", "1")])


def test_the_app_is_mounted_at_the_root_and_the_gateway_splits_cgi_paths_itself():
    app, cgi = dict(app_params()), dict(cgi_params("/srv/cgi-bin"))
    assert (app["SCRIPT_NAME"], app["PATH_INFO"]) == ("", "$uri")
    assert (cgi["SCRIPT_NAME"], cgi["PATH_INFO"], cgi["DOCUMENT_ROOT"]) == ("$uri", "", "/srv/cgi-bin")
    assert app["HTTP_PROXY"] == cgi["HTTP_PROXY"] == ""  # httpoxy, at every location
    for params in (app_params(), cgi_params("/x")):
        names = [name for name, _ in params]
        assert len(names) == len(set(names))  # each sent once: no "who wins"


def test_the_tests_nginx_gets_debians_stock_file_and_the_stacks_params_beside_it():
    assert test_nginx.FASTCGI_PARAMS == render(stock_params())
    assert 'fastcgi_param SCRIPT_NAME $fastcgi_script_name;' in test_nginx.FASTCGI_PARAMS
    assert "PATH_INFO" not in test_nginx.FASTCGI_PARAMS
    assert test_nginx.FCGIKIT_APP_PARAMS == render(app_params())


def test_the_benchmark_sends_the_stacks_params():
    from bench.nginxconf import COMMON_PARAMS

    assert COMMON_PARAMS == render(nginx_params.COMMON + [("HTTP_HOST", "$host")])


def test_render_and_quote():
    assert render([("A", ""), ("B", "$uri"), ("C", "CGI/1.1"), ("D", "two words"), ("E", "$https if_not_empty")],
                  indent=4) == (
        '    fastcgi_param A "";\n    fastcgi_param B $uri;\n    fastcgi_param C CGI/1.1;\n'
        '    fastcgi_param D "two words";\n    fastcgi_param E $https if_not_empty;\n')
    assert render([("A", "1")], directive="uwsgi_param") == "uwsgi_param A 1;\n"
