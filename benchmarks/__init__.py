"""Speed and memory benchmarks (`make bench`). Each module has a `main()` that prints its
figures; they report ratios measured in one run, since these machines are shared and noisy."""
