"""llmtel's stream processing: the Faust app, parsing, pricing, folding, rules and the CLI."""
