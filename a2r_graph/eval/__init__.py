"""The evaluation harness: the paper's metrics (Pass@1, Cons@N, Pass@N, A2R) and their cost."""
