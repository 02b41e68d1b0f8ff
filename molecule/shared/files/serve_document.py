"""Test only: serve a folder over HTTPS (the host tests' client metadata documents), on one address.

python3 serve_document.py --address 203.0.114.1 --port 8444 --cert c.pem --key k.pem --root www
"""

from __future__ import annotations

import argparse
import functools
import http.server
import ssl


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("--address", "--cert", "--key", "--root"):
        parser.add_argument(name, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=args.root)
    server = http.server.ThreadingHTTPServer((args.address, args.port), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
