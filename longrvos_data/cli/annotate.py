"""Annotation verbs: ``annotate init|add|relink|validate`` (calls `annotation.project`)."""
from __future__ import annotations

from pathlib import Path

from .common import add_engine_args, engine_options, print_problems, skipped


def _add_annotate(sub) -> None:
    """Declare the ``annotate`` verb group on ``sub`` (an argparse subparsers object)."""
    from ..loaders import LOADERS

    p = sub.add_parser("annotate", help="annotation projects: create from a dataset, add videos, relink, validate")
    verbs = p.add_subparsers(dest="annotate_verb", required=True)
    i = verbs.add_parser("init", help="create PROJECT from a dataset in any readable format (and predictions)")
    i.add_argument("project", type=Path, help="the project folder to create")
    i.add_argument("--import", dest="src", type=Path, required=True, help="dataset root or one split folder")
    i.add_argument("--format", choices=list(LOADERS), help="skip detection and read SRC as this format")
    i.add_argument("--split", help="import only this split")
    i.add_argument("--pred", type=Path, help="predictions (folder or RLE JSON, as eval reads) to pre-annotate with")
    i.add_argument("--pred-name", help="provenance model:NAME of the predictions (default: PRED's folder name)")
    i.add_argument("--overwrite", action="store_true", help="replace an existing project")
    i.add_argument("--user", help="who imports (default: $LONGRVOS_USER or the login name)")
    i.add_argument("--on-error", choices=["raise", "skip"], default="raise",
                   help="skip bad videos with a warning instead of stopping")
    a = verbs.add_parser("add", help="add new, unannotated videos from video files or frame folders")
    a.add_argument("project", type=Path)
    a.add_argument("videos", type=Path, nargs="+", help="video files (decoded to JPEG frames) or frame folders")
    a.add_argument("--fps", type=float, help="sample video files at F frames per second (default: their own rate)")
    a.add_argument("--split", default="train", help="the split the videos join (default: train)")
    r = verbs.add_parser("relink", help="the frames under OLD are now under NEW")
    r.add_argument("project", type=Path)
    r.add_argument("old", help="the root recorded at import")
    r.add_argument("new", type=Path, help="where those frames are now")
    s = verbs.add_parser("serve", help="the annotation web app on PROJECT (open the printed URL in a browser)")
    s.add_argument("project", type=Path)
    add_engine_args(s)
    s.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; any other needs a token, made unless --token)")
    s.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free port)")
    s.add_argument("--user", help="who edits (history, undo; default: $LONGRVOS_USER or the login name)")
    s.add_argument("--token", help="require this token (default: none on 127.0.0.1, a random one elsewhere)")
    s.add_argument("--allow-host", action="append", default=[],
                   help="another name this server is reached by (a Host header to accept), e.g. behind a proxy")
    s.add_argument("--export-dir", type=Path, help="where exports go (default: PROJECT-exports/ beside PROJECT)")
    s.add_argument("--max-body-mb", type=float, default=16, help="largest request body in MiB (default 16)")
    v = verbs.add_parser("validate", help="list missing frames (with their expected path) and check the database")
    v.add_argument("project", type=Path)
    v.add_argument("--json", action="store_true", help="print the problems as JSON")


def _run_annotate(args) -> int:
    """Run the parsed ``annotate`` verb; returns the exit status (1: validate found errors)."""
    from ..annotation import project

    if args.annotate_verb == "init":
        report = project.init_project(args.project, args.src, format=args.format, split=args.split, pred=args.pred,
                                      pred_name=args.pred_name, overwrite=args.overwrite, user=args.user,
                                      on_error=args.on_error)
        splits = ", ".join(f"{s} {n}" for s, n in report.videos.items())
        pred = f"; {report.predicted_cells} cell(s) pre-annotated as {report.provenance}" if report.provenance else ""
        print(f"{sum(report.videos.values())} video(s) ({splits}) imported into {args.project}{pred}")
        return skipped("annotate init", report.problems, "not imported")
    if args.annotate_verb == "add":
        added = project.add_videos(args.project, args.videos, fps=args.fps, split=args.split)
        print(f"{len(added)} video(s) added to {args.project} split {args.split}: {', '.join(added)}")
        return 0
    if args.annotate_verb == "relink":
        moved = project.relink(args.project, args.old, args.new)
        print(f"{moved} video(s) now read their frames from {args.new}")
        return 0
    if args.annotate_verb == "serve":
        return _serve(args)
    return print_problems(project.validate_project(args.project), as_json=args.json)


def _serve(args) -> int:
    from ..annotation import server
    from ..annotation.project import default_user
    from ..annotation.propagate import check_engine_options

    options = engine_options(args)
    check_engine_options(args.engine, options)
    token = args.token or (None if args.host == server.LOOPBACK else server.make_token())
    sock = server.listen(args.host, args.port)
    config = server.ServerConfig(args.project, engine=args.engine, engine_options=options, host=args.host,
                                 port=sock.getsockname()[1], user=args.user or default_user(), token=token,
                                 export_dir=args.export_dir, max_body=int(args.max_body_mb * 2**20),
                                 allow_hosts=tuple(args.allow_host))
    shown = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{shown}:{config.port}/" + (f"?token={token}" if token else "")
    print(f"annotating {args.project} as {config.user} with the {args.engine} engine: open {url}  (Ctrl+C stops)",
          flush=True)
    try:
        server.serve(config, sock=sock)
    except KeyboardInterrupt:
        pass
    return 0


VERBS = {"annotate": (_add_annotate, _run_annotate)}
