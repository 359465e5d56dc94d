"""The Open Inference Protocol V2 gRPC endpoint (``inference.GRPCInferenceService``), hosted by ``ServerInfo``.

``inference.proto`` is the protocol; ``protocol`` loads the modules generated from it at install; ``translate`` turns
gRPC messages into the HTTP V2 form and back (pure); ``server`` is the ``grpc.aio`` servicer that routes each call
by ``model_name`` to that deployment's ``ModelServer``.

Only the ``ServerInfo`` replica imports the generated modules: they register the ``inference.*`` messages in
protobuf's default pool, as ``tritonclient.grpc`` does, and one process cannot hold both.
"""
