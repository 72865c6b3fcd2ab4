import os
import threading

from minibuild.build.copymeter import CopyMeter


def test_bytes_counted_in_a_forked_child_are_seen_by_the_parent():
    meter = CopyMeter()
    pid = os.fork()
    if pid == 0:
        meter.add(3_000_000)
        meter.add(1_190_000)
        os._exit(0)
    os.waitpid(pid, 0)
    assert meter.copied == 4_190_000


def test_progress_and_note_with_a_fake_clock():
    now = [10.0]
    reports: list[str] = []
    seen = threading.Event()
    meter = CopyMeter(clock=lambda: now[0])
    with meter.watching(lambda text: (reports.append(text), seen.set()), every=0.01):
        meter.add(4_000_000)
        now[0] += 0.2
        seen.clear()
        assert seen.wait(5)  # a report made once the clock moved
    assert reports[-1] == "copy 4MB copied, 20MB/s"
    assert meter.note() == "4MB copied, 20MB/s"


def test_a_quick_copy_has_no_note_and_watching_starts_from_zero():
    now = [0.0]
    meter = CopyMeter(clock=lambda: now[0])
    meter.add(5)
    with meter.watching(lambda text: None):
        now[0] += 0.05
    assert meter.copied == 0 and meter.note() == ""
