"""Pure (sans-I/O) SIP: no sockets, clocks or global randomness; time and ids are passed in.

Modules, bottom-up:

* `syntax`, `uri`, `headers`, `message`: the RFC 3261 message model, `parse_message` / `bytes(msg)`.
* `sdp`, `offer_answer`: RFC 4566 session descriptions and RFC 3264 audio offer/answer.
* `digest`: RFC 2617/7616 Digest authentication, client retry flow and server verification.
* `transaction`, `client_transaction`, `server_transaction`, `transaction_layer`: RFC 3261 section 17
  over UDP, timers as deadlines.
* `dialog`: RFC 3261 section 12 dialog state and in-dialog requests.
* `endpoint`: `SipEndpoint`, the user agent the call server drives (outbound legs, inbound calls,
  registrar), built from `events` (its vocabulary and configuration), `endpoint_core`,
  `outbound`, `inbound`, `in_dialog`, `call_leg`, `registrar`, `server_auth` and `malformed`.
"""
