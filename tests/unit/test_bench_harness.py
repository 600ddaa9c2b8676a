"""The benchmark harness's pure parts: wrk script and output, nginx config, reports."""

import pytest

from bench import report, wrk
from bench.nginxconf import render_http_conf, render_server_conf
from bench.procfs import MemoryPeak, process_tree
from bench.scenarios import COMPARISONS, ECHO_64K, HELLO, SCENARIOS, select

WRK_STDOUT = """\
Running 1s test @ http://127.0.0.1:1234/
  2 threads and 16 connections
Requests/sec:  1000.00
BENCH_RESULT {"requests":1000,"duration_us":2000000,"bytes":150000,"connect_errors":1,"read_errors":2,\
"write_errors":3,"timeouts":4,"non_2xx_3xx":5,"p50_us":1500,"p90_us":2500,"p99_us":9000,"max_us":12000,"mean_us":1700.5}
"""


def test_wrk_result_line_is_parsed():
    result = wrk.parse_wrk_output(WRK_STDOUT)
    assert result.requests_per_s == 500.0
    assert result.socket_errors == 1 + 2 + 3 + 4
    assert result.non_2xx_3xx == 5
    assert (result.p50_us, result.p99_us) == (1500, 9000)


def test_wrk_output_without_result_line_is_an_error():
    with pytest.raises(ValueError, match="no result line"):
        wrk.parse_wrk_output("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_wrk_script_posts_the_body_only_when_asked():
    assert "wrk.method" not in wrk.render_script()
    post = wrk.render_script("POST", 65536)
    assert 'wrk.method = "POST"' in post and 'string.rep("x", 65536)' in post
    assert "done = function" in post


def test_wrk_command_uses_whole_seconds_and_a_generous_timeout():
    cmd = wrk.wrk_command("http://x/", "s.lua", connections=16, seconds=0)
    assert "-d1s" in cmd and "-c16" in cmd and "--timeout=10s" in cmd


def test_nginx_config_is_the_same_for_every_scenario_but_keep_conn():
    plain = render_server_conf("/www", keep_conn=False)
    kept = render_server_conf("/www", keep_conn=True)
    assert "fastcgi_keep_conn" not in plain
    assert kept.replace("fastcgi_keep_conn on;", "") == plain
    assert render_http_conf("127.0.0.1:1", False).replace("127.0.0.1:1", "127.0.0.1:2") == \
        render_http_conf("127.0.0.1:2", False)
    assert "keepalive 16;" in render_http_conf("127.0.0.1:1", True)


def test_nginx_config_sends_no_duplicate_params():
    for location in render_server_conf("/www", keep_conn=False).split("location")[1:]:
        names = [line.split()[1] for line in location.splitlines() if line.strip().startswith("fastcgi_param")]
        assert len(names) == len(set(names))


def test_process_tree_follows_descendants_only():
    parents = {1: 0, 10: 1, 11: 10, 12: 11, 20: 1, 21: 20}
    assert process_tree({10}, parents) == {10, 11, 12}
    assert process_tree({10, 99}, parents) == {10, 11, 12}  # 99 is gone


def test_memory_peak_keeps_the_manager_out_of_the_child_maximum():
    peak = MemoryPeak(manager_pid=1)
    peak.add_sample({1: 50, 2: 10, 3: 12})
    peak.add_sample({1: 40, 2: 20})
    assert (peak.total_bytes, peak.max_child_bytes, peak.max_processes) == (72, 20, 3)


def test_workload_check_names_what_is_wrong():
    assert HELLO.check(200, b"Hello, world!\n") is None
    assert "502" in HELLO.check(502, b"Bad Gateway")
    assert "expected" in HELLO.check(200, b"Hi")
    assert "65536" in ECHO_64K.check(200, b"x" * 10)


def test_select_takes_names_and_prefixes_and_refuses_unknown_ones():
    assert [s.name for s in select(SCENARIOS, ["flup"])] == ["flup-hello", "flup-post64k", "flup-1mib"]
    assert [s.name for s in select(SCENARIOS, ["nginx-return"])] == ["nginx-return"]
    with pytest.raises(ValueError, match="no scenario named nope"):
        select(SCENARIOS, ["nope"])


def test_every_comparison_names_real_scenarios_of_one_run():
    from bench.scenarios import BUILT_STACK_SCENARIOS

    processes, stacks = {s.name for s in SCENARIOS}, {s.name for s in BUILT_STACK_SCENARIOS}
    for comparison in COMPARISONS:
        assert {comparison.ours, comparison.peer} <= processes or {comparison.ours, comparison.peer} <= stacks


def fake_result(name, rps_by_conns, status="ok", child_rss=10 << 20):
    runs = [{"connections": c, "requests_per_s": rps, "p50_ms": 1.0, "p99_ms": 2.0, "non_2xx_3xx": 0,
             "socket_errors": 0} for c, rps in rps_by_conns.items()]
    return {"name": name, "title": name, "ours": True, "status": status, "reason": "" if status == "ok" else "why",
            "runs": runs, "peak_rss_bytes": 3 * child_rss, "max_child_rss_bytes": child_rss, "errors": 0}


def test_ratios_compare_ours_with_the_peer_against_the_target():
    results = [fake_result("serve-hello", {16: 3000, 64: 3000}), fake_result("flup-hello", {16: 1000, 64: 2000})]
    rows = [r for r in report.ratios(results, (16, 64)) if r["peer"] == "flup-hello"]
    assert [(r["connections"], r["ratio"], r["met"]) for r in rows] == [(16, 3.0, True), (64, 1.5, False)]


def test_cpu_ratio_says_how_many_of_our_requests_fit_in_the_peers_cpu_time():
    ours, peer = fake_result("serve-hello", {64: 3000}), fake_result("flup-hello", {64: 1000})
    ours["runs"][0]["cpu_ms_per_request"], peer["runs"][0]["cpu_ms_per_request"] = 0.05, 0.2
    row = next(r for r in report.ratios([ours, peer], (64,)) if r["peer"] == "flup-hello")
    assert row["cpu_ratio"] == 4.0
    assert "| 4.00x |" in report.ratios_text([row], None)


def test_a_skipped_peer_gives_no_ratio_and_is_a_problem():
    results = [fake_result("serve-hello", {64: 3000}), fake_result("uwsgi-hello", {}, status="skipped")]
    row = next(r for r in report.ratios(results, (64,)) if r["peer"] == "uwsgi-hello")
    assert row["ratio"] is None and row["met"] is None
    assert report.problems(results) == ["uwsgi-hello: skipped: why"]
    assert "SKIPPED: why" in report.results_table(results)


def test_memory_target_is_the_largest_serve_child():
    assert report.memory_check([fake_result("serve-hello", {64: 1}, child_rss=20 << 20)])["met"] is True
    assert report.memory_check([fake_result("serve-hello", {64: 1}, child_rss=30 << 20)])["met"] is False


def test_profile_stacks_are_summed_per_function_not_per_line():
    from bench.profile import summarise_stacks

    raw = ('process 1:"python3 -m fcgikit.serve";serve (loop.py:10);send (connection.py:5) 3\n'
           'process 2:"python3 -m fcgikit.serve";serve (loop.py:12);send (connection.py:7) 2\n'
           'serve (loop.py:10);decode (protocol.py:1) 5\n')
    own, inclusive, total = summarise_stacks(raw)
    assert total == 10
    assert own == {"send (connection.py)": 5, "decode (protocol.py)": 5}
    assert inclusive["serve (loop.py)"] == 10
    assert not any(name.startswith("process") for name in inclusive)


def test_slow_servers_get_longer_rounds_up_to_a_cap(tmp_path):
    from bench.runner import ROUND_CAP_S, LiveScenario, ScenarioResult
    from bench.scenarios import SCENARIOS

    live = LiveScenario(SCENARIOS[0], "http://x/", tmp_path / "s.lua", ScenarioResult("a", "a", False))
    live.warm_requests_per_s = 10_000.0
    assert live.round_seconds(64, 1) == 1
    live.warm_requests_per_s = 64.0
    assert live.round_seconds(16, 1) == 1 and live.round_seconds(64, 1) == min(2, ROUND_CAP_S)
    live.warm_requests_per_s = 5.0
    assert live.round_seconds(64, 1) == ROUND_CAP_S


def wrk_result(requests: int) -> wrk.WrkResult:
    return wrk.WrkResult(requests=requests, duration_us=1_000_000, bytes=0, connect_errors=0, read_errors=0,
                         write_errors=0, timeouts=0, non_2xx_3xx=0, p50_us=1, p90_us=1, p99_us=1, max_us=1,
                         mean_us=1.0)


@pytest.mark.parametrize("answers, expected_runs", [([0, 7], [(64, 1), (64, 5)]), ([3], [(64, 1)]), ([0, 0], [(64, 1), (64, 5)])])
def test_a_round_with_no_answer_is_measured_again_longer(tmp_path, answers, expected_runs):
    from bench.runner import LiveScenario, ScenarioResult

    scenario = next(s for s in SCENARIOS if s.name == "flup-1mib")
    live = LiveScenario(scenario, "http://127.0.0.1:1/big", tmp_path / "s.lua",
                        ScenarioResult(scenario.name, scenario.title, scenario.ours))
    runs = []

    def load(connections, seconds):
        runs.append((connections, seconds))
        return wrk_result(answers[len(runs) - 1])

    live.load = load
    live.measure(64, 1)
    assert runs == expected_runs
    assert [r.requests for r in live.rounds[64]] == [answers[-1]]  # only the last attempt counts


# -- issue 16: the peers users deploy instead (gunicorn, uWSGI's own protocol, php-fpm) --

def location_of(conf: str, path: str) -> str:
    start = conf.index(f"location {path} {{")
    return conf[start:conf.index("\n}", start)]


def test_gunicorn_is_proxied_with_upstream_keepalive_as_nginx_documents_it():
    conf = render_server_conf("/www", keep_conn=True, protocol="http")
    root = location_of(conf, "/")
    assert "proxy_pass http://fcgikit_bench_backend;" in root
    assert "proxy_http_version 1.1;" in root and 'proxy_set_header Connection "";' in root
    assert "fastcgi" not in conf and "proxy_max_temp_file_size 0;" in conf  # 1 MiB stays in memory
    assert "keepalive 16;" in render_http_conf("127.0.0.1:1", True)


def test_uwsgi_pass_gets_the_same_params_as_fastcgi_pass():
    def names(conf, directive):
        return [line.split()[1] for line in location_of(conf, "/").splitlines()
                if line.strip().startswith(directive)]

    fastcgi = names(render_server_conf("/www", False), "fastcgi_param")
    uwsgi_conf = render_server_conf("/www", False, protocol="uwsgi")
    assert names(uwsgi_conf, "uwsgi_param") == fastcgi
    assert "uwsgi_pass fcgikit_bench_backend;" in uwsgi_conf and "uwsgi_max_temp_file_size 0;" in uwsgi_conf
    with pytest.raises(ValueError, match="no keep-alive"):
        render_server_conf("/www", True, protocol="uwsgi")
    with pytest.raises(ValueError, match="unknown upstream protocol 'scgi'"):
        render_server_conf("/www", False, protocol="scgi")


def test_php_scripts_get_script_filename_and_redirect_status():
    php = location_of(render_server_conf("/www", False), "/php/")
    assert "SCRIPT_FILENAME    $document_root$fastcgi_script_name;" in php
    assert "REDIRECT_STATUS    200;" in php  # php-cgi's cgi.force_redirect; php-fpm ignores it


def test_every_scenario_is_passed_the_way_its_server_speaks():
    from bench.scenarios import PROCESSES

    by_name = {s.name: s for s in SCENARIOS}
    assert {by_name[n].server.protocol for n in ("gunicorn-sync-hello", "gunicorn-gthread-1mib")} == {"http"}
    assert by_name["uwsgi-native-hello"].server.protocol == "uwsgi" and by_name["uwsgi-hello"].server.protocol == "fastcgi"
    assert all(s.keep_conn for s in SCENARIOS if s.name.startswith("gunicorn"))
    assert not any(s.keep_conn for s in SCENARIOS if s.server.protocol == "uwsgi")
    for scenario in SCENARIOS:  # renders, or raises for a combination nginx cannot do
        render_server_conf("/www", scenario.keep_conn, scenario.server.protocol)
    sync = by_name["gunicorn-sync-hello"].server.command(8000, None)
    gthread = by_name["gunicorn-gthread-hello"].server.command(8000, None)
    assert sync[sync.index("--workers") + 1] == gthread[gthread.index("--workers") + 1] == str(PROCESSES)
    assert "--threads" in gthread and "--threads" not in sync


def test_php_fpm_runs_static_with_as_many_children_as_php_cgi_slots(tmp_path):
    from bench.scenarios import PHP_FPM, PROCESSES, SPAWN_PHP, Paths, php_fpm_config

    conf = php_fpm_config(9000)
    assert "pm = static" in conf and f"pm.max_children = {PROCESSES}" in conf and "listen = 127.0.0.1:9000" in conf
    assert "daemonize = no" in conf and "access.log" not in conf
    paths = Paths(work_dir=tmp_path)
    PHP_FPM.prepare_files(9000, paths)
    assert paths.php_fpm_conf(9000).read_text() == conf
    fpm = PHP_FPM.command(9000, paths)
    assert "-F" in fpm and fpm[fpm.index("-y") + 1] == str(paths.php_fpm_conf(9000))
    spawn = SPAWN_PHP.command(9000, paths)
    assert spawn[spawn.index("-F") + 1] == str(PROCESSES) and spawn[-2:] == ["--", "php-cgi"]


def test_the_issue_16_targets_are_compared():
    targets = {(c.ours, c.peer): c.target for c in COMPARISONS}
    assert targets[("serve-hello-keepconn", "gunicorn-sync-hello")] == 2.0
    assert targets[("serve-hello-keepconn", "uwsgi-native-hello")] == 1.3
    assert targets[("serve-hello", "uwsgi-native-hello")] == 1.0
    assert targets[("spawn-php-hello", "php-fpm-hello")] == 0.95


def test_quick_measures_the_brief_scenarios_at_the_highest_concurrency_only_unwarmed():
    from bench.runner import FULL, QUICK, concurrencies_for, warms_up

    by_name = {s.name: s for s in SCENARIOS}
    brief, old = by_name["gunicorn-sync-hello"], by_name["serve-hello"]
    assert concurrencies_for(brief, QUICK) == (64,) and not warms_up(brief, QUICK)
    assert concurrencies_for(old, QUICK) == (16, 64) and warms_up(old, QUICK)
    assert concurrencies_for(brief, FULL) == (16, 64) and warms_up(brief, FULL)


def test_a_concurrency_one_side_was_not_measured_at_gives_no_ratio_row():
    ours = dict(fake_result("serve-hello-keepconn", {16: 3000, 64: 3000}), concurrencies=[16, 64])
    peer = dict(fake_result("gunicorn-sync-hello", {64: 1000}), concurrencies=[64])
    rows = [r for r in report.ratios([ours, peer], (16, 64)) if r["peer"] == "gunicorn-sync-hello"]
    assert [(r["connections"], r["ratio"], r["met"]) for r in rows] == [(64, 3.0, True)]


def test_the_report_names_the_peers_versions():
    meta = {"mode": "quick", "started": "2026-12-05 10:00:00", "seconds": 1.0, "machine": "m", "warmup_s": 1,
            "measure_s": 1, "concurrencies": [64], "rounds": 1, "nginx": "1.22.1", "command": "c",
            "versions": {"gunicorn": "23.0.0", "php-fpm": "not installed"}}
    text = report.markdown_report(meta, [], [], None)
    assert "- versions: gunicorn 23.0.0, php-fpm not installed" in text


def test_peer_versions_say_not_installed_rather_than_nothing():
    from bench.cli import debian_version, peer_versions, python_version

    assert debian_version("no-such-package-fcgikit") == "" and python_version("no-such-dist-fcgikit") == ""
    versions = peer_versions()
    assert {"nginx", "gunicorn", "uWSGI", "php-fpm", "php-cgi", "flup"} <= set(versions)
    assert all(versions.values())


def test_the_results_table_shows_nginx_cpu_per_request_beside_the_servers():
    result = fake_result("serve-hello", {64: 3000})
    result["runs"][0].update(cpu_ms_per_request=0.05, nginx_cpu_ms_per_request=0.061)
    table = report.results_table([result, fake_result("uwsgi-hello", {}, status="skipped")])
    header, _, row, skipped = table.splitlines()[:4]
    assert "| server CPU ms/req | nginx CPU ms/req |" in header
    assert "| 0.050 | 0.061 |" in row
    assert header.count("|") == row.count("|") == skipped.count("|")


def test_the_recycling_php_scenario_differs_only_by_php_fcgi_max_requests(tmp_path):
    from bench.scenarios import SPAWN_PHP, SPAWN_PHP_RECYCLE_500, Paths

    paths = Paths(work_dir=tmp_path)
    assert SPAWN_PHP_RECYCLE_500.command(9000, paths) == ["env", "PHP_FCGI_MAX_REQUESTS=500",
                                                          *SPAWN_PHP.command(9000, paths)]


def test_upstream_keepalive_is_the_stacks_16_unless_a_scenario_says_otherwise():
    by_name = {s.name: s for s in SCENARIOS}
    assert by_name["serve-hello-keepconn"].keepalive == 16
    assert "keepalive 64;" in render_http_conf("127.0.0.1:1", True, by_name["serve-hello-keepconn-ka64"].keepalive)
    assert "keepalive" not in render_http_conf("127.0.0.1:1", False, 64)


def test_containers_baseline_measures_a_second_stack_under_its_own_names_against_the_edge_target():
    from bench.cli import main
    from bench.scenarios import STACK_SCENARIOS, stack_baseline

    scenarios, comparisons = stack_baseline()
    assert [s.name for s in scenarios] == [f"baseline-{s.name}" for s in STACK_SCENARIOS]
    hello = next(c for c in comparisons if c.ours == "stack-hello")
    assert (hello.peer, hello.target) == ("baseline-stack-hello", 0.95)  # issue 18: the Lua edge costs <= 5%
    assert main(["--containers-baseline", "http://127.0.0.1:1/"]) == 2  # needs --containers


def fcgikit_stack_conf() -> str:
    from fcgikit.deploy.nginxconf import render_nginx_conf
    from fcgikit.deploy.spec import Services, WorkersService

    services = Services(workers=WorkersService(app="hello_wsgi:app", processes=2, replicas=2))
    return render_nginx_conf(services)


def test_the_uwsgi_stacks_nginx_is_fcgikits_with_uwsgi_pass_and_the_same_params_and_timeouts():
    from bench.stacks import peer_nginx_conf

    ours = fcgikit_stack_conf()
    conf = peer_nginx_conf(ours, "uwsgi", "app:9000")
    assert "fastcgi" not in conf and "keep_conn" not in conf
    assert "uwsgi_pass fcgikit_workers;" in conf and "uwsgi_param PATH_INFO $uri;" in conf
    assert "uwsgi_read_timeout 30s;" in conf and "uwsgi_next_upstream error timeout;" in conf
    assert "server app:9000 max_fails=1 fail_timeout=2s;" in conf
    assert "access_log /dev/stdout;" in conf and "keepalive 64;" in conf and "worker_processes auto;" in conf
    assert "lua" not in conf  # a plain upstream, as uWSGI's users have
    # the rest is fcgikit's, line for line: the health server, limits, timeouts
    tail = ours[ours.index("    server {"):]
    assert tail.replace("fastcgi_", "uwsgi_").replace("            uwsgi_keep_conn on;\n", "") in conf


def test_the_static_edge_is_fcgikits_conf_without_the_lua_balancer():
    from bench.stacks import static_edge_conf

    ours = fcgikit_stack_conf()
    conf = static_edge_conf(ours, "172.18.0.2:9000")
    assert "balancer_by_lua" in ours and "lua" not in conf and "load_module" not in conf
    assert "    upstream fcgikit_workers {\n        server 172.18.0.2:9000 max_fails=1 fail_timeout=2s;\n" \
           "        keepalive 64;\n    }\n" in conf
    assert ours[ours.index("    server {"):] in conf  # the server blocks unchanged
    assert "        keepalive 16;\n" in static_edge_conf(ours, "172.18.0.2:9000", 16)


def test_the_gunicorn_stacks_nginx_is_fcgikits_with_proxy_pass_and_upstream_keepalive():
    from bench.stacks import peer_nginx_conf

    conf = peer_nginx_conf(fcgikit_stack_conf(), "http", "app:9000")
    assert "fastcgi" not in conf
    assert "proxy_pass http://fcgikit_workers;" in conf and "proxy_http_version 1.1;" in conf
    assert 'proxy_set_header Connection "";' in conf and "proxy_read_timeout 30s;" in conf
    assert "proxy_next_upstream_tries 3;" in conf and "keepalive 64;" in conf


def test_the_php_stacks_nginx_is_fcgikits_with_the_script_named_for_php():
    from bench.stacks import peer_nginx_conf

    conf = peer_nginx_conf(fcgikit_stack_conf(), "php", "app:9000")
    assert "fastcgi_pass fcgikit_workers;" in conf and "keep_conn" not in conf
    assert "fastcgi_param SCRIPT_FILENAME /srv/www$fastcgi_script_name;" in conf
    assert "fastcgi_param REDIRECT_STATUS 200;" in conf and "fastcgi_param SCRIPT_NAME $fastcgi_script_name;" in conf
    assert "PATH_INFO" not in conf


def test_built_stack_scenarios_and_their_targets():
    from bench.scenarios import BUILT_STACK_SCENARIOS

    names = {s.name for s in BUILT_STACK_SCENARIOS}
    assert {s.server.stack for s in BUILT_STACK_SCENARIOS} == {"fcgikit", "gunicorn", "uwsgi", "fcgikit-static", "fcgikit-static-ka16",
                                                               "php-fcgikit", "php-fpm", "php-fcgikit-children"}
    assert [s.name for s in BUILT_STACK_SCENARIOS if s.ours] == [
        "stack-fcgikit-hello", "stack-fcgikit-post64k", "stack-fcgikit-1mib", "stack-fcgikit-static-hello",
        "stack-fcgikit-static-ka16-hello", "stack-php-fcgikit-hello", "stack-php-fcgikit-children-hello"]
    targets = {(c.ours, c.peer): c.target for c in COMPARISONS if c.ours in names}
    assert targets[("stack-fcgikit-hello", "stack-gunicorn-hello")] == 2.0
    assert targets[("stack-fcgikit-hello", "stack-uwsgi-hello")] == 1.2
    assert targets[("stack-php-fcgikit-hello", "stack-php-fpm-hello")] == 0.95
    assert targets[("stack-php-fcgikit-children-hello", "stack-php-fpm-hello")] is None
    assert targets[("stack-fcgikit-hello", "stack-fcgikit-static-hello")] == 0.95
    assert all(c.peer in names for c in COMPARISONS if c.ours in names)


# -- wrk itself hanging (once in CI: a 1 s run still going after 61 s) --

FAKE_WRK = """#!/bin/sh
# Stands in for wrk: hangs while the marker file is absent (and creates it), answers afterwards.
if [ ! -e "{marker}" ]; then : > "{marker}"; exec sleep 60; fi
echo 'BENCH_RESULT {{"requests":5,"duration_us":1000000,"bytes":1,"connect_errors":0,"read_errors":0,\
"write_errors":0,"timeouts":0,"non_2xx_3xx":0,"p50_us":1,"p90_us":1,"p99_us":1,"max_us":1,"mean_us":1.0}}'
"""


@pytest.fixture
def hanging_wrk(tmp_path, monkeypatch):
    """A `wrk` first on PATH that hangs on its first run only; hang detection after ~2 s."""
    bin_dir, marker = tmp_path / "bin", tmp_path / "hung once"
    bin_dir.mkdir()
    fake = bin_dir / "wrk"
    fake.write_text(FAKE_WRK.format(marker=marker))
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    monkeypatch.setattr(wrk, "REQUEST_TIMEOUT_S", 1)
    monkeypatch.setattr(wrk, "HANG_SLACK_S", 0)
    return marker


def test_a_hung_wrk_is_killed_and_said_with_its_threads_states(hanging_wrk, tmp_path):
    import time

    started = time.monotonic()
    with pytest.raises(wrk.WrkHung, match=r"still running 2 s .* killed\. thread \d+: state S"):
        wrk.run_wrk("http://127.0.0.1:1/", str(tmp_path / "s.lua"), connections=1, seconds=1)
    assert time.monotonic() - started < 10  # not the fake's 60 s sleep
    assert wrk.run_wrk("http://127.0.0.1:1/", str(tmp_path / "s.lua"), connections=1, seconds=1).requests == 5


def test_a_round_whose_wrk_hung_is_run_again_and_noted_in_the_report(hanging_wrk, tmp_path):
    from bench.runner import LiveScenario, ScenarioResult

    scenario = SCENARIOS[0]
    result = ScenarioResult(scenario.name, scenario.title, scenario.ours)
    live = LiveScenario(scenario, "http://127.0.0.1:1/", tmp_path / "s.lua", result)
    live.measure(16, 1)
    assert [r.requests for r in live.rounds[16]] == [5]
    assert len(result.notes) == 1 and "wrk hung at 16 connections" in result.notes[0]
    live.finish()
    row = dict(__import__("dataclasses").asdict(result), errors=result.errors)
    assert report.problems([row]) == []  # handled: not a problem of the run
    meta = {"mode": "quick", "started": "now", "seconds": 1, "machine": "m", "warmup_s": 0, "measure_s": 1,
            "concurrencies": [16], "rounds": 1, "nginx": "x", "command": "bench"}
    assert "wrk hung at 16 connections" in report.markdown_report(meta, [row], [], None)


# -- the host's connection-tracking table (a CI run's php-fpm round failed with connects timing out) --

STAT_HEADER = ("entries  clashres found new invalid ignore delete chainlength insert insert_failed drop "
               "early_drop icmp_error  expect_new expect_create expect_delete search_restart")


def test_conntrack_reads_the_table_and_sums_the_drops_of_every_cpu(tmp_path, monkeypatch):
    from bench import procfs

    (tmp_path / "nf_conntrack_count").write_text("199594\n")
    (tmp_path / "nf_conntrack_max").write_text("262144\n")
    stat = tmp_path / "stat"
    stat.write_text(f"{STAT_HEADER}\n" + "".join(
        f"00030bea  00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 {drop} "
        "00000000 00000000  00000000 00000000 00000000 00000000\n" for drop in ("00000042", "0000001f")))
    monkeypatch.setattr(procfs, "CONNTRACK_DIR", str(tmp_path))
    monkeypatch.setattr(procfs, "CONNTRACK_STAT", str(stat))
    assert procfs.conntrack() == procfs.Conntrack(count=199594, limit=262144, drops=0x42 + 0x1F)
    monkeypatch.setattr(procfs, "CONNTRACK_DIR", str(tmp_path / "absent"))
    assert procfs.conntrack() is None  # no netfilter connection tracking on this host


def test_a_run_during_which_the_host_dropped_connections_says_why_in_notes_and_problems(hanging_wrk, tmp_path,
                                                                                        monkeypatch):
    from bench import runner
    from bench.procfs import Conntrack

    hanging_wrk.write_text("")  # the fake wrk answers at once
    tables = iter([Conntrack(100, 1000, 7), Conntrack(1000, 1000, 19)])  # before and after the run
    monkeypatch.setattr(runner, "conntrack", lambda: next(tables))
    scenario = SCENARIOS[0]
    result = runner.ScenarioResult(scenario.name, scenario.title, scenario.ours)
    live = runner.LiveScenario(scenario, "http://127.0.0.1:1/", tmp_path / "s.lua", result)
    live.measure(64, 1)
    assert len(result.notes) == 1
    assert "connection-tracking table was full during the run at 64 connections" in result.notes[0]
    assert "dropped 12 packets" in result.notes[0] and "nf_conntrack_max = 1000" in result.notes[0]
    live.finish()
    row = dict(__import__("dataclasses").asdict(result), errors=3)  # as the failed requests would count
    assert "dropped 12 packets" in report.problems([row])[0]


@pytest.mark.parametrize("counts, sleeps", [([700], 0), ([800, 700, 600, 500], 3), ([800] * 10, 5)])
def test_a_full_table_is_waited_for_until_half_empty_or_the_limit(monkeypatch, counts, sleeps):
    from bench import runner
    from bench.procfs import Conntrack

    tables = iter([Conntrack(count, 1000, 0) for count in counts])
    monkeypatch.setattr(runner, "conntrack", lambda: next(tables))
    clock = [0.0]
    monkeypatch.setattr(runner.time, "sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    monkeypatch.setattr(runner.time, "monotonic", lambda: clock[0])
    runner.wait_for_conntrack_room("x", limit_s=5)
    assert clock[0] == sleeps
