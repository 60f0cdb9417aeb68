"""spark-submit entry point of the prepare stage (same arguments as `reviewlake prepare`)."""
import os
import sys

try:
    from reviewlake.cli import main
except ImportError:  # a source checkout without the package installed
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
    from reviewlake.cli import main

if __name__ == "__main__":
    sys.exit(main(["prepare", *sys.argv[1:]]))
