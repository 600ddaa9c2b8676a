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


def test_every_comparison_names_real_scenarios():
    names = {s.name for s in SCENARIOS}
    for comparison in COMPARISONS:
        assert {comparison.ours, comparison.peer} <= names


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

    raw = ('process 1:"python3 -m fcgikit.serve";serve (core.py:10);send (connection.py:5) 3\n'
           'process 2:"python3 -m fcgikit.serve";serve (core.py:12);send (connection.py:7) 2\n'
           'serve (core.py:10);decode (protocol.py:1) 5\n')
    own, inclusive, total = summarise_stacks(raw)
    assert total == 10
    assert own == {"send (connection.py)": 5, "decode (protocol.py)": 5}
    assert inclusive["serve (core.py)"] == 10
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
