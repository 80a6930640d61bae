"""kubestrata's own apt state per suite (in the cache, apt's locks off) is used by one apt run at a
time: the CI's cold run had a lab's mirror build and the CRI checks' stubs update trixie's lists
at once, and apt then took them for unsigned."""

import threading
import time

from kubestrata.lab import debian


def test_apt_runs_on_one_suite_one_at_a_time(monkeypatch, tmp_path):
    monkeypatch.setattr(debian, "CACHE_DIR", tmp_path)
    running, most = [], []

    def apt(argv, cwd=None, **_):
        running.append(argv)
        most.append(len(running))
        time.sleep(0.1)
        if cwd:             # apt-get download
            (cwd / f"{argv[-1]}_1.0_all.deb").touch()
        running.pop()

    monkeypatch.setattr(debian, "run", apt)
    monkeypatch.setattr(debian.subprocess, "run", apt)
    jobs = [threading.Thread(target=debian.fetch, args=("hello", tmp_path / "debs")),
            threading.Thread(target=debian.download, args=(["hello"], tmp_path / "all")),
            threading.Thread(target=debian.fetch, args=("hello", tmp_path / "debs"))]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join()
    assert len(most) == 6 and max(most) == 1
    assert debian.fetch("hello", tmp_path / "debs") == tmp_path / "debs" / "hello_1.0_all.deb"
