"""The resident manager: bind once, pre-fork, supervise (gunicorn's arbiter shape).

Signal handlers only queue the signal; set_wakeup_fd wakes the main loop, which
dispatches to handle_<signal>, reaps every child that ended (unknown ones too:
as PID 1 in a container it inherits orphans), kills children stuck in one
request, keeps the pool at its size, and writes the status report.
"""

import logging
import os
import select
import signal
import socket
import time
from dataclasses import dataclass

from ..runtime.handoff import drain, send_connections
from ..runtime.orphans import become_subreaper, kill_children_except
from . import report as status_report
from .child import MANAGER_SIGNALS, run_child
from .options import PoolConfig
from .policy import (
    EXIT_APP_LOAD_ERROR,
    BootFailures,
    SpawnRate,
    describe_exit,
    exit_code,
    hung_reason,
    jittered_max_requests,
    respawn_delay,
)
from .scoreboard import SLOT_BUSY, Scoreboard, Slot, SlotSnapshot
from .sockets import bound_description, remove_unix_socket

log = logging.getLogger("fcgikit.spawn")

LOOP_INTERVAL = 0.25  # seconds between passes when nothing wakes the loop
STATUS_INTERVAL = 1.0
FAST_STOP_GRACE = 2.0  # after SIGINT/SIGQUIT, children get this long before SIGKILL
EXIT_CRASH_LOOP = 1
# Handed-over connections wait this long for a child to take them (the one that
# replaces the last child is being forked); then they are closed as before.
HOLD_SECONDS = 10.0

SIGNAL_METHODS: dict[int, str] = {
    signal.SIGHUP: "handle_hup",
    signal.SIGTERM: "handle_term",
    signal.SIGINT: "handle_int",
    signal.SIGQUIT: "handle_quit",
    signal.SIGTTIN: "handle_ttin",
    signal.SIGTTOU: "handle_ttou",
    signal.SIGCHLD: "handle_chld",
}


@dataclass
class ChildRecord:
    pid: int
    slot: Slot
    generation: int
    started: float  # time.monotonic(), shared by every process on Linux
    started_wall: float
    retire_deadline: float | None = None
    killed: bool = False  # we sent SIGKILL (timeout or grace over)
    slow_counted: int = 0  # request number last counted as slow
    handoff: socket.socket | None = None  # our end of its handoff pair (Python workers only)
    said_last: bool = False  # it sent its last connections: it is leaving, give it none

    @property
    def takes_connections(self) -> bool:
        return self.handoff is not None and not self.said_last and not self.retiring

    @property
    def retiring(self) -> bool:
        return self.retire_deadline is not None


def round_robin_shares(items: list, takers: int, turn: int) -> list[list]:
    """`items` dealt one by one to `takers` shares, the first card to share
    `turn % takers`: a single connection goes to a different child each time."""
    shares: list[list] = [[] for _ in range(takers)]
    for n, item in enumerate(items):
        shares[(n + turn) % takers].append(item)
    return shares


SPREAD_BUSY_LIMIT = 0.1  # a child on one request for longer gets no connections from another's surplus


def stuck(snapshot: SlotSnapshot, now: float) -> bool:
    return snapshot.state == SLOT_BUSY and now - snapshot.request_started > SPREAD_BUSY_LIMIT


