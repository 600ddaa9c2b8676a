"""nginx.conf rendering is pure: Lua-balanced upstreams (their backends come at run time), limits from the spec."""

from pathlib import Path

import pydantic
import pytest

from fcgikit.deploy.nginxconf import (
    backends_version,
    parse_backends,
    render_backends,
    render_compose_nginx_conf,
    render_nginx_conf,
)
from fcgikit.deploy.spec import CgiService, NginxService, Services, WorkersService

IMAGE_CONF = Path(__file__).resolve().parents[2] / "images" / "nginx" / "nginx.conf"


def services(**nginx):
    return Services(
        nginx=NginxService(**nginx),
        workers=WorkersService(app="hello_wsgi:app", timeout=20),
        cgi=CgiService(timeout=7),
    )


def block(conf: str, opening: str) -> str:
    """The text of the block that starts with `opening` up to its closing brace."""
    start = conf.index(opening)
    depth, index = 0, start
    while True:
        char = conf[index]
        depth += char == "{"
        depth -= char == "}"
        index += 1
        if char == "}" and depth == 0:
            return conf[start:index]


def test_upstreams_pick_from_the_run_time_list_with_keepalive_after_the_balancer():
    conf = render_nginx_conf(services(keepalive=8))
    assert conf.index("load_module modules/ngx_http_lua_module.so;") < conf.index("http {")
    assert 'init_worker_by_lua_block { require("fcgikit_edge").init_worker() }' in conf
    for name, pool in (("fcgikit_workers", "workers"), ("fcgikit_cgi", "cgi")):
        upstream = block(conf, f"upstream {name}")
        lines = [line.strip() for line in upstream.splitlines()[1:-1]]
        assert lines == ["server 127.0.0.1:1 down;",
                         f'balancer_by_lua_block {{ require("fcgikit_edge").balance("{pool}") }}',
                         "keepalive 8;"]


def test_locations_pass_with_kept_connections_and_idempotent_retries_only():
    conf = render_nginx_conf(services())
    root = block(conf, "location / ")
    cgi = block(conf, "location /cgi-bin/ ")
    assert "fastcgi_pass fcgikit_workers;" in root
    assert "fastcgi_pass fcgikit_cgi;" in cgi
    for location in (root, cgi):
        assert "fastcgi_keep_conn on;" in location
        assert "fastcgi_next_upstream error timeout;" in location
        assert "non_idempotent" not in location


def test_limits_and_timeouts_come_from_the_spec():
    conf = render_nginx_conf(services(client_max_body_size="25m", connect_timeout=0.3))
    assert "client_max_body_size 25m;" in conf
    root = block(conf, "location / ")
    assert "fastcgi_connect_timeout 300ms;" in root
    assert "fastcgi_read_timeout 20s;" in root  # the worker timeout: nginx's 504 comes first
    assert "fastcgi_read_timeout 12s;" in block(conf, "location /cgi-bin/ ")  # after the gateway's own 504


def test_a_request_goes_to_another_server_only_within_the_connect_window():
    # A read timeout (at the request timeout) or a worker killed as stuck (later still)
    # happens after the window: never replayed. A refused or timed-out connect is inside it.
    conf = render_nginx_conf(services(connect_timeout=2))
    assert "fastcgi_next_upstream_timeout 2500ms;" in block(conf, "location / ")
    conf = render_nginx_conf(services(connect_timeout=0.5))
    assert "fastcgi_next_upstream_timeout 1000ms;" in block(conf, "location / ")
    assert "fastcgi_connect_timeout 500ms;" in block(conf, "location / ")
    short = Services(nginx=NginxService(connect_timeout=5), workers=WorkersService(app="m:app", timeout=3),
                     cgi=CgiService(timeout=1))
    conf = render_nginx_conf(short)
    assert "fastcgi_next_upstream_timeout 3000ms;" in block(conf, "location / ")  # never past the timeout
    assert "fastcgi_next_upstream_timeout 1000ms;" in block(conf, "location /cgi-bin/ ")


def test_nginx_gives_up_on_a_stuck_worker_before_its_manager_kills_it():
    # A kill first would end the request with a 502 (upstream closed); nginx's 504 must come
    # first. The CGI gateway answers its own 504, so there nginx waits longer.
    from fcgikit.deploy import commands

    spec = services()
    root = block(render_nginx_conf(spec), "location / ")
    read = int(root.split("fastcgi_read_timeout ")[1].split("s;")[0])
    argv = commands.worker_command(spec.workers)
    kill_after = float(argv[argv.index("--timeout") + 1])
    assert read == spec.workers.timeout and kill_after >= read + 2


