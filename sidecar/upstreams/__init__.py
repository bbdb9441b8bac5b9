"""Remote OpenAI-compatible engines (a vLLM or SGLang cluster, a hosted API, Ollama, another
sidecar) beside the local models: settings, keys, the HTTP client per upstream, the model list,
the circuit breaker, and the `Router` both edges ask where a request goes."""
