"""`python -m tests.bench.flux [--models N] [--build-only]`: see tests/bench/flux/run.py."""

from tests.bench.flux.run import main

raise SystemExit(main())
