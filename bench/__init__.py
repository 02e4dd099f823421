"""llmtel benchmarks: throughput, a naive Faust reference, alert latency and memory."""
