"""Run every benchmark: ``python -m benchmarks`` (or ``make bench``)."""

from benchmarks import epoch_overhead

if __name__ == "__main__":
    epoch_overhead.main()
