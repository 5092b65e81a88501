"""The ``stealbench`` command: ``stealbench serve`` (a victim of a config as an Open Inference
Protocol service) and ``stealbench keys`` (the service's API keys).

The workflow itself runs with ``snakemake``; this command serves what it built.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

log = logging.getLogger("stealbench.serve")


def _serve_parser(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a victim of a config, behind a defense, over the Open Inference Protocol",
        description=(
            "Serve victim NAME as the workflow built it (RESULTS/victims/NAME/model.pt), behind "
            "defense instance ID of the config's defense grid, at POST "
            "/v2/models/NAME/infer (the KServe V2 / Open Inference Protocol)."
        ),
    )
    p.add_argument("--configfile", required=True, type=Path, help="the workflow's config")
    p.add_argument("--victim", required=True, metavar="NAME", help="a victim of the config")
    p.add_argument("--results", default=Path("results"), type=Path, help="the results folder")
    p.add_argument(
        "--defense", default=None, metavar="ID", help="a defense instance id (e.g. dawn, mad@0.5)"
    )
    p.add_argument("--granularity", default="probs", help="probs, label, top<k> or round<d>")
    p.add_argument(
        "--keys", default=None, type=Path, help="the keys file (none: open, one anonymous client)"
    )
    p.add_argument("--monitor", default=None, help="a stream monitor per client (prada)")
    p.add_argument("--on-flag", default="refuse", choices=["refuse", "flag"])
    p.add_argument(
        "--state",
        default=None,
        type=Path,
        help="the folder of the bill and the client records (default RESULTS/serve/NAME)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    p.add_argument("--port", default=8080, type=int)
    p.add_argument("--threads", default=1, type=int, help="torch threads (default 1)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(run=serve)


def _keys_parser(sub) -> None:
    p = sub.add_parser("keys", help="the service's API keys")
    ksub = p.add_subparsers(dest="action", required=True)
    add = ksub.add_parser(
        "add", help="create a key for CLIENT: print it once, write only its hash to FILE"
    )
    add.add_argument("client")
    add.add_argument("--keys", required=True, type=Path, help="the keys file (created if absent)")
    add.add_argument("--replace", action="store_true", help="rotate an existing client's key")
    add.add_argument(
        "--owner", action="store_true", help="the owner's key: sees every client's statistics"
    )
    add.set_defaults(run=keys_add)
    show = ksub.add_parser("list", help="the clients of a keys file")
    show.add_argument("--keys", required=True, type=Path)
    show.set_defaults(run=keys_list)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stealbench", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    _keys_parser(sub)
    return p


def serve(args) -> int:
    import torch

    from .notebook import load_config
    from .serve.app import create_app
    from .serve.clients import ClientGate
    from .serve.deploy import monitor_settings, served_victim
    from .serve.runner import run

    if args.monitor:
        from .defense.monitor import MONITORS
        from .serve.deploy import unknown

        if args.monitor not in MONITORS:
            raise unknown("--monitor", args.monitor, MONITORS)
    torch.set_num_threads(max(1, args.threads))
    config = load_config(args.configfile)
    model = served_victim(
        config, args.victim, args.results, args.defense, args.granularity, args.device
    )
    params = (
        monitor_settings(config, args.monitor, args.victim, args.results) if args.monitor else None
    )
    state = args.state or args.results / "serve" / args.victim
    gate = ClientGate(args.keys, state, args.monitor, params, args.on_flag)
    if args.keys is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %s without --keys: anyone who reaches it is one client", args.host)
    log.info(
        "serving %s (defense %s, %s) on http://%s:%d; state in %s",
        args.victim,
        args.defense or "none",
        args.granularity,
        args.host,
        args.port,
        state,
    )
    run(create_app([model], gate), args.host, args.port)
    gate.close()
    return 0


def keys_add(args) -> int:
    from .serve.clients import create_key

    key = create_key(args.keys, args.client, args.replace, args.owner)
    print(f"API key of {args.client} (shown once; {args.keys} keeps only its sha256):")
    print(key)
    return 0


def keys_list(args) -> int:
    from .serve.clients import load_keys

    for client in sorted(load_keys(args.keys).values()):
        print(client)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from .io import ArtefactError

    try:
        return args.run(args)
    except (ValueError, FileNotFoundError, ArtefactError) as err:
        # Config, victim, defense, artefact and key errors name what to fix; no traceback.
        print(f"stealbench {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
