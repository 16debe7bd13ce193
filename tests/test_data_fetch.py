"""fetch against a local HTTP server serving a replica: ranges, a cut connection, a resume."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lightmycells.data import fetch as fetch_mod
from lightmycells.data.__main__ import main
from lightmycells.simulate.replica import make_replica

REPO = Path(__file__).resolve().parents[1]
SERVER_SECONDS = 120  # the server shuts itself down after this, whatever the test does


class _Handler(BaseHTTPRequestHandler):
    """Static files with HTTP ranges; ``cut`` paths drop the connection after half the body
    of their first full request; every request is logged as (path, Range header)."""

    root: Path
    cut: set[str]
    log: list[tuple[str, str | None]]
    corrupt: set[str]
    stall: set[str] = set()  # paths whose body stops at half until ``release`` is set
    release: threading.Event
    ranges: bool = True  # False: a server that ignores Range and always sends 200

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        rel = self.path.lstrip("/")
        self.log.append((rel, self.headers.get("Range")))
        path = self.root / rel
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        if rel in self.corrupt:
            data = bytes(reversed(data))
        start = 0
        if (rng := self.headers.get("Range")) and self.ranges:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if rel in self.cut and start == 0:
            self.cut.discard(rel)
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if rel in self.stall and start == 0:  # hold the client mid-file: a kill lands there
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.release.wait(SERVER_SECONDS)
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server(tmp_path):
    """A bounded local HTTP server over a replica; yields (base_url, root, handler class)."""
    root = tmp_path / "remote"
    make_replica(root, studies=[3, 28], max_fovs=1, scale=1 / 8)
    fetch_mod.write_manifest(root, root / "manifest.tsv")
    handler = type("H", (_Handler,), {"root": root, "cut": set(), "log": [], "corrupt": set(),
                                      "stall": set(), "release": threading.Event()})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    stopper = threading.Timer(SERVER_SECONDS, httpd.shutdown)
    stopper.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root, handler
    finally:
        stopper.cancel()
        handler.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


def _tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.glob("Study_*/*"))}


def test_fetch_cut_mid_file_then_resumed_run_matches_source(server, tmp_path, capsys):
    base, root, handler = server
    big = max(root.glob("Study_*/*.ome.tiff"), key=lambda p: p.stat().st_size)
    rel = big.relative_to(root).as_posix()
    handler.cut = {rel}
    dest = tmp_path / "local"
    args = ["fetch", "--base-url", base, "--manifest", f"{base}/manifest.tsv",
            "--dest", str(dest), "--jobs", "4", "--backoff", "0", "--no-progress"]
    # first run: no retries, so the cut leaves a .part behind and the run fails
    assert main([*args, "--retries", "0"]) == 1
    out = capsys.readouterr().out
    assert f"FAILED {rel}" in out and "1 failed" in out
    part = dest / (rel + ".part")
    assert 0 < part.stat().st_size < big.stat().st_size
    assert not (dest / rel).exists()
    half = part.stat().st_size
    handler.log.clear()
    # second run: only the cut file is requested, from where it stopped
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "1 fetched (1 resumed)" in out
    assert [e for e in handler.log if e[0] != "manifest.tsv"] == [(rel, f"bytes={half}-")]
    assert not list(dest.rglob("*.part"))
    assert _tree(dest) == _tree(root)


def test_fetch_retries_a_cut_within_one_run(server, tmp_path):
    base, root, handler = server
    rel = sorted(p.relative_to(root).as_posix() for p in root.glob("Study_3/*"))[0]
    handler.cut = {rel}
    remotes = fetch_mod.read_manifest(f"{base}/manifest.tsv")
    summary = fetch_mod.fetch(base, tmp_path / "d", remotes, jobs=2, backoff=0, progress=False)
    assert summary.failed == {} and rel in summary.resumed
    assert _tree(tmp_path / "d") == _tree(root)
    ranges = [r for p, r in handler.log if p == rel]
    assert ranges[0] is None and ranges[1].startswith("bytes=") and ranges[1] != "bytes=0-"


def test_fetch_checksum_mismatch_and_missing_file_fail_alone(server, tmp_path):
    base, root, handler = server
    files = sorted(p.relative_to(root).as_posix() for p in root.glob("Study_28/*"))
    handler.corrupt = {files[0]}
    remotes = [*fetch_mod.read_manifest(f"{base}/manifest.tsv"),
               fetch_mod.Remote("Study_28/image_0_Nucleus.ome.tiff")]
    summary = fetch_mod.fetch(base, tmp_path / "d", remotes, jobs=3, backoff=0, progress=False)
    assert set(summary.failed) == {files[0], "Study_28/image_0_Nucleus.ome.tiff"}
    assert summary.failed[files[0]].startswith("MD5 ")
    assert "HTTP 404" in summary.failed["Study_28/image_0_Nucleus.ome.tiff"]
    assert not (tmp_path / "d" / files[0]).exists()
    assert len(summary.fetched) == len(remotes) - 2


def test_rerun_of_a_complete_fetch_downloads_nothing(server, tmp_path):
    base, root, handler = server
    remotes = fetch_mod.read_manifest(str(root / "manifest.tsv"), studies=[28])
    assert remotes and all(r.path.startswith("Study_28/") for r in remotes)
    first = fetch_mod.fetch(base, tmp_path / "d", remotes, retries=0, progress=False)
    handler.log.clear()
    second = fetch_mod.fetch(base, tmp_path / "d", remotes, retries=0, progress=False)
    assert len(first.fetched) == len(remotes) and len(second.present) == len(remotes)
    assert handler.log == [] and second.bytes == 0


def test_manifest_errors_name_the_source(tmp_path):
    bad = tmp_path / "m.tsv"
    bad.write_text("path\tsize\nStudy_1/a.ome.tiff\tlots\n")
    with pytest.raises(fetch_mod.FetchError, match=r"m.tsv:2: expected columns"):
        fetch_mod.read_manifest(str(bad))
    with pytest.raises(fetch_mod.FetchError, match="cannot read manifest"):
        fetch_mod.read_manifest(str(tmp_path / "nope.tsv"))


def test_default_remotes_are_the_organisers_list_once():
    remotes = fetch_mod.from_lists([4])
    names = [r.path for r in remotes]
    assert len(names) == len(set(names)) == 439 - 31  # Study4.tsv: 439 lines, its 31 nuclei twice
    assert "Study_4/image_61_Nucleus.ome.tiff" in names


def test_killed_fetch_resumes_to_the_same_files(server, tmp_path):
    base, root, handler = server
    big = max(root.glob("Study_*/*.ome.tiff"), key=lambda p: p.stat().st_size)
    stalled = big.relative_to(root).as_posix()
    handler.stall = {stalled}  # its body stops at half, so the kill always lands mid-file
    dest = tmp_path / "local"
    part = dest / (stalled + ".part")
    cmd = [sys.executable, "-m", "lightmycells.data", "fetch", "--base-url", base,
           "--manifest", f"{base}/manifest.tsv", "--dest", str(dest), "--jobs", "2",
           "--no-progress"]
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO,
                            stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        done = list(dest.glob("Study_*/*.ome.tiff"))
        if part.exists() and part.stat().st_size > 0 and len(done) >= 3:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    assert proc.wait(30) == -signal.SIGKILL, "the fetch finished before it could be killed"
    assert 0 < part.stat().st_size < big.stat().st_size  # cut off mid-file by the kill
    handler.stall = set()
    handler.release.set()
    handler.log.clear()
    summary = fetch_mod.fetch(base, dest, fetch_mod.read_manifest(str(root / "manifest.tsv")),
                              jobs=2, backoff=0, progress=False)
    assert summary.failed == {} and summary.resumed and summary.present
    resumed = [r for p, r in handler.log if r]
    assert resumed and all(not r.startswith("bytes=0-") for r in resumed)
    assert not list(dest.rglob("*.part"))
    assert _tree(dest) == _tree(root)


def test_list_written_for_every_fetched_study(tmp_path):
    (tmp_path / "Study_4").mkdir()
    (tmp_path / "Study_7").mkdir()
    path = fetch_mod.write_list(tmp_path)
    rows = path.read_text().splitlines()
    assert rows[0] == "study\tname"
    assert {r.split("\t")[0] for r in rows[1:]} == {"Study_4", "Study_7"}
    assert rows.count("Study_4\timage_61_Nucleus.ome.tiff") == 2  # the organisers' duplicate
    assert len(rows) - 1 == 439 + 160  # Study4.tsv and Study7.tsv line counts


def test_server_without_ranges_restarts_the_file(server, tmp_path):
    base, root, handler = server
    rel = sorted(p.relative_to(root).as_posix() for p in root.glob("Study_28/*"))[0]
    handler.cut, handler.ranges = {rel}, False
    remotes = [r for r in fetch_mod.read_manifest(str(root / "manifest.tsv")) if r.path == rel]
    summary = fetch_mod.fetch(base, tmp_path / "d", remotes, backoff=0, progress=False)
    assert summary.failed == {}
    ranges = [r for _, r in handler.log]
    assert len(ranges) == 2 and ranges[1].startswith("bytes=")  # asked to resume, got 200 ...
    assert (tmp_path / "d" / rel).read_bytes() == (root / rel).read_bytes()  # ... got it all
