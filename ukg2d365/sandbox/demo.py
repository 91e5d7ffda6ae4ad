"""`make demo`: start the sandbox, run the tool the way a user would, stop everything.

Each step runs the real `ukg2d365` command in a child process against the local simulators over
HTTPS, so what you see is exactly what a user sees. Nothing keeps running afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from ukg2d365.sandbox import Sandbox

STEPS: list[tuple[str, list[str], set[int]]] = [
    ("Check both systems", ["ping"], {0}),
    ("Create the missing D365 dimension values", ["sync-dimensions", "--yes"], {0}),
    ("Align D365 workers with UKG", ["sync-employees", "--yes"], {0, 1}),
    ("Preview the pay runs that are due", ["post-payroll", "--due", "--dry-run"], {0}),
    ("Post them", ["post-payroll", "--due", "--yes"], {0}),
    ("Run it again: nothing new is posted", ["post-payroll", "--due", "--yes"], {0}),
    ("What the ledger knows", ["status"], {0}),
]


def main(directory: Path | None = None) -> int:
    folder = (directory or Path("demo")).resolve()
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    width = min(shutil.get_terminal_size((110, 40)).columns, 140)
    with Sandbox(folder, port=0) as sandbox:
        env = dict(os.environ, **sandbox.env(), COLUMNS=str(width))
        env.pop("UKG2D365_CONFIG", None)
        print(f"Sandbox running: UKG {sandbox.urls['ukg']}, D365 {sandbox.urls['d365']}, "
              f"Entra ID {sandbox.urls['entra']}")
        print(f"Config written to {sandbox.config_path} (CA: {sandbox.ca_path})\n")
        for title, args, ok_codes in STEPS:
            shown = " ".join(["ukg2d365", *args])
            print(f"\n=== {title}\n$ {shown}", flush=True)
            code = subprocess.call([sys.executable, "-m", "ukg2d365", "-c", str(sandbox.config_path.resolve()), *args],
                                   env=env, cwd=folder)
            if code not in ok_codes:
                print(f"\ndemo: `{shown}` exited {code}", file=sys.stderr)
                return code
        journals = sandbox.d365.state.journals()
        print(f"\nD365 now holds {len(journals)} journal(s): " +
              ", ".join(f"{j['JournalBatchNumber']} ({len(j['lines'])} lines)" for j in journals))
    print("Sandbox stopped. Everything it wrote is in", folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
