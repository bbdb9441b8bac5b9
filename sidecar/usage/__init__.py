"""Usage and cost: what each model and upstream served (requests, tokens, errors, latency)."""
