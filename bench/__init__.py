"""The harness: CLI, load driver, workloads, scenarios, metrics, reports, Locust files and local servers."""
