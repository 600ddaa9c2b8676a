"""Respawn backoff, crash-loop verdicts, max-requests jitter: pure decisions."""

import random
import signal

import pytest

from fcgikit.spawn.policy import (
    BACKOFF_MAX,
    EXIT_APP_LOAD_ERROR,
    IDLE_SILENCE_MIN,
    BootFailures,
    SpawnRate,
    describe_exit,
    exit_code,
    hung_reason,
    jittered_max_requests,
    respawn_delay,
)


def test_backoff_doubles_from_a_tenth_of_a_second_and_is_capped():
    assert [respawn_delay(n) for n in range(5)] == [0.0, 0.1, 0.2, 0.4, 0.8]
    assert respawn_delay(30) == BACKOFF_MAX == 5.0


def test_jitter_stays_within_a_tenth_above_the_limit():
    rng = random.Random(7)
    values = {jittered_max_requests(1000, rng) for _ in range(2000)}
    assert min(values) >= 1000 and max(values) <= 1100
    assert len(values) > 50  # really spread, not one value


def test_jitter_keeps_zero_meaning_never_and_small_limits_exact():
    assert jittered_max_requests(0) == 0
    assert {jittered_max_requests(5) for _ in range(50)} == {5}


def test_exit_descriptions():
    assert describe_exit(1 << 8) == "exited with status 1"
    assert describe_exit(signal.SIGKILL) == "killed by SIGKILL"
    assert exit_code(3 << 8) == 3 and exit_code(signal.SIGTERM) is None


def test_repeated_boot_deaths_give_up_with_the_reason():
    failures = BootFailures(limit=3, boot_period=1.0)
    assert failures.child_exited(10.0, 10.1, "exited with status 1", 1) is None
    assert failures.child_exited(10.2, 10.3, "exited with status 1", 1) is None
    reason = failures.child_exited(10.4, 10.5, "exited with status 1", 1)
    assert "3 in a row" in reason and "exited with status 1" in reason


def test_backoff_grows_with_each_boot_death():
    failures = BootFailures()
    failures.child_exited(0.0, 0.05, "exited with status 1", 1)
    failures.child_exited(0.1, 0.2, "exited with status 1", 1)
    assert failures.next_spawn_at() == 0.2 + respawn_delay(2)


def test_a_child_dying_after_it_booted_is_not_a_boot_failure():
    failures = BootFailures(limit=1)
    assert failures.child_exited(0.0, 60.0, "killed by SIGKILL", None) is None
    assert failures.count == 0 and failures.next_spawn_at() < 0


def test_app_load_error_stops_at_once():
    reason = BootFailures().child_exited(0.0, 0.1, "exited with status 4", EXIT_APP_LOAD_ERROR)
    assert reason.startswith("the app could not load")


def test_only_a_child_started_after_the_failures_resets_the_count():
    failures = BootFailures(limit=5, boot_period=1.0)
    failures.child_exited(5.0, 5.1, "exited with status 1", 1)
    failures.child_alive(started_at=0.0, now=10.0)  # an old healthy child proves nothing
    assert failures.count == 1
    failures.child_alive(started_at=6.0, now=6.5)  # too young yet
    assert failures.count == 1
    failures.child_alive(started_at=6.0, now=7.5)
    assert failures.count == 0


def test_a_request_running_past_the_timeout_is_hung():
    assert hung_reason(True, request_started=100.0, last_seen=100.0, heartbeats=5, now=130.5,
                       timeout=30) == "busy in one request for 30.5s"
    assert hung_reason(True, 100.0, 100.0, 5, now=129.0, timeout=30) is None
    assert hung_reason(True, 100.0, 100.0, 5, now=1e6, timeout=0) is None  # --timeout off


def test_a_heartbeating_worker_silent_while_idle_is_hung():
    assert hung_reason(False, 0.0, last_seen=100.0, heartbeats=3, now=131.0, timeout=30).startswith(
        "no heartbeat for 31.0s")
    assert hung_reason(False, 0.0, last_seen=100.0, heartbeats=3, now=120.0, timeout=30) is None


def test_idle_silence_is_never_judged_on_less_than_the_minimum():
    # --timeout 1 must not kill an idle worker between two heartbeats a second apart.
    assert hung_reason(False, 0.0, 100.0, 3, now=100.0 + IDLE_SILENCE_MIN - 0.5, timeout=1) is None
    assert hung_reason(False, 0.0, 100.0, 3, now=100.0 + IDLE_SILENCE_MIN + 0.5, timeout=1) is not None


def test_a_worker_that_never_heartbeats_is_judged_on_requests_only():
    assert hung_reason(False, 0.0, last_seen=0.0, heartbeats=0, now=1e6, timeout=30) is None


