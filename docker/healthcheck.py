"""The images' HEALTHCHECK: exit 0 when the server's /healthz answers 200, 1 otherwise.

The slim images have no curl; this uses only the standard library and follows the server's
own settings (ACTSERVE_HOST, ACTSERVE_PORT), so a changed port keeps the check right.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

PATH = "/healthz"
TIMEOUT_S = 4.0
#: Addresses that mean "every interface": the check goes to loopback instead.
WILDCARDS = {"", "0.0.0.0", "::", "[::]"}


def health_url(environ: dict[str, str]) -> str:
    host = environ.get("ACTSERVE_HOST", "127.0.0.1").strip()
    if host in WILDCARDS:
        host = "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    port = environ.get("ACTSERVE_PORT", "8000").strip()
    return f"http://{host}:{port}{PATH}"


def check(url: str) -> str | None:
    """None when healthy, else why not."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            return None if response.status == 200 else f"{url} answered {response.status}"
    except urllib.error.HTTPError as error:
        return f"{url} answered {error.code}"
    except (OSError, ValueError) as error:
        return f"{url}: {error}"


def main() -> int:
    problem = check(health_url(dict(os.environ)))
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
