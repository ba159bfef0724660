"""Training on a zip bomb: time and peak memory until ``python -m embedder train`` refuses it.

Issue 30's case: a zip of about 1.6 KB whose bzip2 member ``ml-latest/ratings.csv`` holds 1.5 GiB (a
header, one rating, then newlines) but declares 1,000,000 bytes in both its local header and the central
directory. Before the fix, training inflated it a whole read at a time and refused it only after 27 s at
3.4 GiB. Builds the zip in a scratch folder (compressing 1.5 GiB, about a minute of one core), then runs
``/usr/bin/time -v python -m embedder train --data that.zip --out scratch/out`` and prints the exit code,
the error line, the wall time and the peak RSS; also the same for a 100-byte plain CSV that is refused for
another reason (too few ratings), the floor of starting Python and importing the trainer; and how long ``embedder.data.load_ratings`` alone
takes to refuse the bomb.

    .venv/bin/python benchmarks/bzip2_bomb.py [--gib 1.5] [--keep PATH]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEADER = b"userId,movieId,rating,timestamp\n1,2,3,4\n"
DECLARED = 1_000_000
CHUNK = 64 << 20


def write_bomb(path: Path, size: int) -> None:
    """A zip whose bzip2 member holds ``size`` bytes but declares :data:`DECLARED`."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_BZIP2, compresslevel=9) as zf:
        with zf.open("ml-latest/ratings.csv", "w") as member:
            member.write(HEADER)
            left, block = size - len(HEADER), b"\n" * CHUNK
            while left > 0:
                member.write(block[: min(left, CHUNK)])
                left -= CHUNK
    blob = bytearray(path.read_bytes())
    for signature, size_at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # local header, central directory
        at = blob.find(signature) + size_at
        assert int.from_bytes(blob[at : at + 4], "little") == size, "not the uncompressed size field"
        blob[at : at + 4] = DECLARED.to_bytes(4, "little")
    path.write_bytes(bytes(blob))


def timed_train(data: Path, out: Path) -> dict:
    """``/usr/bin/time -v python -m embedder train --data DATA``: exit code, last stderr line, wall s, peak MiB."""
    command = ["/usr/bin/time", "-v", sys.executable, "-m", "embedder", "train", "--data", str(data)]
    done = subprocess.run(
        [*command, "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    wall = re.search(
        r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", done.stderr
    )
    hours, minutes, seconds = wall.groups()
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    return {
        "code": int(re.search(r"Exit status: (\d+)", done.stderr)[1]),
        "error": errors[-1] if errors else "(no error line)",
        "wall_s": int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds),
        "peak_mib": int(peak[1]) / 1024,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.5, help="bytes the member holds, GiB (%(default)s)")
    parser.add_argument("--keep", type=Path, help="also keep the zip at this path")
    args = parser.parse_args(argv)
    if not 0.01 <= args.gib <= 1.9:  # under 2 GiB: no zip64 fields to patch
        parser.error("--gib must be from 0.01 to 1.9")
    if not Path("/usr/bin/time").exists():
        raise SystemExit("/usr/bin/time is not installed: apt-get install -y time")
    with tempfile.TemporaryDirectory(prefix="bzip2-bomb-") as tmp:
        workdir = Path(tmp)
        bomb, csv = workdir / "ml-latest.zip", workdir / "tiny.csv"
        started = time.monotonic()
        write_bomb(bomb, int(args.gib * (1 << 30)))
        with zipfile.ZipFile(bomb) as zf:
            info = zf.getinfo("ml-latest/ratings.csv")
        print(
            f"{bomb.name}: {bomb.stat().st_size:,} bytes; member {info.filename}: compression method "
            f"{info.compress_type} (bzip2), holds {args.gib:g} GiB, declares {info.file_size:,} bytes "
            f"(built in {time.monotonic() - started:.0f} s)",
            flush=True,
        )
        if args.keep:
            args.keep.write_bytes(bomb.read_bytes())
        sys.path.insert(0, str(REPO))
        from embedder.data import DataError, load_ratings

        started = time.perf_counter()
        try:
            load_ratings(bomb)
            raise SystemExit("load_ratings read the bomb without an error")
        except DataError as err:
            print(
                f"load_ratings alone, in this process: refused in {(time.perf_counter() - started) * 1000:.1f} ms: {err}"
            )
        csv.write_text("user_id,movie_id,rating\n1,2,3\n")
        for name, data in (("bomb", bomb), ("floor: a 1-rating CSV", csv)):
            result = timed_train(data, workdir / "out")
            print(
                f"train --data {data.name} ({name}): exit {result['code']}, {result['wall_s']:.2f} s wall, "
                f"peak RSS {result['peak_mib']:.0f} MiB; {result['error']}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
