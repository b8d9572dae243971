"""Serve the example service with gevent.pywsgi in one process:
``python -m loadtests.app --port 8080`` (endpoints from ``GEETCD_APP_ENDPOINTS``)."""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402

from gevent import pywsgi  # noqa: E402

from loadtests.app import app, worker  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    worker()  # register, campaign and mirror config before serving
    pywsgi.WSGIServer((args.host, args.port), app, log=None).serve_forever()


if __name__ == "__main__":
    main()
