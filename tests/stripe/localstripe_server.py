"""localstripe 1.15.10 on loopback, state in memory only: the wrapper of shared/reference/test-infra.md Appendix B.

Usage: .cache/venv/bin/python tests/stripe/localstripe_server.py PORT

Prints the port it listens on, then serves (PORT 0 takes a free port).

Two shims bring localstripe closer to the Stripe API paygate calls; each follows Stripe's documented behaviour
and tests/stripe/README.md lists them as gaps (what they emulate was not exercised against Stripe itself):

* `automatic_payment_methods[enabled]` / `[allow_redirects]` on `POST /v1/payment_intents` are validated and
  dropped (localstripe answers 400 "Unexpected automatic_payment_methods" otherwise; with an explicit
  payment method they change nothing for a card);
* `Idempotency-Key` on POST (localstripe has none): the first answer of a key that started executing (2xx or
  402) is stored and replayed, byte for byte and with `Idempotent-Replayed: true`, to the same API key; the
  same key with another path or body gets 400 `idempotency_error`, one still executing gets 409.
"""

import socket
import sys

from aiohttp import web
from localstripe import resources, server
from localstripe.errors import UserError

resources.Store.dump_to_disk = lambda self: None   # don't write the shared pickle file

_create_payment_intent = resources.PaymentIntent._api_create.__func__


def _create_payment_intent_with_automatic_methods(cls, automatic_payment_methods=None, **data):
    if automatic_payment_methods is not None:
        if not isinstance(automatic_payment_methods, dict) \
                or set(automatic_payment_methods) - {'enabled', 'allow_redirects'} \
                or automatic_payment_methods.get('enabled') not in ('true', 'false') \
                or automatic_payment_methods.get('allow_redirects', 'always') not in ('always', 'never'):
            raise UserError(400, 'Invalid automatic_payment_methods', {'param': 'automatic_payment_methods'})
    return _create_payment_intent(cls, **data)


resources.PaymentIntent._api_create = classmethod(_create_payment_intent_with_automatic_methods)

_replies = {}      # (Authorization, Idempotency-Key) -> (path, body, status, reply bytes)
_executing = set()


def _idempotency_error(status, message):
    error = UserError(status, message)
    error.body['error']['type'] = 'idempotency_error'
    return error.to_response()


@web.middleware
async def idempotency(request, handler):
    key = request.headers.get('Idempotency-Key')
    if request.method != 'POST' or key is None:
        return await handler(request)
    body = await request.read()   # cached by aiohttp: the handler reads it again
    slot = (request.headers.get('Authorization', ''), key)
    if slot in _replies:
        path, first_body, status, reply = _replies[slot]
        if path != request.path or first_body != body:
            return _idempotency_error(400, 'Keys for idempotent requests can only be used with the same '
                                           'parameters they were first used with.')
        return web.Response(status=status, body=reply, content_type='application/json',
                            headers={'Idempotent-Replayed': 'true', 'Idempotency-Key': key})
    if slot in _executing:
        return _idempotency_error(409, 'There is currently another in-progress request using this '
                                       'Idempotent Key.')
    _executing.add(slot)
    try:
        try:
            response = await handler(request)
        except UserError as e:
            response = e.to_response()
    finally:
        _executing.discard(slot)
    if response.status < 400 or response.status == 402:
        _replies[slot] = (request.path, body, response.status, response.body)
    response.headers['Idempotency-Key'] = key
    return response


server.app.middlewares.append(idempotency)   # innermost: after localstripe's authentication

port = int(sys.argv[1]) if len(sys.argv) > 1 else 8420
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(('127.0.0.1', port))
print(sock.getsockname()[1], flush=True)
web.run_app(server.app, sock=sock, print=None)
