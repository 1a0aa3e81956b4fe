import threading
from concurrent.futures import ThreadPoolExecutor

from dungeon.images.breaker import CircuitBreaker
from dungeon.images.types import GeneratedImage, ImageRequest
from tests.fakes import PNG, FakeClock


def make(clock, threshold=2, reset=10, changes=None):
    return CircuitBreaker("p", threshold, reset, clock=clock,
                          on_change=(lambda old, new: changes.append((old, new)))
                          if changes is not None else None)


def test_opens_after_threshold_consecutive_failures():
    breaker = make(FakeClock())
    breaker.record_failure()
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow()


def test_a_success_resets_the_failure_count():
    breaker = make(FakeClock())
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state == "closed"


def test_half_open_lets_exactly_one_trial_through():
    clock, changes = FakeClock(), []
    breaker = make(clock, changes=changes)
    breaker.record_failure()
    breaker.record_failure()
    clock.advance(10)
    assert breaker.allow() is True
    assert breaker.allow() is False  # the trial is still in flight
    breaker.record_success()
    assert breaker.allow() is True
    assert changes == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_neutral_outcome_frees_the_trial_without_closing():
    clock = FakeClock()
    breaker = make(clock, threshold=1)
    breaker.record_failure()
    clock.advance(10)
    assert breaker.allow()
    breaker.record_neutral()
    assert breaker.state == "half_open" and breaker.allow()


def test_open_for_overrides_the_reset_time():
    clock = FakeClock()
    breaker = make(clock, threshold=5, reset=10)
    breaker.record_failure(open_for=600)
    clock.advance(599)
    assert breaker.state == "open"
    clock.advance(1)
    assert breaker.state == "half_open"


def test_parallel_calls_overlap_instead_of_serialising(make_app):
    # Four calls must be inside the provider at once; a serialising lock breaks the barrier.
    inside = threading.Barrier(4, timeout=10)

    class Meeting:
        name, model = "meeting", "m"

        def generate(self, request, timeout):
            inside.wait()  # raises BrokenBarrierError unless all four are in here together
            return GeneratedImage(data=PNG)

    app = make_app({"IMAGE_PROVIDERS": "meeting,placeholder", "IMAGE_RETRIES": 0},
                   providers=[Meeting()])
    service = app.extensions["dungeon"].images
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: service.generate(ImageRequest("a bridge")), range(4)))
    assert [r.provider for r in results] == ["meeting"] * 4
