"""CLI: `artmem memgame design | serve | export` (added to the `memgame` subcommands)."""

from __future__ import annotations

import logging
import sys

from artmem.cliutils import add_csv_arg, add_out_arg, print_written

logger = logging.getLogger(__name__)


def _cmd_design(args) -> int:
    from artmem.memgame.design import DesignConfig, design_study

    cfg = DesignConfig(
        targets_per_level=args.targets_per_level, fillers=args.fillers, vigilance=args.vigilance,
        min_delay=args.min_delay, max_delay=args.max_delay, vigilance_within=args.vigilance_within,
        responses_per_image=args.responses_per_image, levels_per_participant=args.levels_per_participant,
        practice_trials=args.practice_trials, practice_repeats=args.practice_repeats,
        delay_distribution=args.delay_distribution, conditions=args.conditions,
        item_column=args.item_column, image_ms=args.image_ms, fixation_ms=args.fixation_ms,
        max_vigilance_miss=args.max_vigilance_miss, practice_min_hits=args.practice_min_hits,
        seed=args.seed)
    print_written(design_study(args.collection, args.out, cfg, fillers_from=args.fillers_from))
    return 0


def _cmd_serve(args) -> int:
    import secrets

    import uvicorn

    from artmem.errors import ArtmemError
    from artmem.memgame.server import create_app
    from artmem.web.middleware import LOOPBACK

    if not 0 <= args.port <= 65535:
        raise ArtmemError(f"--port {args.port}: not a port number")
    token = secrets.token_urlsafe(18)
    app = create_app(args.study, token, host=args.host, extra_hosts=tuple(args.allowed_host))
    shown = f"[{args.host}]" if ":" in args.host else args.host
    if args.host not in LOOPBACK:
        print(f"artmem memgame serve: binding {args.host}: the game is reachable from other machines",
              file=sys.stderr)
    print(f"memory game on http://{shown}:{args.port}/  (Ctrl+C to stop)\n"
          f"admin: http://{shown}:{args.port}/admin  token: {token}", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False,
                proxy_headers=True, forwarded_allow_ips=args.forwarded_allow_ips)
    return 0


def _cmd_export(args) -> int:
    from artmem.memgame.export import export_study

    print_written(export_study(args.study, args.out, csv=args.csv))
    return 0


def add_subcommands(msub) -> None:
    """Add design/serve/export to the `artmem memgame` subparsers."""
    d = msub.add_parser("design", help="design a memory-game study over a collection (level sequences)",
                        description="Draw the level sequences of a memory-game study (Khosla et al. "
                        "2015 sec. 2.3; defaults: LaMem's 66 targets + 30 fillers + 12 vigilance "
                        "repeats, delays 35-150 images) into a study folder for `memgame serve`.")
    d.add_argument("collection", help="the target images: collection file or image folder")
    add_out_arg(d)
    d.add_argument("--targets-per-level", type=int, default=66, help="targets per level, each shown twice (default 66, as LaMem)")
    d.add_argument("--fillers", type=int, default=30, help="fillers per level (shown once)")
    d.add_argument("--vigilance", type=int, default=12, help="vigilance repeats per level")
    d.add_argument("--min-delay", type=int, default=35, help="fewest images between a target and its repeat")
    d.add_argument("--max-delay", type=int, default=150, help="most images between a target and its repeat")
    d.add_argument("--vigilance-within", type=int, default=7,
                   help="a vigilance repeat comes at most this many positions after its first showing")
    d.add_argument("--delay-distribution", default="log-uniform", choices=["log-uniform", "uniform"],
                   help="how target delays spread over [min, max] (default log-uniform, so the decay alpha can be fitted)")
    d.add_argument("--responses-per-image", type=int, default=80,
                   help="scored repeats per target image over all participants")
    d.add_argument("--levels-per-participant", type=int, default=1, help="levels each participant plays (default 1)")
    d.add_argument("--practice-trials", type=int, default=12, help="length of the practice level (0: none)")
    d.add_argument("--practice-repeats", type=int, default=3, help="repeats in the practice level (default 3)")
    d.add_argument("--practice-min-hits", type=float, default=0.5,
                   help="fraction of practice repeats to find to go on to the game")
    d.add_argument("--max-vigilance-miss", type=float, default=0.25,
                   help="export excludes participants missing more than this fraction of vigilance repeats")
    d.add_argument("--conditions", default=None, metavar="COLUMN",
                   help="column naming the version of an image (e.g. rendering = high/medium/low): "
                   "a participant sees one version of each image")
    d.add_argument("--item-column", default=None,
                   help="with --conditions: column naming the image a version belongs to (default: "
                   "the file name without the condition, e.g. cat.high.png -> cat.png)")
    d.add_argument("--fillers-from", default=None, metavar="COLLECTION",
                   help="draw fillers, vigilance and practice images from this collection")
    d.add_argument("--image-ms", type=int, default=600, help="image duration in ms (default 600, as Khosla et al.)")
    d.add_argument("--fixation-ms", type=int, default=800, help="blank fixation after each image in ms (default 800)")
    d.add_argument("--seed", type=int, default=0, help="seed of the whole design (default 0)")
    d.set_defaults(func=_cmd_design)

    s = msub.add_parser("serve", help="run a designed study in the browser (local web app)",
                        description="Serve the memory game of a study folder; responses go to "
                        "STUDY/memgame.sqlite as they are made. Prints the admin token.")
    s.add_argument("study", help="study folder (`artmem memgame design -o STUDY`)")
    s.add_argument("--host", default="127.0.0.1",
                   help="interface to bind (keep 127.0.0.1 behind a reverse proxy)")
    s.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    s.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="public host name a reverse proxy forwards (repeatable)")
    s.add_argument("--forwarded-allow-ips", default="127.0.0.1",
                   help="proxies whose X-Forwarded-Proto/-For are trusted")
    s.set_defaults(func=_cmd_serve)

    e = msub.add_parser("export", help="responses table (+ trials, exclusions, summary) from a study",
                        description="Write responses.parquet (participant, image, delay, hit, "
                        "false_alarm, RTs, onsets) for `artmem memgame scores`, with "
                        "vigilance-failing participants excluded and listed, all trials and a summary.")
    e.add_argument("study", help="study folder")
    add_out_arg(e)
    add_csv_arg(e)
    e.set_defaults(func=_cmd_export)
