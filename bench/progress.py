"""Progress lines on stderr while the bench runs (stdout gets the final table)."""

from __future__ import annotations

import sys
import time


def log(message: str) -> None:
    """One line of progress, with the time of day."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
