"""A deeper fuzz corpus than the test suite's: thousands of mutated uploads through the real
service on loopback, counted by status and error code.

    python benchmarks/fuzz.py                              # 3,000 cases, the bundled model
    python benchmarks/fuzz.py --cases 10000 --first-seed 50000 --concurrency 8
    python benchmarks/fuzz.py --case mkv-vp9/resize/1234   # replay one case, show the answer
    python benchmarks/fuzz.py --save failures/             # keep the bytes of each failure

Cases come from tests/service/fuzz.py (seed videos of every allowed container × codec, ten
mutation kinds), then the malformed requests of `HOSTILE_REQUESTS`. Printed: counts by status
and error code, by mutation kind, and every answer that breaks the contract (a 5xx, a 4xx
without a JSON error, a dropped connection) with the case name that reproduces it. The exit
status is 1 when there is any.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from service.embedded import EmbeddedServer
from service.settings import Settings

# The corpus is the test suite's (tests/service/fuzz.py): importable from a checkout's root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.service import fuzz


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=3000)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--case", action="append", help="Replay only these cases (repeatable).")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--store", type=Path, help="Model store (default: the bundled one).")
    parser.add_argument("--decode-timeout", type=float, default=10.0)
    parser.add_argument("--save", type=Path, help="Write each failing upload here.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as directory:
        seeds = {name: fuzz.write_seed(name, Path(directory)).read_bytes() for name in fuzz.SEEDS}
    if args.case:
        cases = [fuzz.Case.parse(name) for name in args.case]
    else:
        cases = fuzz.cases(args.cases, first_seed=args.first_seed)
    overrides = {"store": args.store} if args.store else {}
    settings = Settings(
        decode_timeout_s=args.decode_timeout, admin_token="fuzz-admin-token", **overrides
    )
    started = time.perf_counter()
    with (
        EmbeddedServer(settings) as server,
        httpx.Client(base_url=server.url, timeout=120) as client,
        ThreadPoolExecutor(args.concurrency) as pool,
    ):
        outcomes = list(pool.map(lambda case: fuzz.send(client, case, seeds), cases))
        requests = {} if args.case else fuzz.HOSTILE_REQUESTS
        answers = {name: _request(client, *requests[name]) for name in requests}
        alive = client.get("/healthz").status_code == 200
        good = fuzz.classify(client, seeds["mp4-h264"]).status_code == 200
    seconds = time.perf_counter() - started

    if args.case:
        for o in outcomes:
            print(f"{o.case.name}: {o.description} -> {o.status} {o.error or ''} {o.problem or ''}")
        return int(any(o.problem for o in outcomes))
    print(f"{len(outcomes)} mutated uploads and {len(answers)} malformed requests in "
          f"{seconds:.0f} s, concurrency {args.concurrency}")  # fmt: skip
    print("\nby status and error code:")
    by_status = Counter((o.status, o.error) for o in outcomes)
    for (status, error), count in sorted(by_status.items(), key=lambda item: -item[1]):
        print(f"  {count:6d}  {status or 'no answer'} {error or ''}")
    print("\nby mutation kind (share answered 200):")
    for kind in fuzz.MUTATIONS:
        of_kind = [o for o in outcomes if o.case.kind == kind]
        accepted = sum(o.status == 200 for o in of_kind)
        print(f"  {kind:10s} {len(of_kind):6d} cases, {accepted / max(1, len(of_kind)):4.0%} 200")
    failures = [o for o in outcomes if o.problem]
    failed_requests = {n: why for n, why in answers.items() if why}
    print(f"\ncontract broken: {len(failures)} uploads, {len(failed_requests)} requests")
    for o in failures:
        print(f"  {o.case.name}  ({o.description}): {o.problem}")
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            data, _ = o.case.apply(seeds[o.case.seed_video])
            (args.save / o.case.name.replace("/", "_")).write_bytes(data)
    for name, why in failed_requests.items():
        print(f"  request '{name}': {why}")
    print(f"server alive afterwards: healthz {'ok' if alive else 'FAILED'}, "
          f"a good classify {'ok' if good else 'FAILED'}")  # fmt: skip
    return int(bool(failures or failed_requests) or not (alive and good))


def _request(client: httpx.Client, method: str, path: str, arguments: dict) -> str | None:
    try:
        response = client.request(method, path, **arguments)
    except httpx.TransportError as exc:
        return f"no answer: {exc}"
    if response.status_code == 200:
        return "200 to a malformed request"
    return fuzz.problem(response)


if __name__ == "__main__":
    raise SystemExit(main())
