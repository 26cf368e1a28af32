"""``python -m engram.server [--host H] [--port P] [--workers N]``: run the server with uvicorn."""

from __future__ import annotations

import argparse

from engram.server.run import run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m engram.server", description=__doc__)
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--workers", type=int)
    args = parser.parse_args(argv)
    run(host=args.host, port=args.port, workers=args.workers)


if __name__ == "__main__":
    main()