def test_a_short_lived_child_that_served_requests_booted_fine():
    failures = BootFailures(limit=2)
    failures.child_exited(0.0, 0.1, "exited with status 1", 1)
    assert failures.child_exited(1.0, 1.2, "exited with status 0", 0, served=1) is None
    assert failures.count == 0  # --max-requests 1 under load is not a crash loop


def test_an_exec_program_exiting_0_left_on_its_own_like_php_cgi():
    failures = BootFailures(limit=2)
    for start in range(10):  # php-cgi recycling every 0.1 s under load
        assert failures.child_exited(start, start + 0.1, "exited with status 0", 0, served=None) is None
    assert failures.count == 0


def test_an_exec_program_failing_at_boot_still_counts():
    failures = BootFailures(limit=2)
    failures.child_exited(0.0, 0.1, "exited with status 1", 1, served=None)
    assert failures.child_exited(0.2, 0.3, "killed by SIGSEGV", None, served=None) is not None


def test_a_python_worker_exiting_0_at_boot_without_serving_counts():
    failures = BootFailures(limit=1)
    assert failures.child_exited(0.0, 0.1, "exited with status 0", 0, served=0) is not None


def test_spawn_rate_allows_a_burst_then_one_second_later_more():
    rate = SpawnRate(limit=3)
    for moment in (10.0, 10.1, 10.2):
        assert rate.allow(moment)
        rate.record(moment)
    assert not rate.allow(10.5)
    assert rate.allow(11.05)  # the first fork left the one-second window


def test_a_just_started_child_is_never_judged_hung():
    # A heartbeat time of 0 (not written yet, or a torn read) was once taken for
    # "silent since the machine booted" and a healthy new child was killed.
    assert hung_reason(False, 0.0, last_seen=0.0, heartbeats=3, now=870.7, timeout=30,
                       child_started=866.0) is None
    assert hung_reason(True, request_started=0.0, last_seen=0.0, heartbeats=0, now=870.7, timeout=30,
                       child_started=866.0) is None
    # Times from before the child started (its slot's earlier owner) count from its start.
    assert hung_reason(False, 0.0, last_seen=100.0, heartbeats=3, now=870.7, timeout=30,
                       child_started=866.0) is None
    assert hung_reason(True, 100.0, 100.0, 3, now=870.7, timeout=30, child_started=866.0) is None
    # Its own silence still counts.
    assert hung_reason(False, 0.0, last_seen=867.0, heartbeats=3, now=900.0, timeout=30,
                       child_started=866.0).startswith("no heartbeat for 33.0s")


def test_once_the_pool_has_served_quick_deaths_back_off_but_never_give_up():
    # An exec'd program (it reports nothing) that a client can make die on every
    # request: after one child lived past its boot, it is respawned, never given up.
    failures = BootFailures(limit=5, boot_period=1.0)
    failures.child_alive(started_at=0.0, now=2.0)  # the first children sat idle, then traffic came
    for n in range(50):
        start = 3.0 + n * 0.2
        assert failures.child_exited(start, start + 0.1, "killed by SIGSEGV", None, served=None) is None
    assert failures.count == 50
    assert failures.next_spawn_at() - failures.last_failure_at == pytest.approx(BACKOFF_MAX)  # at the cap


def test_a_python_pool_that_served_once_is_never_given_up():
    failures = BootFailures(limit=2, boot_period=1.0)
    failures.child_exited(0.0, 0.1, "killed by SIGKILL", None, served=1)
    for n in range(10):
        assert failures.child_exited(1.0 + n, 1.1 + n, "exited with status 1", 1, served=0) is None


def test_a_child_that_lived_past_its_boot_proves_the_program_even_when_it_then_died():
    failures = BootFailures(limit=2, boot_period=1.0)
    assert failures.child_exited(0.0, 5.0, "exited with status 1", 1, served=None) is None
    for n in range(10):
        assert failures.child_exited(6.0 + n, 6.1 + n, "exited with status 1", 1, served=None) is None


def test_a_program_that_never_worked_is_still_given_up_on():
    failures = BootFailures(limit=5, boot_period=1.0)
    verdicts = [failures.child_exited(n * 0.2, n * 0.2 + 0.1, "exited with status 1", 1, served=None)
                for n in range(5)]
    assert verdicts[:4] == [None] * 4 and verdicts[4].startswith("children die at boot: 5 in a row")
    # ... and the app load error gives up at once, proven or not.
    failures.proven = True
    assert failures.child_exited(0.0, 0.1, "exited with status 4", EXIT_APP_LOAD_ERROR) is not None
