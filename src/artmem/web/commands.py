"""`artmem serve COLLECTION`: the local web explorer."""

from __future__ import annotations

import logging
import sys

from artmem.cliutils import add_collection_arg, add_device_arg

logger = logging.getLogger(__name__)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "serve",
        help="browse a scored collection in the browser (local web explorer)",
        description="Start the local web explorer: collection grid sorted by memorability, artwork "
        "pages (score, percentile, map, labels, measures, similar artworks), image upload and a "
        "JSON API (/api, /openapi.json). Binds 127.0.0.1 unless told otherwise.",
    )
    add_collection_arg(p)
    p.add_argument("--results", metavar="ANALYSIS_DIR",
                   help="analysis folder (artmem analyze -o DIR): scores/, features/, maps/, measures/, "
                   "predictions/; uploads kept with add=true go to DIR/uploads/")
    p.add_argument("--model", default="auto",
                   help="memorability model for uploads, live maps and scoring the collection when the "
                   "results have no scores table; auto = the scores table's model, else resmem; "
                   "'none' to only browse")
    p.add_argument("--run", action="append", default=[], metavar="CLASSIFIER_RUN",
                   help="trained classifier run folder whose predicted labels are shown (repeatable)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1; anything but "
                   "loopback exposes your collection to the network)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="upload size limit in MB (default 20)")
    p.add_argument("--max-pixels", type=int, default=None,
                   help="decompression-bomb limit for images, in pixels (default 89,478,485)")
    p.add_argument("--no-maps", action="store_true", help="do not compute memorability maps live")
    add_device_arg(p)
    p.set_defaults(func=run_serve)


def run_serve(args) -> int:
    import uvicorn

    from artmem.data.images import set_max_image_pixels
    from artmem.errors import ArtmemError
    from artmem.web.app import LOOPBACK, create_app
    from artmem.web.limits import server_options

    if args.port < 0 or args.port > 65535:
        raise ArtmemError(f"--port {args.port}: not a port number")
    if args.max_upload_mb <= 0:
        raise ArtmemError("--max-upload-mb must be positive")
    if args.host not in LOOPBACK:
        print(f"artmem serve: warning: binding {args.host} makes the collection and the upload "
              "endpoint reachable from other machines; there is no authentication", file=sys.stderr)
    if args.max_pixels:
        set_max_image_pixels(args.max_pixels)
    app = create_app(args.collection, results=args.results, model=args.model, runs=args.run,
                     device=args.device, max_upload_mb=args.max_upload_mb, host=args.host,
                     maps=not args.no_maps)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"artmem explorer on http://{shown}:{args.port}/  (Ctrl+C to stop)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, **server_options())
    return 0
