"""The parallel suite's groups (tests/scheduling.py): a `site` lab's tests together wherever they
live, other tests by directory, and the heaviest group handed out first."""

from collections import OrderedDict
from pathlib import Path

from tests.scheduling import LabScheduling, group


def test_tests_on_one_site_lab_form_one_group_across_directories():
    assert group("tests/etcd/test_topologies.py::test_members[multi-master]") == "site[multi-master]"
    assert group("tests/orchestration/test_scale.py::test_grow[multi-master]") == "site[multi-master]"


def test_other_tests_group_by_directory():
    assert group("tests/kubernetes/test_reset.py::test_reset") == "tests/kubernetes"
    assert group("tests/kubernetes/test_upgrade.py::test_up[1.35]") == "tests/kubernetes"
    assert group("tests/test_topology.py::test_load") == "tests"
    # tests/lab's own labs are named after the topologies: one group, never a site group
    assert group("tests/lab/test_lab_nodes.py::test_ping[all-in-one]") == "tests/lab"


def test_the_heaviest_group_goes_first_and_an_untimed_one_counts_a_second_per_test():
    class Queue(LabScheduling):
        def __init__(self, seconds):        # no xdist session: only the queue and the times
            self.seconds = seconds
            self.workqueue = OrderedDict()

    queue = Queue({"tests": 30.0, "site[all-in-one]": 400.0})
    queue.workqueue.update({"tests": dict.fromkeys("abc", False),
                            "tests/lab": dict.fromkeys(range(50), False),
                            "site[all-in-one]": dict.fromkeys("x", False)})
    assert queue.heaviest() == "site[all-in-one]"
    del queue.workqueue["site[all-in-one]"]
    assert queue.heaviest() == "tests/lab"


def test_a_cold_cache_takes_the_committed_times_and_this_machines_win(tmp_path, monkeypatch):
    import json

    from tests import scheduling

    monkeypatch.setattr(scheduling, "DURATIONS", tmp_path / "test-durations.json")
    committed = json.loads(scheduling.COMMITTED.read_text())
    assert committed["site[ha-external-etcd]"] > committed["tests"] > 0
    assert scheduling.recorded() == committed
    scheduling.DURATIONS.write_text(json.dumps({"tests": 1.0}))
    assert scheduling.recorded() == {**committed, "tests": 1.0}


def test_group_times_are_kept_after_a_whole_run_only(request, tmp_path, monkeypatch):
    import copy
    import json
    from types import SimpleNamespace

    import pytest

    from tests import scheduling

    monkeypatch.setattr(scheduling, "DURATIONS", tmp_path / "test-durations.json")
    timing = scheduling.Timing()
    timing.pytest_runtest_logreport(SimpleNamespace(nodeid="tests/lab/test_x.py::test_y[all-in-one]",
                                                    duration=2.5))

    def finish(**options) -> None:
        option = copy.copy(request.config.option)    # this run's options, every attribute there
        option.__dict__.update({"keyword": "", "markexpr": "", "collectonly": False,
                                "maxfail": 0, **options})
        config = SimpleNamespace(option=option, args_source=pytest.Config.ArgsSource.TESTPATHS)
        timing.pytest_sessionfinish(SimpleNamespace(config=config), exitstatus=0)

    finish(keyword="lab")
    assert not scheduling.DURATIONS.exists()
    finish()
    assert json.loads(scheduling.DURATIONS.read_text()) == {"tests/lab": 2.5}


SITE_CONFTEST = '''
import pytest
from tests.conftest import pytest_runtest_teardown  # noqa: F401  the hook under test

EVENTS = []


@pytest.fixture(scope="session")
def site(request):
    EVENTS.append(f"up {request.param}")
    yield request.param
    EVENTS.append(f"down {request.param}")
'''

SITE_TESTS = '''
import pytest
from conftest import EVENTS

on_a = pytest.mark.parametrize("site", ["a"], indirect=True)


@on_a
def test_one(site):
    EVENTS.append("one")


@on_a
def test_two(site):
    EVENTS.append("two")


def test_other():
    EVENTS.append("other")


def test_the_lab_went_down_before_the_other_test():
    assert EVENTS == ["up a", "one", "two", "down a", "other"]
'''


def test_a_site_lab_goes_down_after_its_last_test_not_at_the_sessions_end(pytester, monkeypatch):
    pytester.makeconftest(SITE_CONFTEST)
    pytester.makepyfile(test_site_lab=SITE_TESTS)
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parents[1]))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:xdist")
    result.assert_outcomes(passed=4)
