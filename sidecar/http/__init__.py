"""The OpenAI-compatible HTTP port on the shared engine.

    server = await serve_http(engine, "127.0.0.1", 8080, api_key=None)   # sidecar.http.server
    ...
    await server.stop()

Routes (app.py): GET /v1/models[/{id}], POST /v1/chat/completions, POST /v1/completions
(`suffix` = fill-in-the-middle with the model's FIM tokens), POST /v1/embeddings, GET /health,
GET /metrics. Request bodies: schemas.py; OpenAI error bodies: errors.py; engine events to
JSON / SSE: responses.py; Host / key / body-size checks: security.py; Prometheus text: metrics.py.
(Throughput against mlx_lm.server lives with the other benchmarks: sidecar/benchmarks/http.py.)
"""