def test_app_at_root_gets_the_whole_path_as_path_info_and_cgi_is_split_by_the_gateway():
    conf = render_nginx_conf(services())
    root = block(conf, "location / ")
    assert 'fastcgi_param SCRIPT_NAME "";' in root and "fastcgi_param PATH_INFO $uri;" in root
    cgi = block(conf, "location /cgi-bin/ ")
    assert "fastcgi_param DOCUMENT_ROOT /srv;" in cgi and "fastcgi_param SCRIPT_NAME $uri;" in cgi


def test_fallback_to_the_cgi_gateway_is_on_by_default_with_a_cgi_service():
    conf = render_nginx_conf(services())
    assert "error_page 502 504 = @fcgikit_fallback;" in block(conf, "location / ")
    fallback = block(conf, "location @fcgikit_fallback ")
    assert "fastcgi_pass fcgikit_cgi;" in fallback
    assert "fastcgi_param FCGIKIT_FALLBACK 1;" in fallback
    assert 'fastcgi_param SCRIPT_NAME "";' in fallback and "fastcgi_param PATH_INFO $uri;" in fallback
    assert 'access_by_lua_block { require("fcgikit_edge").fallback(1.0) }' in fallback  # connect 0.5 s + 0.5
    assert "error_page" not in block(conf, "location /cgi-bin/ ")


def test_fallback_off_by_choice_or_without_a_cgi_service_or_for_a_program():
    off = Services(workers=WorkersService(app="m:app", fallback="none"), cgi=CgiService())
    program = Services(workers=WorkersService(program=["/usr/bin/php-cgi"]), cgi=CgiService())
    no_cgi = Services(workers=WorkersService(app="m:app"))
    for spec in (off, program, no_cgi):
        conf = render_nginx_conf(spec)
        assert "error_page" not in conf and "@fcgikit_fallback" not in conf


def test_fallback_cgi_without_what_it_needs_is_refused_with_its_path():
    with pytest.raises(pydantic.ValidationError, match="needs a cgi service"):
        Services(workers=WorkersService(app="m:app", fallback="cgi"))
    with pytest.raises(pydantic.ValidationError, match="runs a WSGI app"):
        Services(workers=WorkersService(program=["/x"], fallback="cgi"), cgi=CgiService())


def test_backends_list_round_trips_with_a_version_of_its_content():
    pools = {"workers": [("172.18.0.3:9000", "p-workers-1"), ("10.0.0.2:9101", "p-workers-2")],
             "cgi": [("172.18.0.4:9000", "p-cgi-1")]}
    text = render_backends(pools)
    assert text.splitlines()[1:] == ["cgi 172.18.0.4:9000 p-cgi-1", "workers 172.18.0.3:9000 p-workers-1",
                                     "workers 10.0.0.2:9101 p-workers-2"]
    assert parse_backends(text) == {"cgi": pools["cgi"], "workers": pools["workers"]}
    assert backends_version(text) == render_backends(pools).split()[1] != backends_version(render_backends({}))
    assert parse_backends(None) is None and parse_backends("garbage") is None


def test_without_cgi_service_there_is_no_cgi_location():
    no_cgi = Services(workers=WorkersService(app="m:app"))
    conf = render_nginx_conf(no_cgi)
    assert "/cgi-bin/" not in conf and "fcgikit_cgi" not in conf


def test_rendering_is_deterministic_and_braces_balance():
    first = render_nginx_conf(services())
    assert first == render_nginx_conf(services())
    assert first.count("{") == first.count("}")


def test_the_compose_config_names_the_services_for_nginx_to_resolve_at_start():
    conf = render_compose_nginx_conf()
    assert "server workers:9000 " in block(conf, "upstream fcgikit_workers")
    assert "server cgi:9000 " in block(conf, "upstream fcgikit_cgi")
    assert "down;" not in conf


def test_the_image_config_for_compose_is_the_rendered_one():
    # images/nginx/nginx.conf is checked in for `docker build`; it must not drift from the renderer.
    assert IMAGE_CONF.read_text() == render_compose_nginx_conf(), (
        "regenerate: python3 -c 'from fcgikit.deploy.nginxconf import render_compose_nginx_conf as r; "
        "open(\"images/nginx/nginx.conf\", \"w\").write(r())'"
    )


