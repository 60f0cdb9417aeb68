"""spark-submit entry point of the quality stage (same arguments as `reviewlake quality`).

Exit codes: 0 passed, 3 an Error-level check failed (the gate), 2 a usage or input problem.
"""
import os
import sys

try:
    from reviewlake.cli import main
except ImportError:  # a source checkout without the package installed
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
    from reviewlake.cli import main

if __name__ == "__main__":
    sys.exit(main(["quality", *sys.argv[1:]]))
