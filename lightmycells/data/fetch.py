"""Download studies of S-BIAD1047 over HTTP(S): parallel, resumable, verified.

Each file goes to ``DEST/Study_N/name.part`` first; an interrupted transfer is continued with
an HTTP ``Range: bytes=<have>-`` request (a server that answers 200 instead of 206 restarts
it from zero), and only a file whose size matches (the manifest's size, else the length the
server declared) and whose MD5 matches (where the manifest gives one) is renamed to its
final name. A file already at its final name is not fetched again, so a rerun resumes where
a killed one stopped. What is listed comes from a manifest (``path<TAB>size[<TAB>md5]``, a
local file or a URL) or, by default, from the organisers' file lists (duplicates once).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.client import HTTPException
from pathlib import Path

from tqdm import tqdm

from lightmycells.data import catalog

#: The archive's HTTPS file tree (BioStudies FIRE layout). Not reachable from the project's
#: build machine, so unverified there: override with ``--base-url`` if the archive moved.
DEFAULT_BASE_URL = "https://ftp.ebi.ac.uk/biostudies/fire/S-BIAD/047/S-BIAD1047/Files"
CHUNK = 1 << 20
PART = ".part"


class FetchError(RuntimeError):
    """A manifest or destination that cannot be used; the message names it."""


@dataclass(frozen=True)
class Remote:
    """One file to fetch: path relative to the base URL and to DEST, expected size and MD5."""

    path: str
    size: int | None = None
    md5: str | None = None


@dataclass
class Summary:
    """What a fetch did; ``failed`` maps a path to its one-line reason."""

    fetched: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    resumed: list[str] = field(default_factory=list)
    bytes: int = 0
    seconds: float = 0.0

    def lines(self) -> list[str]:
        """The human summary: totals, then one line per failed file."""
        rate = self.bytes / max(self.seconds, 1e-9) / 1e6
        head = (f"fetch: {len(self.fetched)} fetched ({len(self.resumed)} resumed), "
                f"{len(self.present)} already here, {len(self.failed)} failed; "
                f"{self.bytes / 1e6:.1f} MB in {self.seconds:.1f} s ({rate:.1f} MB/s)")
        return [head, *(f"  FAILED {p}: {why}" for p, why in sorted(self.failed.items()))]


def from_lists(studies: Sequence[int | str] | None) -> list[Remote]:
    """The organisers' listed files of ``studies`` (each once; sizes unknown)."""
    return [Remote(f"{s.name}/{name}") for s in catalog.select(studies)
            for name in dict.fromkeys(s.rows)]


def read_manifest(source: str, studies: Sequence[int | str] | None = None) -> list[Remote]:
    """Parse a manifest TSV (header ``path size [md5]``) from a path or an http(s) URL.

    Raises
    ------
    FetchError
        When it cannot be read or a row is malformed (naming the source and line).
    """
    try:
        if urllib.parse.urlparse(source).scheme in ("http", "https"):
            with urllib.request.urlopen(source, timeout=60) as resp:
                text = resp.read().decode("utf-8")
        else:
            text = Path(source).read_text(encoding="utf-8")
    except (OSError, urllib.error.URLError, HTTPException) as exc:
        raise FetchError(f"{source}: cannot read manifest ({exc})") from None
    keep = {s.name for s in catalog.select(studies)} if studies else None
    out = []
    for line, row in enumerate(csv.DictReader(io.StringIO(text), delimiter="\t"), start=2):
        try:
            remote = Remote(row["path"], int(row["size"]) if row.get("size") else None,
                            row.get("md5") or None)
        except (KeyError, TypeError, ValueError):
            raise FetchError(f"{source}:{line}: expected columns path, size[, md5]") from None
        if keep is None or remote.path.split("/")[0] in keep:
            out.append(remote)
    return list({r.path: r for r in out}.values())


def write_manifest(root: str | Path, out: str | Path) -> Path:
    """Manifest of every file under ``root/Study_*`` (path, size, md5), e.g. for a mirror."""
    root = Path(root)
    rows = []
    for path in sorted(root.glob("Study_*/*")):
        if path.is_file() and not path.name.endswith(PART):
            rows.append((path.relative_to(root).as_posix(), str(path.stat().st_size), _md5(path)))
    out = Path(out)
    out.write_text("path\tsize\tmd5\n" + "".join("\t".join(r) + "\n" for r in rows))
    return out


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


