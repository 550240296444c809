"""``python -m benchmarks.recover [--split ...]`` runs the cell grid; ``--sanity`` first runs the quick check."""

import sys

from benchmarks.recover import cells, sanity

if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv[:1] == ["--sanity"]:
        sanity.main(argv[1:])
    else:
        cells.main(argv)
