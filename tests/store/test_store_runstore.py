"""RunStore: whole lines, rotation by size, atomic manifest, thread safety."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from sagellm_obs.store import MANIFEST, RunStore, files_of, iter_jsonl, new_run_id


def _read_all(run: Path, kind: str) -> list[dict[str, Any]]:
    return [obj for f in files_of(run, kind) for _, obj in iter_jsonl(f)]


def test_lines_are_written_whole_and_flushed(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run")
    batch = [{"i": i, "text": 'ü\n"quoted"\tand\u2028sep'} for i in range(5)]
    assert store.write("traces", batch) == 5
    # Flushed: another reader sees the bytes before close().
    raw = (tmp_path / "run" / "traces-00001.jsonl").read_bytes()
    assert raw.endswith(b"\n")
    lines = raw.split(b"\n")[:-1]
    assert len(lines) == 5  # newlines inside strings are escaped, never raw
    assert [json.loads(line) for line in lines] == batch
    assert store.write("traces", []) == 0
    assert store.lines_written("traces") == 5
    assert store.lines_written("metrics") == 0
    assert not list((tmp_path / "run").glob("metrics-*.jsonl"))  # files open lazily
    store.close()


def test_unknown_kind_is_rejected(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    with pytest.raises(KeyError):
        store.write("nope", [{"a": 1}])
    store.close()


def test_rotation_by_size_keeps_every_line_in_order(tmp_path: Path) -> None:
    max_bytes = 300
    store = RunStore(tmp_path, max_bytes=max_bytes)
    written = [{"seq": i, "pad": "x" * (i % 17)} for i in range(120)]
    for start in range(0, len(written), 3):
        store.write("steps", written[start : start + 3])
    store.close()
    files = files_of(tmp_path, "steps")
    assert len(files) > 5
    assert [f.name for f in files] == [f"steps-{i:05d}.jsonl" for i in range(1, len(files) + 1)]
    for f in files:
        size = f.stat().st_size
        assert 0 < size <= max_bytes, (f.name, size)
        assert f.read_bytes().endswith(b"\n")
    assert _read_all(tmp_path, "steps") == written
    assert store.lines_written("steps") == len(written)


def test_a_batch_larger_than_max_bytes_is_never_split(tmp_path: Path) -> None:
    store = RunStore(tmp_path, max_bytes=100)
    store.write("traces", [{"small": 1}])
    big = [{"i": i, "pad": "y" * 50} for i in range(10)]
    store.write("traces", big)
    store.write("traces", [{"small": 2}])
    store.close()
    files = files_of(tmp_path, "traces")
    per_file = [[obj for _, obj in iter_jsonl(f)] for f in files]
    assert per_file == [[{"small": 1}], big, [{"small": 2}]]


def test_reopening_a_run_folder_appends_to_the_last_file(tmp_path: Path) -> None:
    first = RunStore(tmp_path, run_id="r1", max_bytes=80)
    for i in range(6):
        first.write("metrics", [{"first": i, "pad": "z" * 20}])
    first.close()
    n_files = len(files_of(tmp_path, "metrics"))
    assert n_files > 1
    second = RunStore(tmp_path, run_id="r1", max_bytes=10_000)
    second.write("metrics", [{"second": 0}])
    second.close()
    assert len(files_of(tmp_path, "metrics")) == n_files  # no gap, no new file, no overwrite
    assert _read_all(tmp_path, "metrics")[-1] == {"second": 0}
    assert len(_read_all(tmp_path, "metrics")) == 7


def test_manifest_contents_and_close(tmp_path: Path) -> None:
    store = RunStore(tmp_path, run_id="run-xyz")
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert manifest["run_id"] == "run-xyz"
    assert manifest["format"] == "sagellm-obs/run@1"
    assert manifest["ended_at"] is None
    assert isinstance(manifest["started_at"], float)
    store.update_manifest(engine_id="e1", config={"model": "m", "n": 3})
    store.update_manifest(engine_id="e2")
    on_disk = json.loads((tmp_path / MANIFEST).read_text())
    assert on_disk["engine_id"] == "e2"
    assert on_disk["config"] == {"model": "m", "n": 3}
    assert on_disk == json.loads(json.dumps(store.manifest))
    store.manifest["engine_id"] = "mutating the copy"
    assert store.manifest["engine_id"] == "e2"
    store.close()
    closed = json.loads((tmp_path / MANIFEST).read_text())
    assert closed["ended_at"] >= closed["started_at"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST]  # no temp file left


def test_manifest_updates_are_atomic_for_concurrent_readers(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    stop = threading.Event()
    seen: list[int] = []
    problems: list[str] = []

    def reader() -> None:
        path = tmp_path / MANIFEST
        while not stop.is_set():
            text = path.read_text()
            try:
                seen.append(json.loads(text).get("counter", -1))
            except ValueError as exc:  # a torn or empty manifest would land here
                problems.append(f"{exc}: {text[:80]!r}")

    readers = [threading.Thread(target=reader) for _ in range(2)]
    for t in readers:
        t.start()
    big = {f"k{i}": "v" * 200 for i in range(50)}  # ~12 KB, more than one write() chunk
    counter = 0
    while counter < 300 or (len(seen) < 50 and counter < 20_000):  # enough overlap, even on CI
        store.update_manifest(counter=counter, big=big)
        counter += 1
    stop.set()
    for t in readers:
        t.join()
    store.close()
    assert problems == []
    assert len(seen) >= 50
    assert json.loads((tmp_path / MANIFEST).read_text())["counter"] == counter - 1


def test_concurrent_writers_lose_and_tear_nothing(tmp_path: Path) -> None:
    store = RunStore(tmp_path, max_bytes=4096)
    n_threads, n_batches, per_batch = 8, 150, 3
    barrier = threading.Barrier(n_threads)
    errors: list[BaseException] = []

    def writer(t: int) -> None:
        try:
            barrier.wait()
            for b in range(n_batches):
                store.write(
                    "traces",
                    [
                        {"t": t, "seq": b * per_batch + k, "pad": "p" * ((t * 7 + b) % 40)}
                        for k in range(per_batch)
                    ],
                )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()
    assert errors == []
    total = n_threads * n_batches * per_batch
    assert store.lines_written("traces") == total
    files = files_of(tmp_path, "traces")
    assert len(files) > 1  # rotation happened under contention too
    records = _read_all(tmp_path, "traces")  # raises on any torn or merged line
    assert len(records) == total
    for tid in range(n_threads):
        mine = [r["seq"] for r in records if r["t"] == tid]
        assert mine == list(range(n_batches * per_batch))  # per-thread order kept across files
    # Batches are contiguous: a batch's lines are never interleaved with another thread's.
    for i in range(0, total, per_batch):
        chunk = records[i : i + per_batch]
        assert len({r["t"] for r in chunk}) == 1
        assert [r["seq"] % per_batch for r in chunk] == list(range(per_batch))


def test_new_run_ids_sort_by_time_and_are_unique() -> None:
    ids = [new_run_id() for _ in range(50)]
    assert len(set(ids)) == 50
    stamp, suffix = ids[0].split("-")
    assert len(stamp) == 16
    assert stamp.endswith("Z")
    assert len(suffix) == 6


def test_pre_encoded_lines_are_written_whole(tmp_path: Path) -> None:
    store = RunStore(tmp_path, max_bytes=40)
    lines = [{"i": i, "s": "ü" * i} for i in range(6)]
    for start in range(0, 6, 2):
        data = "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in lines[start : start + 2])
        assert store.write_lines("traces", data.encode()) == 2
    assert store.write_lines("traces", b"") == 0
    with pytest.raises(ValueError, match="whole lines"):
        store.write_lines("traces", b'{"torn": ')
    store.close()
    assert _read_all(tmp_path, "traces") == lines
    assert len(files_of(tmp_path, "traces")) > 1
    assert store.lines_written("traces") == 6


def test_pre_encoded_lines_may_come_in_pieces(tmp_path: Path) -> None:
    store = RunStore(tmp_path, max_bytes=60)
    lines = [{"i": i, "s": "ü" * i} for i in range(6)]
    for start in range(0, 6, 3):
        text = "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in lines[start : start + 3])
        data = text.encode()
        # cut anywhere, even inside a character: joined, the pieces are the lines
        inside = data.index("ü".encode()) + 1
        pieces = [data[:7], b"", data[7:inside], data[inside:], b""]
        assert store.write_lines("traces", pieces) == 3
    assert store.write_lines("traces", [b"", b""]) == 0
    with pytest.raises(ValueError, match="whole lines"):
        store.write_lines("traces", [b'{"a": 1}\n', b'{"torn": '])
    store.close()
    assert _read_all(tmp_path, "traces") == lines
    assert len(files_of(tmp_path, "traces")) == 2  # a batch is never split across files
    assert store.lines_written("traces") == 6