class Manager:
    """Supervises the children of one pool. Constructing it changes nothing;
    run() installs the signal handlers and owns the process until the pool stops."""

    def __init__(
        self, config: PoolConfig, target, listener: socket.socket, pool_name: str, ready_fd: int | None = None
    ):
        self.config = config
        self.target = target
        self.runs_python = callable(target)
        self.listener = listener
        self.listen = bound_description(listener)
        self.unix_inode = os.stat(config.socket_path).st_ino if config.socket_path else None
        self.pool_name = pool_name
        self.ready_fd = ready_fd
        self.children: dict[int, ChildRecord] = {}
        self.target_size = config.children
        self.generation = 1
        self.signal_queue: list[int] = []
        self.counters = status_report.PoolCounters()
        self.boot_failures = BootFailures()
        self.spawn_rate = SpawnRate()
        self.stop_mode: str | None = None  # None, "draining" or "stopping"
        self.exit_status = 0
        self.pool_full = False
        self.busy_seen = 0
        self.status_dirty = True
        self.status_written_at = 0.0
        self.start_wall = time.time()
        self.scoreboard: Scoreboard | None = None
        self.wakeup_fds: tuple[int, int] | None = None
        self.saved_handlers: dict = {}
        self.held: list[tuple[int, object]] = []  # handed-over (fd, peer) waiting for a child
        self.held_since = 0.0
        self.handoff_turn = 0  # round robin over the children that take connections

    # -- life cycle ---------------------------------------------------------

    def run(self) -> int:
        self.setup()
        try:
            for _ in range(self.target_size):
                self.spawn_child()
            self.announce_ready()
            while not self.finished():
                self.one_pass()
        finally:
            self.teardown()
        return self.exit_status

    def setup(self) -> None:
        self.scoreboard = Scoreboard()
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        os.set_blocking(write_fd, False)
        self.wakeup_fds = (read_fd, write_fd)
        signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        if self.config.kill_orphans and not become_subreaper():
            log.warning("cannot adopt orphans (no PR_SET_CHILD_SUBREAPER): programs of a dead child may survive it")
        self.saved_handlers = {signum: signal.signal(signum, self.queue_signal) for signum in SIGNAL_METHODS}
        if self.config.pidfile:
            with open(self.config.pidfile, "w") as out:
                out.write(f"{os.getpid()}\n")
        log.info(
            "pool %s listening on %s, %d children, manager pid %d",
            self.pool_name,
            self.listen,
            self.target_size,
            os.getpid(),
        )
        if self.config.timeout and not self.runs_python:
            log.info("--timeout applies to Python workers only; %s keeps no scoreboard", self.pool_name)

    def announce_ready(self) -> None:
        """Tell the launching process (no -n) that the pool is up; it then exits 0."""
        if self.ready_fd is not None:
            os.write(self.ready_fd, f"{os.getpid()}\n".encode())
            os.close(self.ready_fd)
            self.ready_fd = None

    def one_pass(self) -> None:
        self.sleep()
        self.dispatch_signals()
        self.reap_children()
        if self.stop_mode is None:
            self.murder_hung_children()
            self.manage_pool()
        self.kill_overdue()
        self.deliver_held()
        self.sample_pool()
        self.write_status_if_due()

    def finished(self) -> bool:
        return self.stop_mode is not None and not self.children

    def teardown(self) -> None:
        self.kill_remaining()
        signal.set_wakeup_fd(-1)
        for signum, handler in self.saved_handlers.items():
            signal.signal(signum, handler)  # a front end may go on after run_manager
        for fd in self.wakeup_fds or ():
            os.close(fd)
        self.close_listener()
        self.close_held("the pool stopped")
        for child in self.children.values():
            self.close_handoff(child)
        if self.config.pidfile:
            try:
                os.unlink(self.config.pidfile)
            except FileNotFoundError:
                pass
        self.stop_mode = self.stop_mode or "stopping"
        self.write_status(final=True)
        log.info("pool %s stopped (exit status %d)", self.pool_name, self.exit_status)

    def kill_remaining(self) -> None:
        """Only after an error in the loop itself: leave no child behind."""
        for child in self.children.values():
            self.send(child, signal.SIGKILL)
        for pid in list(self.children):
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            self.children.pop(pid)

    def close_listener(self) -> None:
        if self.listener.fileno() == -1:
            return
        self.listener.close()
        remove_unix_socket(self.listener, self.config.socket_path, self.unix_inode)

    # -- signals ------------------------------------------------------------

    def queue_signal(self, signum, frame) -> None:
        # Runs between two bytecodes of the loop: only note the signal.
        self.signal_queue.append(signum)

    def sleep(self) -> None:
        read_fd = self.wakeup_fds[0]
        timeout = 0.0 if self.signal_queue else self.time_to_next_spawn()
        handoffs = {c.handoff.fileno(): c for c in self.children.values() if c.handoff is not None}
        try:
            ready, _, _ = select.select([read_fd, *handoffs], [], [], timeout)
        except InterruptedError:
            return
        for fd in ready:
            if fd in handoffs:
                self.collect_connections(handoffs[fd])
        if read_fd in ready:
            try:
                while os.read(read_fd, 512):
                    pass
            except BlockingIOError:
                pass

    def time_to_next_spawn(self) -> float:
        """Sleep no longer than the backoff, so a respawn is not late by a whole pass."""
        if self.stop_mode is not None or len(self.current_children()) >= self.target_size:
            return LOOP_INTERVAL
        wait = self.boot_failures.next_spawn_at() - time.monotonic()
        return min(LOOP_INTERVAL, max(wait, 0.0))

    def dispatch_signals(self) -> None:
        while self.signal_queue:
            signum = self.signal_queue.pop(0)
            getattr(self, SIGNAL_METHODS[signum])()
            self.status_dirty = True

    def handle_chld(self) -> None:
        pass  # the loop reaps on every pass

    def handle_ttin(self) -> None:
        if self.stop_mode is None:
            self.target_size = min(self.target_size + 1, self.scoreboard.size // 2)
            log.info("SIGTTIN: pool size %d", self.target_size)

    def handle_ttou(self) -> None:
        if self.stop_mode is None:
            self.target_size = max(self.target_size - 1, 1)
            log.info("SIGTTOU: pool size %d", self.target_size)

    def handle_hup(self) -> None:
        """Replace every child: the new ones start first, so the socket is always served."""
        if self.stop_mode is not None:
            return
        old = self.current_children()
        self.generation += 1
        log.info("SIGHUP: starting generation %d, retiring %d children", self.generation, len(old))
        for _ in range(self.target_size):
            self.spawn_child()
        for child in old:
            self.retire(child)

    def handle_term(self) -> None:
        self.begin_stop("draining", self.config.graceful_timeout, "SIGTERM")

    def handle_int(self) -> None:
        self.begin_stop("stopping", FAST_STOP_GRACE, "SIGINT")

    def handle_quit(self) -> None:
        self.begin_stop("stopping", FAST_STOP_GRACE, "SIGQUIT")

    def begin_stop(self, mode: str, grace: float, why: str) -> None:
        if self.stop_mode == "stopping" or self.stop_mode == mode:
            return
        log.info("%s: %s %d children (grace %gs)", why, mode, len(self.children), grace)
        self.stop_mode = mode
        deadline = time.monotonic() + grace
        self.close_listener()  # once the children are gone, connections are refused
        for child in self.children.values():
            self.send(child, self.stop_signal(fast=mode == "stopping"))
            child.retire_deadline = deadline

    def fail(self, reason: str, status: int) -> None:
        """Stop the pool because respawning cannot help."""
        log.error("giving up: %s", reason)
        self.exit_status = status
        self.begin_stop("stopping", FAST_STOP_GRACE, "failure")

    # -- children -----------------------------------------------------------

    def current_children(self) -> list[ChildRecord]:
        """Children that count towards the pool size (not retiring), oldest first."""
        alive = [c for c in self.children.values() if not c.retiring]
        return sorted(alive, key=lambda c: c.started)

    def stop_signal(self, fast: bool) -> int:
        if self.runs_python:
            return signal.SIGINT if fast else signal.SIGTERM
        return signal.SIGTERM if fast else self.config.exec_stop_signal

    def send(self, child: ChildRecord, signum: int) -> None:
        try:
            os.kill(child.pid, signum)
        except ProcessLookupError:
            pass  # already dead, reaped on the next pass

    def spawn_child(self) -> ChildRecord | None:
        self.spawn_rate.record(time.monotonic())
        slot = self.scoreboard.claim()
        if slot is None:
            log.error("no free scoreboard slot; not starting a child")
            return None
        max_requests = jittered_max_requests(self.config.max_requests)
        ours, theirs = self.handoff_pair()
        manager_pid = os.getpid()
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, MANAGER_SIGNALS)
        try:
            pid = os.fork()
        except OSError as error:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            self.scoreboard.release(slot)
            for end in (ours, theirs):
                if end is not None:
                    end.close()
            log.error("fork failed: %s", error)
            return None
        if pid == 0:
            run_child(
                self.config,
                self.target,
                self.listener,
                slot,
                max_requests,
                self.fds_a_child_must_not_keep(ours),
                theirs,
                manager_pid,
            )
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        if theirs is not None:
            theirs.close()
        child = ChildRecord(pid, slot, self.generation, time.monotonic(), time.time(), handoff=ours)
        self.children[pid] = child
        self.status_dirty = True
        log.info("started child %d (slot %d, generation %d)", pid, slot.index, self.generation)
        return child

    def handoff_pair(self) -> tuple[socket.socket | None, socket.socket | None]:
        """(ours, the child's) Unix socket pair for passing idle connections;
        none for exec'd programs, which know nothing of it."""
        if not self.runs_python:
            return None, None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        return ours, theirs

    def fds_a_child_must_not_keep(self, ours: socket.socket | None) -> list[int]:
        """The manager's descriptors: a child holding a copy of a held connection
        or of another child's handoff socket would keep them open after us."""
        fds = list(self.wakeup_fds)
        fds += [c.handoff.fileno() for c in self.children.values() if c.handoff is not None]
        fds += [fd for fd, _ in self.held]
        if ours is not None:
            fds.append(ours.fileno())
        return fds

    def spawn_missing(self) -> None:
        missing = self.target_size - len(self.current_children())
        if self.boot_failures.count:
            missing = min(missing, 1)  # while backing off, one attempt at a time
        for _ in range(missing):
            if not self.spawn_rate.allow(time.monotonic()):
                break  # replacements only; the next pass goes on
            self.spawn_child()

    def retire(self, child: ChildRecord) -> None:
        """Ask a child to finish its request and leave; SIGKILL if it overstays."""
        if child.retiring:
            return
        child.retire_deadline = time.monotonic() + self.config.graceful_timeout
        self.send(child, self.stop_signal(fast=False))

    def reap_children(self) -> None:
        if self.reap_ended_children() and self.config.kill_orphans:
            killed = kill_children_except(self.children)
            if killed:
                log.warning("killed %d process(es) a dead child left behind", killed)

    def reap_ended_children(self) -> bool:
        """Reaps ended children; True when one of the pool's was among them."""
        ended = False
        while True:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return ended
            if pid == 0:
                return ended
            child = self.children.pop(pid, None)
            if child is None:
                log.debug("reaped orphan %d (%s)", pid, describe_exit(wait_status))
                continue
            ended = True
            self.child_ended(child, wait_status)

    def child_ended(self, child: ChildRecord, wait_status: int) -> None:
        self.status_dirty = True
        if child.handoff is not None:
            self.collect_connections(child)  # what it sent just before it exited
            self.close_handoff(child)
        served = child.slot.snapshot().requests if self.runs_python else None
        self.counters.accepted_conn += served or 0
        self.scoreboard.release(child.slot)
        how = describe_exit(wait_status)
        if child.retiring or child.killed or self.stop_mode is not None:
            log.info("child %d %s", child.pid, how)
            return
        code = exit_code(wait_status)
        if code == 0 and self.config.max_requests:
            log.info("child %d recycled after its requests (%s)", child.pid, how)
        else:
            log.warning("child %d %s; replacing it", child.pid, how)
            self.counters.restarts += 1
        failures = self.boot_failures
        verdict = failures.child_exited(child.started, time.monotonic(), how, code, served)
        if verdict:
            self.fail(verdict, EXIT_APP_LOAD_ERROR if code == EXIT_APP_LOAD_ERROR else EXIT_CRASH_LOOP)
        elif failures.count >= failures.limit and failures.count % failures.limit == 0:
            # A pool that has served is never given up on (BootFailures): say so now and then.
            log.warning(
                "%d children in a row died within %gs of starting; this pool has served before, "
                "so it is not given up: respawning one at a time, %.1fs apart",
                failures.count,
                failures.boot_period,
                respawn_delay(failures.count),
            )

    def manage_pool(self) -> None:
        now = time.monotonic()
        current = self.current_children()
        for child in current:
            self.boot_failures.child_alive(child.started, now)
        excess = len(current) - self.target_size
        for child in current[: max(excess, 0)]:
            log.info("retiring child %d (pool size %d)", child.pid, self.target_size)
            self.retire(child)
        if excess < 0 and now >= self.boot_failures.next_spawn_at():
            self.spawn_missing()

    def murder_hung_children(self) -> None:
        """SIGKILL a Python worker stuck in one request, or silent, past --timeout."""
        if not self.config.timeout or not self.runs_python:
            return
        now = time.monotonic()
        for child in self.children.values():
            snap = child.slot.snapshot()
            reason = hung_reason(
                snap.state == SLOT_BUSY,
                snap.request_started,
                snap.last_seen,
                snap.heartbeats,
                now,
                self.config.timeout,
                child.started,
            )
            if child.killed or reason is None:
                continue
            what = f" ({snap.method} {snap.uri})" if snap.state == SLOT_BUSY else ""
            log.error(
                "child %d stuck: %s%s, over --timeout %g: killing it", child.pid, reason, what, self.config.timeout
            )
            child.killed = True
            self.counters.timeouts += 1
            self.send(child, signal.SIGKILL)

    def kill_overdue(self) -> None:
        """SIGKILL retiring children whose grace period is over."""
        now = time.monotonic()
        for child in self.children.values():
            if child.retiring and not child.killed and now >= child.retire_deadline:
                log.warning("child %d still running after its grace period: SIGKILL", child.pid)
                child.killed = True
                self.send(child, signal.SIGKILL)

    # -- handoff: idle kept-alive connections from leaving children to live ones

    def collect_connections(self, child: ChildRecord) -> None:
        """Takes the connections a leaving child sent; its `last` batch is answered
        by shutting our side, which tells it nothing more is coming its way."""
        try:
            for handed, last in drain(child.handoff):
                if not last and child.takes_connections:
                    self.spread(handed, child)
                    continue
                self.hold(handed)
                if last and not child.said_last:
                    child.said_last = True
                    log.debug("child %d handed over its idle connections", child.pid)
                    try:
                        child.handoff.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
        except EOFError:  # it exited: nothing more will come, and select() must not spin on it
            self.close_handoff(child)
        except OSError as error:
            log.warning("handoff from child %d failed: %s", child.pid, error)

    def hold(self, handed: list[tuple[int, object]]) -> None:
        if handed and not self.held:
            self.held_since = time.monotonic()
        self.held.extend(handed)

    def deliver_held(self) -> None:
        """Held connections go round robin to the newest generation's children."""
        if not self.held:
            return
        if self.stop_mode is not None:
            self.close_held("the pool is stopping")
            return
        takers = [c for c in self.children.values() if c.takes_connections]
        newest = max((c.generation for c in takers), default=None)
        takers = [c for c in takers if c.generation == newest]
        if not takers:
            if time.monotonic() - self.held_since > HOLD_SECONDS:
                self.close_held("no child took them in time")
            return
        held, self.held = self.held, []
        self.handoff_turn += 1
        for child, share in zip(takers, round_robin_shares(held, len(takers), self.handoff_turn), strict=True):
            if share and not self.send_connections_to(child, share):
                self.held.extend(share)  # tried again on the next pass

    def spread(self, handed: list[tuple[int, object]], source: ChildRecord) -> None:
        """A live child's surplus of kept connections (worker/loop.py,
        RequestLoop._spread_connections): each to the other child of the newest
        generation that holds fewest, by the counts the children publish. Not to
        one stuck in a long request: what nginx sends on them would wait for it; with
        no other taker they go back to the child that sent them."""
        now = time.monotonic()
        takers = [c for c in self.children.values() if c.takes_connections and c is not source]
        newest = max((c.generation for c in takers), default=None)
        takers = [c for c in takers if c.generation == newest and not stuck(c.slot.snapshot(), now)]
        if not takers:
            if not self.send_connections_to(source, handed):
                self.hold(handed)
            return
        counts = [c.slot.connections() for c in takers]
        shares: list[list[tuple[int, object]]] = [[] for _ in takers]
        for item in handed:
            fewest = counts.index(min(counts))
            shares[fewest].append(item)
            counts[fewest] += 1
        for child, share in zip(takers, shares, strict=True):
            if share and not self.send_connections_to(child, share):
                self.hold(share)

    def send_connections_to(self, child: ChildRecord, share: list[tuple[int, object]]) -> bool:
        try:
            send_connections(child.handoff, share)
        except OSError as error:  # its queue is full, or it just died
            log.debug("cannot pass connections to child %d: %s", child.pid, error)
            return False
        for fd, _ in share:
            os.close(fd)
        return True

    def close_held(self, why: str) -> None:
        if self.held:
            log.info("closing %d handed-over connection(s): %s", len(self.held), why)
        for fd, _ in self.held:
            os.close(fd)
        self.held = []

    def close_handoff(self, child: ChildRecord) -> None:
        if child.handoff is not None:
            child.handoff.close()
            child.handoff = None

    # -- figures and the status report -------------------------------------

    def sample_pool(self) -> None:
        queue = status_report.listen_queue(self.listener) if self.listener.fileno() != -1 else None
        if queue:
            self.counters.max_listen_queue = max(self.counters.max_listen_queue, queue[0])
        full = self.pool_is_full(queue)
        if full and not self.pool_full:
            self.counters.max_children_reached += 1
            self.status_dirty = True
        self.pool_full = full
        if self.runs_python:
            self.count_slow_requests()

    def pool_is_full(self, queue) -> bool:
        """No child free for the next connection: all busy, or connections waiting."""
        current = self.current_children()
        if self.runs_python and current:
            busy = sum(c.slot.snapshot().state == SLOT_BUSY for c in current)
            self.counters.max_active = max(self.counters.max_active, busy)
            if busy != self.busy_seen:  # a change worth reporting at once
                self.busy_seen = busy
                self.status_dirty = True
            return busy == len(current)
        return bool(queue and queue[0] > 0)

    def count_slow_requests(self) -> None:
        now = time.monotonic()
        for child in self.children.values():
            snap = child.slot.snapshot()
            if (
                snap.state == SLOT_BUSY
                and snap.requests != child.slow_counted
                and now - snap.request_started > self.config.slow_request_time
            ):
                child.slow_counted = snap.requests
                self.counters.slow_requests += 1
                log.warning("slow request in child %d: %s %s", child.pid, snap.method, snap.uri)

    def build_status(self) -> dict:
        now_mono, now_wall = time.monotonic(), time.time()
        rows = [
            status_report.child_status(
                c.pid,
                c.slot.index,
                c.generation,
                c.started_wall,
                now_wall,
                c.retiring,
                c.slot.snapshot() if self.runs_python else None,
                now_mono,
            )
            for c in sorted(self.children.values(), key=lambda c: c.slot.index)
        ]
        queue = status_report.listen_queue(self.listener) if self.listener.fileno() != -1 else None
        state = self.stop_mode or "running"
        return status_report.build_status(
            pool=self.pool_name,
            manager_pid=os.getpid(),
            state=state,
            listen=self.listen,
            start_time=self.start_wall,
            now_wall=now_wall,
            generation=self.generation,
            target=self.target_size,
            rows=rows,
            counters=self.counters,
            queue=queue,
            scoreboard=self.runs_python,
        )

    def write_status_if_due(self) -> None:
        if self.status_dirty or time.monotonic() - self.status_written_at >= STATUS_INTERVAL:
            self.write_status()

    def write_status(self, final: bool = False) -> None:
        self.status_dirty = False
        self.status_written_at = time.monotonic()
        if not self.config.status_file:
            return
        report = self.build_status()
        if final:
            report["state"] = "stopped"
        try:
            status_report.write_status(self.config.status_file, report)
        except OSError as error:
            log.warning("cannot write status file %s: %s", self.config.status_file, error)
