"""blender_addon/futures.py: callbacks run only when the main thread drains the queue, in
the order they were posted; errors and cancellation reach the callbacks. No bpy."""

import threading

import pytest
from _nobpy import addon_module

futures = addon_module("futures")
Future, MainThreadQueue = futures.Future, futures.MainThreadQueue


def test_callbacks_wait_for_the_drain_and_run_in_posting_order():
    queue = MainThreadQueue()
    future = Future(queue, "submit")
    log = []
    future.add_event_callback(lambda event: log.append(("event", event["n"])))
    future.add_done_callback(lambda f: log.append(("done", f.result())))
    future.post_event({"n": 1})
    future.post_event({"n": 2})
    future.set_result("job-1")
    future.post_event({"n": 3})  # a job future keeps receiving its job's events
    assert future.done() and future.result() == "job-1"
    assert log == []  # nothing ran on the producing thread
    assert queue.drain() > 0
    assert log == [("event", 1), ("event", 2), ("done", "job-1"), ("event", 3)]
    assert queue.drain() == 0 and len(queue) == 0


def test_callbacks_run_on_the_draining_thread_not_the_producer():
    queue = MainThreadQueue()
    future = Future(queue)
    threads = []
    future.add_event_callback(lambda event: threads.append(threading.current_thread()))
    future.add_done_callback(lambda f: threads.append(threading.current_thread()))
    producer = threading.Thread(target=lambda: (future.post_event({}), future.set_result(5)))
    producer.start()
    producer.join()
    assert threads == []
    queue.drain()
    assert threads == [threading.main_thread()] * 2


def test_order_is_kept_across_futures():
    queue = MainThreadQueue()
    a, b = Future(queue, "a"), Future(queue, "b")
    log = []
    for name, f in (("a", a), ("b", b)):
        f.add_event_callback(lambda event, name=name: log.append((name, event["i"])))
        f.add_done_callback(lambda f, name=name: log.append((name, "done")))
    a.post_event({"i": 0})
    b.post_event({"i": 0})
    b.set_result(None)
    a.post_event({"i": 1})
    a.set_result(None)
    queue.drain()
    assert log == [("a", 0), ("b", 0), ("b", "done"), ("a", 1), ("a", "done")]


def test_exception_is_delivered_and_raised_by_result():
    queue = MainThreadQueue()
    future = Future(queue, "watch")
    seen = []
    future.add_done_callback(lambda f: seen.append(f.exception()))
    error = KeyError("unknown_job")
    future.set_exception(error)
    queue.drain()
    assert seen == [error]
    with pytest.raises(KeyError):
        future.result()
    with pytest.raises(RuntimeError, match="already"):
        future.set_result(1)
    with pytest.raises(TypeError):
        Future(queue).set_exception("not an exception")


def test_done_callback_added_late_still_runs_at_the_next_drain():
    queue = MainThreadQueue()
    future = Future(queue)
    future.set_result(7)
    queue.drain()
    seen = []
    future.add_done_callback(lambda f: seen.append(f.result()))
    assert seen == []
    queue.drain()
    assert seen == [7]


def test_cancel_runs_done_callbacks_and_drops_the_outcome_and_events():
    queue = MainThreadQueue()
    future = Future(queue, "fetch")
    log = []
    future.add_event_callback(lambda event: log.append(event))
    future.add_done_callback(lambda f: log.append(("cancelled", f.cancelled())))
    future.post_event({"queued before": True})
    assert future.cancel() and future.cancel()  # idempotent
    assert future.done() and future.cancelled()
    assert future.set_result(1) is False and future.post_event({"late": True}) is False
    queue.drain()
    assert log == [("cancelled", True)]  # the event queued before the cancel is dropped too
    with pytest.raises(futures.CancelledError):
        future.result()
    finished = Future(queue)
    finished.set_result(1)
    assert finished.cancel() is False and finished.result() == 1


def test_result_does_not_block_unless_asked():
    queue = MainThreadQueue()
    future = Future(queue, "ping")
    with pytest.raises(TimeoutError, match="ping"):
        future.result()
    threading.Timer(0.05, future.set_result, args=(0.01,)).start()
    assert future.result(timeout=5) == 0.01


def test_a_failing_callback_is_reported_and_the_rest_still_run():
    errors = []
    queue = MainThreadQueue(on_error=errors.append)
    future = Future(queue)
    ran = []
    future.add_done_callback(lambda f: 1 / 0)
    future.add_done_callback(lambda f: ran.append(True))
    queue.post(lambda: ran.append("plain"))
    future.set_result(None)
    queue.drain()
    assert ran == ["plain", True] and len(errors) == 1 and isinstance(errors[0], ZeroDivisionError)


def test_drain_limit_leaves_the_rest_for_the_next_tick():
    queue = MainThreadQueue()
    ran = []
    for i in range(5):
        queue.post(ran.append, i)
    assert queue.drain(max_items=2) == 2 and ran == [0, 1]
    assert queue.drain() == 3 and ran == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError):
        queue.drain(max_items=-1)
    queue.post(ran.append, 9)
    queue.clear()
    assert queue.drain() == 0
