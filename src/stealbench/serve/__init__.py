"""``stealbench serve``: a victim behind a defense, as an Open Inference Protocol service.

The Open Inference Protocol (the KServe V2 REST protocol: ``POST /v2/models/{name}/infer``
with typed tensors) is what KServe, Triton, MLServer, TorchServe and Seldon speak, so any
attack code, not only stealbench's, can be tested against stealbench's defenses.

- :mod:`.app`     the protocol's endpoints over one or more :class:`~.app.ServedModel`;
- :mod:`.runner`  running the app with uvicorn, blocking (the command) or in the background;
- :mod:`.clients` the gate of a deployment: API keys, a durable bill, PRADA and DAWN per client;
- :mod:`.deploy`  a victim the workflow built, behind a defense instance of its config.

The command is ``stealbench serve`` (:mod:`stealbench.cli`).

Why FastAPI and uvicorn: KServe's and MLServer's Python servers are built on the same two, but
each brings dozens of packages (gRPC, Kafka, Kubernetes clients, OpenTelemetry) whose pins clash
with this environment's (MLServer 1.7.1 pins fastapi 0.115, KServe 0.21 pillow 13); the
protocol's REST surface is six routes, which a FastAPI app states in one short file.
"""
