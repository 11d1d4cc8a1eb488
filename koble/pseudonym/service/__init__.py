"""The pseudonym service over the network (``koble serve``): FastAPI on uvicorn, TLS by
default, per-party authentication and authorisation, Arrow IPC bulk endpoints, blind mode.

* :mod:`.config`: the service's TOML file; :mod:`.auth`: who calls and what they may do;
* :mod:`.operations`: what each request does, as library calls; :mod:`.app`: the HTTP API;
* :mod:`.server`: running it (TLS, client certificates, graceful shutdown);
* :mod:`.pki`: a local test CA; :mod:`.tls`: client certificates into the ASGI scope.
"""
