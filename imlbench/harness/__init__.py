"""Running the protocol in one process: pipelines, the evaluator (the answer key), the runner, and
the diagnostics that run through it."""
