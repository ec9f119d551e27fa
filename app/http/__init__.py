"""The one place that knows ASGI and Litestar's request plumbing.

- `context.py`: the request context, created once per request by the edge (request id, caller, route
  template, usage);
- `edge.py`: the outer ASGI wrapper every request passes (request id, HTTP metrics, in-progress, usage),
  which tries the hot routes before handing the request to Litestar;
- `hot.py`: the hot-route registry features declare their hot routes in;
- `authenticate.py`: `Authenticator.check(headers, requirement) -> Principal | Refusal | Pending`, used by
  the routed admission (`admission.py`) and the hot routes alike;
- `responses.py`: prebuilt raw responses and the event-stream relay, shared by routed and hot answers.
"""
