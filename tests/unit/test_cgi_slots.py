"""--max-procs slots: flock'd files shared by every gateway process."""

import os
import time

from fcgikit.cgi.slots import Slots, make_slot_dir


def test_slots_are_exclusive_across_holders_and_freed_on_release(tmp_path):
    directory = make_slot_dir(2, parent=str(tmp_path))
    # Each Slots opens its own files, as each forked gateway process does.
    a, b, c = Slots(directory, 2), Slots(directory, 2), Slots(directory, 2)
    with a.slot(0.1) as got_a, b.slot(0.1) as got_b:
        assert got_a and got_b
        started = time.monotonic()
        with c.slot(0.2) as got_c:
            assert not got_c
        assert time.monotonic() - started >= 0.2
    with c.slot(0.1) as got_c:
        assert got_c


def test_a_dead_holders_slot_comes_back(tmp_path):
    directory = make_slot_dir(1, parent=str(tmp_path))
    pid = os.fork()
    if pid == 0:
        holder = Slots(directory, 1)
        holder.take(1)
        os._exit(0)            # dies holding the slot, never gives it back
    os.waitpid(pid, 0)
    with Slots(directory, 1).slot(0.5) as got:
        assert got