def test_every_fastcgi_location_neutralises_httpoxy():
    # A client's `Proxy:` header must not reach an app as HTTP_PROXY (httpoxy), in the
    # config `up` renders and in the one baked into the image for compose.
    for conf in (render_nginx_conf(services()), render_compose_nginx_conf()):
        for opening in ("location / ", "location /cgi-bin/ "):
            assert 'fastcgi_param HTTP_PROXY "";' in block(conf, opening)


def test_nginx_runs_unprivileged_on_a_high_port_with_a_health_server():
    for conf in (render_nginx_conf(services()), render_compose_nginx_conf()):
        assert "\nuser " not in conf  # the master is www-data already: `user` needs root
        assert "pid /run/nginx/nginx.pid;" in conf
        assert conf.count("listen 8080;") == 2
        health = block(conf, "server {\n        listen 8080;\n        server_name fcgikit-health;")
        assert 'location = /health {\n            return 200 "ok\\n";' in health
        # The app's server comes first: it is the default for every other Host.
        assert conf.index("location / {\n            fastcgi_pass") < conf.index("server_name fcgikit-health")


def test_a_php_program_gets_its_script_file_and_redirect_status_without_kept_connections():
    """workers.root: php-cgi needs SCRIPT_FILENAME (else 404 "No input file specified") and
    REDIRECT_STATUS (cgi.force_redirect); it serves one connection at a time, so none is kept."""
    php = Services(workers=WorkersService(program=["/usr/bin/php-cgi"], root="public"), cgi=CgiService())
    root = block(render_nginx_conf(php), "location / ")
    lines = [line.strip() for line in root.splitlines()[1:-1]]
    assert lines[:4] == ["root /srv/app/public;", "fastcgi_index index.php;",
                         r"fastcgi_split_path_info ^(.+?\.php)(/.*)$;", "fastcgi_pass fcgikit_workers;"]
    for param in ("SCRIPT_FILENAME $document_root$fastcgi_script_name", "SCRIPT_NAME $fastcgi_script_name",
                  "PATH_INFO $fastcgi_path_info", "DOCUMENT_ROOT $document_root", "REDIRECT_STATUS 200"):
        assert f"fastcgi_param {param};" in lines
    assert "fastcgi_keep_conn on;" not in root and "error_page" not in root
    names = [line.split()[1] for line in lines if line.startswith("fastcgi_param ")]
    assert len(names) == len(set(names))
    # the CGI gateway's location is unchanged; any exec'd program (libfcgi's accept loop stays on
    # a kept connection as php-cgi does) gets no kept connections, fcgikit's own worker does
    assert "fastcgi_keep_conn on;" in block(render_nginx_conf(php), "location /cgi-bin/ ")
    other = Services(workers=WorkersService(program=["/usr/bin/hello_fcgi"]))
    assert "fastcgi_keep_conn on;" not in block(render_nginx_conf(other), "location / ")
    wsgi = Services(workers=WorkersService(app="hello_wsgi:app"))
    assert "fastcgi_keep_conn on;" in block(render_nginx_conf(wsgi), "location / ")
    assert "SCRIPT_FILENAME" not in render_nginx_conf(other)
    plain = Services(workers=WorkersService(program=["x"], root="/var/www", index="start.cgi"))
    assert r"fastcgi_split_path_info ^(.+?\.cgi)(/.*)$;" in render_nginx_conf(plain)
    assert "fastcgi_index start.cgi;" in render_nginx_conf(plain) and "root /var/www;" in render_nginx_conf(plain)


def test_by_default_each_nginx_worker_keeps_64_idle_connections_per_upstream():
    """The former default, 16, was below 64 concurrent requests: nginx closed most upstream
    connections after their answer and opened new ones (1.23x-1.51x req/s with 64, docs/bench.md)."""
    from fcgikit.deploy.spec import load_stack_spec

    example = load_stack_spec(Path(__file__).resolve().parents[2] / "deploy" / "fcgikit.yaml").services
    default = Services(workers=WorkersService(app="hello_wsgi:app"), cgi=CgiService())
    for conf in (render_nginx_conf(default), render_nginx_conf(example), IMAGE_CONF.read_text()):
        for name in ("fcgikit_workers", "fcgikit_cgi"):
            upstream = block(conf, f"upstream {name}")
            assert [line.strip() for line in upstream.splitlines() if "keepalive" in line] == ["keepalive 64;"]
    assert "keepalive 200;" in block(render_nginx_conf(services(keepalive=200)), "upstream fcgikit_workers")
