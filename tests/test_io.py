"""Atomic writes: a writer killed mid-file leaves the target absent or as it was, never a file
that looks complete; a failed write leaves nothing behind."""

import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from stealbench import io

ROWS, BATCHES = 2_000_000, 100  # 32 MB of (half incompressible) data in 100 row groups

# The same table every time, so that a rerun's file can be compared with the expected one.
TABLE = f"""
import numpy as np, pyarrow as pa

def table(version):
    rng = np.random.default_rng(version)
    return pa.table({{"i": np.arange({ROWS}), "x": rng.random({ROWS})}})
"""

# A writer of that table through io.write_parquet, throttled: pq.write_table is replaced (in
# the writer's process only) by one that writes a row group at a time, flushes it to the disk
# and pauses, so that the temporary file grows for seconds and the test can kill it mid-write.
WRITER = (
    TABLE
    + f"""
import sys, time
import pyarrow.parquet as pq
from stealbench import io

path, version, pause = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])

def throttled_write_table(table, where, **kwargs):
    with open(where, "wb") as handle, pq.ParquetWriter(handle, table.schema, **kwargs) as out:
        for batch in table.to_batches(max_chunksize={ROWS // BATCHES}):
            out.write_batch(batch)
            handle.flush()
            time.sleep(pause)

pq.write_table = throttled_write_table
io.write_parquet(table(version), path, {{"kind": "test", "version": version}})
"""
)


def expected_table(version: int):
    namespace = {}
    exec(TABLE, namespace)
    return namespace["table"](version)


def start_writer(root, path, version: int, pause: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(version), str(pause)],
        env={**os.environ, "PYTHONPATH": str(root / "src")},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def temporaries(path):
    return sorted(path.parent.glob(f".{path.name}.*.tmp"))


def kill_mid_write(root, path, version: int, timeout: float = 120) -> None:
    """Start the throttled writer and SIGKILL it once the file it writes holds a few row groups
    (more than 1 MB), well before the last: the kill lands mid-file, with no cleanup at all.
    The file watched is whichever grows, a temporary or (were the write not atomic) the target
    itself, so that a direct write is caught half done rather than let finish."""
    old = path.stat() if path.exists() else None
    proc = start_writer(root, path, version, pause=0.05)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[0]  # it finished unkilled
            growing = temporaries(path)
            try:
                new = path.stat()
                if old is None or (new.st_mtime_ns, new.st_size) != (old.st_mtime_ns, old.st_size):
                    growing.append(path)
            except FileNotFoundError:
                pass
            if any(p.exists() and p.stat().st_size > 1 << 20 for p in growing):
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
                assert proc.returncode == -signal.SIGKILL
                return
            time.sleep(0.01)
        raise AssertionError(f"no file written for {path.name} grew past 1 MB in {timeout} s")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def write_complete(root, path, version: int) -> None:
    proc = start_writer(root, path, version, pause=0)
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, output


def assert_complete(path, version: int) -> None:
    table, meta = io.read_parquet(path, kind="test")
    assert meta == {"kind": "test", "version": version}
    assert table.equals(expected_table(version))


@pytest.mark.parametrize("existing", [False, True], ids=["fresh", "overwrite"])
def test_a_writer_killed_mid_file_leaves_the_target_absent_or_as_it_was(root, tmp_path, existing):
    path = tmp_path / "out" / "table.parquet"
    if existing:  # a complete earlier version, which the killed write must not damage
        write_complete(root, path, version=1)
        before = (io.sha256_file(path), path.stat().st_mtime_ns)
    kill_mid_write(root, path, version=2)

    if existing:
        assert (io.sha256_file(path), path.stat().st_mtime_ns) == before
        assert_complete(path, version=1)
    else:
        assert not path.exists()
        with pytest.raises(io.ArtefactError, match="file not found"):
            io.read_parquet(path)
    # The kill landed mid-file: the temporary file is there, cut short (no Parquet footer).
    [tmp] = temporaries(path)
    with pytest.raises(Exception, match="(?i)parquet"):
        pq.read_metadata(tmp)
    # What a kill leaves is a hidden *.tmp sibling, which no reader's glob matches.
    assert [p.name for p in path.parent.iterdir() if not p.name.startswith(".")] == (
        ["table.parquet"] if existing else []
    )

    # Rerunning the writer gives the complete file.
    write_complete(root, path, version=2)
    assert_complete(path, version=2)
    assert temporaries(path) == [tmp]  # the rerun cleaned up its own temporary, not others'


def test_atomic_path_renames_on_success_and_creates_parent_folders(tmp_path):
    path = tmp_path / "a" / "b" / "out.json"
    with io.atomic_path(path) as tmp:
        assert tmp.parent == path.parent and tmp.name.startswith(".out.json.")
        assert tmp.suffix == ".tmp" and tmp.exists() and not path.exists()
        tmp.write_text("done")
    assert path.read_text() == "done"
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.json"]


@pytest.mark.parametrize("existing", [False, True], ids=["fresh", "overwrite"])
def test_an_error_inside_atomic_path_leaves_no_temporary_and_no_new_target(tmp_path, existing):
    path = tmp_path / "out.json"
    if existing:
        io.write_json({"version": 1}, path)
    with pytest.raises(ValueError, match="half way"), io.atomic_path(path) as tmp:
        tmp.write_text('{"version": 2, "trunc')
        raise ValueError("half way")
    assert sorted(p.name for p in tmp_path.iterdir()) == (["out.json"] if existing else [])
    if existing:
        assert io.read_json(path) == {"version": 1}
