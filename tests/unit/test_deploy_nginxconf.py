"""nginx.conf rendering is pure: upstreams from the addresses given, limits from the spec."""

from pathlib import Path

from fcgikit.deploy.nginxconf import render_compose_nginx_conf, render_nginx_conf
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


def test_upstreams_list_every_address_with_keepalive():
    conf = render_nginx_conf(services(keepalive=8), ["a-workers-1:9000", "a-workers-2:9000"], ["a-cgi-1:9000"])
    workers = block(conf, "upstream fcgikit_workers")
    assert "server a-workers-1:9000 " in workers and "server a-workers-2:9000 " in workers
    assert "keepalive 8;" in workers
    assert "server a-cgi-1:9000 " in block(conf, "upstream fcgikit_cgi")


def test_locations_pass_with_kept_connections_and_idempotent_retries_only():
    conf = render_nginx_conf(services(), ["w:9000"], ["c:9000"])
    root = block(conf, "location / ")
    cgi = block(conf, "location /cgi-bin/ ")
    assert "fastcgi_pass fcgikit_workers;" in root
    assert "fastcgi_pass fcgikit_cgi;" in cgi
    for location in (root, cgi):
        assert "fastcgi_keep_conn on;" in location
        assert "fastcgi_next_upstream error timeout;" in location
        assert "non_idempotent" not in location


def test_limits_and_timeouts_come_from_the_spec():
    conf = render_nginx_conf(services(client_max_body_size="25m", connect_timeout=3), ["w:9000"], ["c:9000"])
    assert "client_max_body_size 25m;" in conf
    root = block(conf, "location / ")
    assert "fastcgi_connect_timeout 3s;" in root
    assert "fastcgi_read_timeout 20s;" in root  # the worker timeout: nginx's 504 comes first
    assert "fastcgi_read_timeout 12s;" in block(conf, "location /cgi-bin/ ")  # after the gateway's own 504


def test_a_request_goes_to_another_server_only_within_the_connect_window():
    # A read timeout (at the request timeout) or a worker killed as stuck (later still)
    # happens after the window: never replayed. A refused or timed-out connect is inside it.
    conf = render_nginx_conf(services(connect_timeout=2), ["w:9000"], ["c:9000"])
    assert "fastcgi_next_upstream_timeout 2500ms;" in block(conf, "location / ")
    short = Services(nginx=NginxService(connect_timeout=5), workers=WorkersService(app="m:app", timeout=3),
                     cgi=CgiService(timeout=1))
    conf = render_nginx_conf(short, ["w:9000"], ["c:9000"])
    assert "fastcgi_next_upstream_timeout 3000ms;" in block(conf, "location / ")  # never past the timeout
    assert "fastcgi_next_upstream_timeout 1000ms;" in block(conf, "location /cgi-bin/ ")


def test_nginx_gives_up_on_a_stuck_worker_before_its_manager_kills_it():
    # A kill first would end the request with a 502 (upstream closed); nginx's 504 must come
    # first. The CGI gateway answers its own 504, so there nginx waits longer.
    from fcgikit.deploy import commands

    spec = services()
    root = block(render_nginx_conf(spec, ["w:9000"], ["c:9000"]), "location / ")
    read = int(root.split("fastcgi_read_timeout ")[1].split("s;")[0])
    argv = commands.worker_command(spec.workers)
    kill_after = float(argv[argv.index("--timeout") + 1])
    assert read == spec.workers.timeout and kill_after >= read + 2


def test_app_at_root_gets_the_whole_path_as_path_info_and_cgi_is_split_by_the_gateway():
    conf = render_nginx_conf(services(), ["w:9000"], ["c:9000"])
    root = block(conf, "location / ")
    assert 'fastcgi_param SCRIPT_NAME "";' in root and "fastcgi_param PATH_INFO $uri;" in root
    cgi = block(conf, "location /cgi-bin/ ")
    assert "fastcgi_param DOCUMENT_ROOT /srv;" in cgi and "fastcgi_param SCRIPT_NAME $uri;" in cgi


def test_no_containers_means_503_not_an_empty_upstream():
    conf = render_nginx_conf(services(), [], [])
    assert "upstream" not in conf
    assert "return 503;" in block(conf, "location / ")
    assert "return 503;" in block(conf, "location /cgi-bin/ ")


def test_without_cgi_service_there_is_no_cgi_location():
    no_cgi = Services(workers=WorkersService(app="m:app"))
    conf = render_nginx_conf(no_cgi, ["w:9000"], [])
    assert "/cgi-bin/" not in conf and "fcgikit_cgi" not in conf


def test_rendering_is_deterministic_and_braces_balance():
    first = render_nginx_conf(services(), ["w:9000"], ["c:9000"])
    assert first == render_nginx_conf(services(), ["w:9000"], ["c:9000"])
    assert first.count("{") == first.count("}")


def test_the_image_config_for_compose_is_the_rendered_one():
    # images/nginx/nginx.conf is checked in for `docker build`; it must not drift from the renderer.
    assert IMAGE_CONF.read_text() == render_compose_nginx_conf(), (
        "regenerate: python3 -c 'from fcgikit.deploy.nginxconf import render_compose_nginx_conf as r; "
        "open(\"images/nginx/nginx.conf\", \"w\").write(r())'"
    )


def test_every_fastcgi_location_neutralises_httpoxy():
    # A client's `Proxy:` header must not reach an app as HTTP_PROXY (httpoxy), in the
    # config `up` renders and in the one baked into the image for compose.
    for conf in (render_nginx_conf(services(), ["w:9000"], ["c:9000"]), render_compose_nginx_conf()):
        for opening in ("location / ", "location /cgi-bin/ "):
            assert 'fastcgi_param HTTP_PROXY "";' in block(conf, opening)


def test_nginx_runs_unprivileged_on_a_high_port_with_a_health_server():
    for conf in (render_nginx_conf(services(), ["w:9000"], ["c:9000"]), render_compose_nginx_conf()):
        assert "\nuser " not in conf  # the master is www-data already: `user` needs root
        assert "pid /run/nginx/nginx.pid;" in conf
        assert conf.count("listen 8080;") == 2
        health = block(conf, "server {\n        listen 8080;\n        server_name fcgikit-health;")
        assert 'location = /health {\n            return 200 "ok\\n";' in health
        # The app's server comes first: it is the default for every other Host.
        assert conf.index("location / {\n            fastcgi_pass") < conf.index("server_name fcgikit-health")
