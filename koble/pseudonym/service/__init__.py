"""The pseudonym service over the network (``koble serve``): FastAPI on uvicorn, TLS by
default, per-party authentication and authorisation, Arrow IPC bulk endpoints, blind mode.

* :mod:`.config`: the service's TOML file; :mod:`.auth`: who calls and what they may do;
* :mod:`.operations`: what each bulk request does, as library calls; :mod:`.reid`: the
  re-identification desk (requests, approvals, one release); :mod:`.ingest_result`: the
  answer to a sealed ingest (forwarded batch and rejects);
* :mod:`.app`: the HTTP API, with :mod:`.routes_bulk` and :mod:`.routes_reid`;
  :mod:`.gate`: authentication, work slots, back-pressure and responses every route shares;
  :mod:`.openapi`: what the published schema says each route answers;
* :mod:`.server`: running it (TLS, client certificates, graceful shutdown);
* :mod:`.pki`: a local test CA; :mod:`.tls`: client certificates into the ASGI scope.
"""
