"""The sans-IO core: request builders and response parsers. No sockets, no gevent.

Builders return ``(path, body)`` pieces as plain dicts; parsers take decoded JSON (or bytes)
and return :mod:`geetcd.models` objects or :mod:`geetcd.errors` exceptions (returned, so the
caller decides when to raise). Everything here is tested with bytes in, models out.
"""

from geetcd.protocol.codec import Keyspace, b64, decode_json, encode_json, prefix_end, unb64

__all__ = ["Keyspace", "b64", "decode_json", "encode_json", "prefix_end", "unb64"]