class _Transfer:
    """One file's download with retries; progress goes to a shared, locked bar."""

    def __init__(self, base_url: str, dest: Path, remote: Remote, *, retries: int,
                 timeout: float, backoff: float, bar: tqdm, lock: threading.Lock) -> None:
        self.url = base_url.rstrip("/") + "/" + urllib.parse.quote(remote.path)
        self.final = dest / remote.path
        self.part = self.final.with_name(self.final.name + PART)
        self.remote, self.retries, self.timeout, self.backoff = remote, retries, timeout, backoff
        self.bar, self.lock = bar, lock
        self.expected = remote.size
        self.bytes = 0

    def run(self) -> str:
        """``"present"``, ``"fetched"`` or ``"resumed"``; raises FetchError with the reason."""
        if self.final.exists() and (self.expected is None
                                    or self.final.stat().st_size == self.expected):
            return "present"
        self.final.parent.mkdir(parents=True, exist_ok=True)
        resumed = self.part.exists() and self.part.stat().st_size > 0
        last = "no attempt"
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                if self._attempt():
                    break
                last = "connection ended early"
            except urllib.error.HTTPError as exc:
                if exc.code in (404, 403, 410):
                    raise FetchError(f"HTTP {exc.code} {exc.reason}") from None
                last = f"HTTP {exc.code} {exc.reason}"
            except (urllib.error.URLError, HTTPException, OSError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            resumed = resumed or (self.part.exists() and self.part.stat().st_size > 0)
        else:
            raise FetchError(f"gave up after {self.retries + 1} attempts ({last}); "
                             f"{self.part.name} kept for the next run")
        self._verify()
        os.replace(self.part, self.final)
        return "resumed" if resumed else "fetched"

    def _attempt(self) -> bool:
        """One request from the current ``.part`` size; True when the file is complete."""
        have = self.part.stat().st_size if self.part.exists() else 0
        if self.expected is not None and have >= self.expected:
            if have > self.expected:
                self.part.unlink()
                have = 0
            else:
                return True
        headers = {"Range": f"bytes={have}-"} if have else {}
        request = urllib.request.Request(self.url, headers=headers)
        with urllib.request.urlopen(request, timeout=self.timeout) as resp:
            if have and resp.status != 206:  # the server ignored the range: start again
                have = 0
            declared = self._declared_total(resp, have)
            if self.expected is None:
                self.expected = declared
            elif declared is not None and declared != self.expected:
                raise FetchError(f"server says {declared} bytes, manifest {self.expected}")
            # unbuffered, and read1: what arrived is on disk at once, so a killed run
            # resumes from every byte it received
            with self.part.open("ab" if have else "wb", buffering=0) as handle:
                while block := resp.read1(CHUNK):
                    view = memoryview(block)
                    while view:  # a raw file may take fewer bytes than given
                        view = view[handle.write(view):]
                    self.bytes += len(block)
                    with self.lock:
                        self.bar.update(len(block))
        size = self.part.stat().st_size
        return self.expected is None or size == self.expected

    @staticmethod
    def _declared_total(resp, have: int) -> int | None:
        content_range = resp.headers.get("Content-Range", "")
        if "/" in content_range and not content_range.endswith("/*"):
            return int(content_range.rsplit("/", 1)[1])
        length = resp.headers.get("Content-Length")
        return have + int(length) if length is not None else None

    def _verify(self) -> None:
        size = self.part.stat().st_size
        if self.expected is not None and size != self.expected:
            raise FetchError(f"size {size} bytes, expected {self.expected}")
        if self.remote.md5:
            got = _md5(self.part)
            if got != self.remote.md5.lower():
                self.part.unlink()
                raise FetchError(f"MD5 {got}, expected {self.remote.md5} (partial file removed)")


def fetch(
    base_url: str,
    dest: str | Path,
    remotes: Sequence[Remote],
    *,
    jobs: int = 8,
    retries: int = 5,
    timeout: float = 60.0,
    backoff: float = 1.0,
    progress: bool = True,
) -> Summary:
    """Download ``remotes`` from ``base_url`` into ``dest`` (see the module docstring).

    Files are independent: one that fails is reported in the summary and the others go on.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    summary = Summary()
    lock = threading.Lock()
    known = sum(r.size for r in remotes if r.size) or None
    start = time.monotonic()
    with tqdm(total=known, unit="B", unit_scale=True, desc="fetch", disable=not progress) as bar:
        transfers = [_Transfer(base_url, dest, r, retries=retries, timeout=timeout,
                               backoff=backoff, bar=bar, lock=lock) for r in remotes]

        def one(transfer: _Transfer) -> tuple[_Transfer, str]:
            try:
                return transfer, transfer.run()
            except FetchError as exc:
                return transfer, f"failed: {exc}"

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            for transfer, outcome in pool.map(one, transfers):
                path = transfer.remote.path
                summary.bytes += transfer.bytes
                if outcome == "present":
                    summary.present.append(path)
                elif outcome.startswith("failed: "):
                    summary.failed[path] = outcome.removeprefix("failed: ")
                else:
                    summary.fetched.append(path)
                    if outcome == "resumed":
                        summary.resumed.append(path)
    summary.seconds = time.monotonic() - start
    return summary


def write_list(dest: str | Path) -> Path:
    """Write ``DEST/files.tsv``: the organisers' list of every study folder under ``DEST``.

    Duplicates are kept; ``index`` compares the download against it. Studies fetched by
    earlier runs stay listed.
    """
    dest = Path(dest)
    present = [s for s in catalog.studies().values() if (dest / s.name).is_dir()]
    path = dest / catalog.LIST_FILE
    rows = [f"{s.name}\t{n}\n" for s in present for n in s.rows]
    path.write_text("study\tname\n" + "".join(rows))
    return path
