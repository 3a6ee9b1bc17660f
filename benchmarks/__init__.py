"""streamops benchmarks: each compares an operator with its floor in the same run."""
