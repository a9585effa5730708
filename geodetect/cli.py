"""The ``geodetect`` command: a thin layer over the library, one command per function.

Every :class:`~geodetect.errors.GeodetectError` becomes ``error: <message>``
on stderr and exit code 2, without a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings

from geodetect.errors import ConfigError, GeodetectError

EXIT_OK = 0
EXIT_ERROR = 2
EXIT_PARTIAL = 3  # some scenes failed, the others were written

_EPILOG = """\
examples:
  geodetect detectors
  geodetect detect scene.tif --detector sea-lion-counter --out lions.parquet
  geodetect detect a.tif b.tif --detector sea-lion-counter --out lions.gpkg --no-progress
  geodetect detect scenes/*.tif --detector sea-lion-counter --out run1/ --resume
  geodetect simulate rookery.tif --objects 80 --seed 1

exit codes: 0 success; 2 error, nothing written (message on stderr); 3 some scenes failed,
            the others were written (each failure on stderr); 130 interrupted; 143 terminated (SIGTERM)
"""


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's error convention: one ``error:`` line on stderr and exit code 2."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        msg = " ".join(str(message).split())
        self.exit(EXIT_ERROR, f"error: {self.prog}: {msg} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    from geodetect import __version__

    p = _Parser(
        prog="geodetect",
        description="Run detectors over georeferenced imagery and write the detections as spatial tables.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"geodetect {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log more detail to stderr")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    from geodetect._cli_analytics import register as _register_analytics

    _register_analytics(sub)
    from geodetect._cli_viz import register as _register_viz

    _register_viz(sub)

    d = sub.add_parser(
        "detect",
        help="run a detector over scenes",
        description="Run a detector over one or more scenes (any GDAL raster: GeoTIFF, COG, VRT) and write "
        "the detections, georeferenced and de-duplicated across tile seams.",
    )
    d.add_argument("scenes", nargs="+", metavar="SCENE", help="raster files")
    d.add_argument("--detector", "-d", required=True, help="detector name (see `geodetect detectors`)")
    d.add_argument(
        "--out", "-o", help="output file; format by extension: .parquet (GeoParquet), .geojson, .fgb, .gpkg, .csv. "
        "A folder (existing, ending in /, or without extension) makes a resumable run: one part per scene, "
        "a manifest.json and detections.parquet. A .tif (segmentation detectors, one scene) is the class map "
        "as a GeoTIFF on the scene's grid instead of polygons: 0 none, 1.. the classes, 255 nodata; memory "
        "does not grow with the scene. Without --out, GeoJSON goes to stdout",
    )
    d.add_argument("--resume", action="store_true", help="with a folder --out: skip the scenes already done")
    d.add_argument("--fail-fast", action="store_true", help="stop at the first bad scene (default: go on, exit 3)")
    d.add_argument("--tile-size", type=int, help="tile size in pixels (default: the detector's)")
    d.add_argument("--overlap", type=int, help="overlap between tiles in pixels (default: the detector's)")
    d.add_argument("--batch-size", type=int, default=8, help="tiles per model call (default: 8)")
    d.add_argument(
        "--bands", help="bands to feed the detector: indexes '4,3,2', or a name map 'nir=1,red=2,green=3' "
        "(default: the detector's, matched by index or band description)",
    )
    d.add_argument("-O", "--option", action="append", default=[], metavar="KEY=VALUE",
                   help="an option of the detector itself, e.g. -O grouping=three-class (see `geodetect detectors info NAME`)")
    d.add_argument("--crs", help="CRS of scenes that have none, e.g. EPSG:32633")
    d.add_argument(
        "--bounds", nargs=4, type=float, metavar=("LEFT", "BOTTOM", "RIGHT", "TOP"),
        help="placement of scenes without a geotransform, in --crs units",
    )
    d.add_argument("--crs-out", default="EPSG:4326", help="CRS of the output geometries (default: EPSG:4326)")
    d.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    d.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    d.set_defaults(func=_cmd_detect)

    ls = sub.add_parser("detectors", help="list detectors, or show one", description="List the installed detectors.")
    ls.add_argument("action", nargs="?", choices=["info", "add", "remove", "export"],
                    help="`info NAME` shows one detector in full; `add MLM.json` adds an ONNX model described by a "
                    "STAC MLM document; `remove NAME` removes one so added; `export NAME --onnx --out DIR` writes "
                    "the ONNX + MLM pair of a Keras detector")
    ls.add_argument("name", nargs="?", help="detector name (info, remove, export) or MLM document (add)")
    ls.add_argument("--onnx", action="store_true", help="export: to ONNX with its STAC MLM document")
    ls.add_argument("--out", "-o", default=".", help="export: output folder (default: the current one)")
    ls.set_defaults(func=_cmd_detectors)

    ev = sub.add_parser(
        "evaluate", help="score a detector on scenes with ground truth",
        description="Run a detector over a folder of scenes, each with <scene>_truth.geojson beside it (as "
        "`geodetect simulate` writes them), and print its metrics: count RMSE and point matching for POINTS "
        "detectors, precision/recall/F1/AP at IoU 0.5 for BOXES, IoU and pixel accuracy for SEGMENTATION, "
        "accuracy and a confusion matrix for CLASSIFICATION.",
    )
    ev.add_argument("detector", help="detector name")
    ev.add_argument("--data", required=True, help="folder of scenes and their _truth files")
    ev.add_argument("--reference", metavar="DETECTOR",
                    help="score against this detector's output on the same scenes instead of _truth files "
                    "(e.g. water-segmenter against water-expert-optical)")
    ev.add_argument("--grouping", help="classifiers: score on grouped classes, e.g. three-class for land-use-classifier")
    ev.add_argument("--bands", help="bands for the detector(s), as for `geodetect detect --bands`")
    ev.add_argument("-O", "--option", action="append", default=[], metavar="KEY=VALUE",
                    help="an option of the detector itself, as for `geodetect detect -O`")
    ev.add_argument("--iou", type=float, default=0.5, help="IoU threshold for boxes (default 0.5)")
    ev.add_argument("--radius", type=float, help="match radius in metres for points (default: the detector's merge radius)")
    ev.add_argument("--json", help="also write the headline numbers as JSON to this file")
    ev.set_defaults(func=_cmd_evaluate)

    c = sub.add_parser(
        "counts", help="per-scene, per-class counts (Kaggle sea-lion submission format)",
        description="Count detections per scene and class and write the Kaggle sea-lion submission CSV "
        "(test_id,adult_males,subadult_males,adult_females,juveniles,pups).",
    )
    c.add_argument("detections", help="detections file (.parquet, .geojson, ...)")
    c.add_argument("--out", "-o", required=True, help="submission CSV")
    c.set_defaults(func=_cmd_counts)

    s = sub.add_parser(
        "simulate", help="write synthetic scenes with ground truth",
        description="Write georeferenced synthetic scenes (GeoTIFF) with their ground truth beside them "
        "(<scene>_truth.geojson). OUT is a .tif file, or a folder for --scenes N.",
    )
    s.add_argument("out", help="output GeoTIFF, or a folder")
    s.add_argument("--kind", default="sea-lions", help="scene kind: sea-lions (default), vehicles, water, urban, land-use")
    s.add_argument("--scenes", type=int, default=1, help="number of scenes (seeds SEED, SEED+1, ...) into folder OUT")
    s.add_argument("--size", type=int, nargs=2, metavar=("W", "H"), help="pixels (default: the kind's)")
    s.add_argument("--gsd", type=float, help="metres per pixel (default: the kind's)")
    s.add_argument("--crs", help="CRS of the scene (default: the kind's)")
    s.add_argument("--center", type=float, nargs=2, metavar=("LON", "LAT"), help="scene centre (default: the kind's)")
    s.add_argument("--objects", type=int, help="number of objects (default: the kind's)")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=_cmd_simulate)
    return p


def _say(args, msg: str) -> None:
    if not getattr(args, "quiet", False):
        print(msg, file=sys.stderr)


def _is_dir_target(out: str) -> bool:
    from pathlib import Path

    p = Path(out)
    return out.endswith(("/", "\\")) or p.is_dir() or not p.suffix


def detector_options(cls) -> list[tuple[str, object]]:
    """The ``-O KEY=VALUE`` options a detector class takes: (name, default) from its ``__init__``."""
    import inspect

    try:
        sig = inspect.signature(cls.__init__)
    except (TypeError, ValueError):
        return []
    out = []
    for name, p in list(sig.parameters.items())[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        out.append((name, None if p.default is p.empty else p.default))
    return out


def _option_value(text: str):
    low = text.strip().lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _detector(args):
    """The detector name, or an instance built with the -O KEY=VALUE options."""
    if not args.option:
        return args.detector
    from geodetect.plugins import get_detector

    kwargs = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"-O {item!r}: write detector options as KEY=VALUE, e.g. -O grouping=three-class")
        if key.strip() in kwargs:
            raise ConfigError(f"-O {key.strip()}: the option is given twice")
        kwargs[key.strip()] = _option_value(value)
    cls = get_detector(args.detector)
    known = detector_options(cls)
    names = [n for n, _ in known]
    have = ", ".join(f"{n}={d!r}" for n, d in known) or "none"
    unknown = [k for k in kwargs if k not in names]
    if unknown:
        raise ConfigError(f"detector {args.detector!r} has no option {', '.join(map(repr, unknown))}; "
                          f"its options (-O KEY=VALUE, defaults shown): {have}")
    try:
        return cls(**kwargs)
    except GeodetectError:
        raise
    except (TypeError, ValueError) as exc:
        shown = " ".join(f"-O {k}={v}" for k, v in kwargs.items())
        raise ConfigError(f"detector {args.detector!r} refuses {shown} ({' '.join(str(exc).split())}); "
                          f"its options, defaults shown: {have}") from None


def _cmd_detect(args) -> int:
    from geodetect.frames import check_output_path, write
    from geodetect.pipeline import detect

    if args.bounds and not args.crs:
        raise ConfigError("--bounds needs --crs to say what the numbers are in")
    options = dict(
        tile_size=args.tile_size, overlap=args.overlap, batch_size=args.batch_size, crs_out=args.crs_out,
        crs=args.crs, bounds=tuple(args.bounds) if args.bounds else None, bands=args.bands,
        progress=not (args.no_progress or args.quiet),
    )
    if args.out and args.out.lower().endswith((".tif", ".tiff")):
        return _detect_to_raster(args, options)
    if args.out and _is_dir_target(args.out):
        return _detect_to_dir(args, options)
    if args.resume:
        raise ConfigError("--resume needs --out to be a folder (a resumable run writes one part per scene)")
    if args.out:
        check_output_path(args.out)  # fail before a long run, not after it
    dets = detect(args.scenes, _detector(args), on_error="raise" if args.fail_fast else "skip", **options)
    stats = dets.attrs.get("geodetect", [])
    failed = [st for st in stats if st["status"] == "failed"]
    for st in stats:
        if st["status"] == "failed":
            continue
        _say(
            args,
            f"{st['path']}: {st['detections']} detections from {st['tiles_run']} of {st['tiles_total']} tiles "
            f"({st['tiles_nodata']} nodata tiles skipped, {st['duplicates_removed']} seam duplicates merged, "
            f"{st['on_nodata_removed']} dropped on or beside nodata)",
        )
        for note in st["notes"]:
            _say(args, f"note: {st['path']}: {note}")
    for st in failed:
        print(f"error: {' '.join(st['error'].split())}", file=sys.stderr)
    if len(failed) == len(stats):
        return EXIT_ERROR
    if args.out:
        path = write(dets, args.out)
        _say(args, f"wrote {len(dets)} detections to {path}")
    else:
        sys.stdout.write(dets.to_json(drop_id=True, default=str))  # a STAC item's datetime column as ISO text
        sys.stdout.write("\n")
    if failed:
        _say(args, f"{len(failed)} of {len(stats)} scenes failed (listed above); exit code {EXIT_PARTIAL}")
        return EXIT_PARTIAL
    return EXIT_OK


def _detect_to_raster(args, options) -> int:
    from geodetect.pipeline import segment

    if args.resume:
        raise ConfigError("--resume is for a folder --out; a class raster (.tif) is written in one go")
    if len(args.scenes) != 1:
        raise ConfigError(f"{args.out}: a class raster holds one scene, got {len(args.scenes)}: run once per scene, "
                          "or give --out a .parquet or a folder for the detections of many")
    if args.crs_out != "EPSG:4326":
        raise ConfigError(f"{args.out}: a class raster is written on the scene's own grid and CRS, so --crs-out does "
                          "not apply; reproject the file afterwards (e.g. gdalwarp -t_srs ...)")
    opts = {k: v for k, v in options.items() if k != "crs_out"}
    res = segment(args.scenes[0], _detector(args), args.out, **opts)
    st = res["stats"]
    total = max(1, res["grid"][0] * res["grid"][1])
    shown = ", ".join(f"{k} {v:,} px ({100 * v / total:.1f} %)" for k, v in res["pixels"].items() if v or k != "nodata")
    _say(args, f"{st['path']}: {st['tiles_run']} of {st['tiles_total']} tiles run ({st['tiles_nodata']} nodata tiles "
               f"skipped); {shown}")
    for note in st["notes"]:
        _say(args, f"note: {st['path']}: {note}")
    _say(args, f"wrote the class raster {res['path']} ({res['grid'][0]} x {res['grid'][1]} px)")
    return EXIT_OK


def _detect_to_dir(args, options) -> int:
    from geodetect.runs import run

    summary = run(args.scenes, _detector(args), args.out, resume=args.resume, fail_fast=args.fail_fast, **options)
    for sid, err in summary.failed.items():
        print(f"error: {' '.join(err.split())}", file=sys.stderr)
    _say(args, f"{len(summary.done)} scenes done, {len(summary.skipped)} already done (resumed), "
               f"{len(summary.failed)} failed; manifest: {summary.out_dir}/manifest.json")
    if summary.output:
        _say(args, f"wrote {summary.detections} detections to {summary.output}")
    if summary.failed:
        return EXIT_PARTIAL if (summary.done or summary.skipped) else EXIT_ERROR
    return EXIT_OK


def _cmd_detectors(args) -> int:
    from geodetect.plugins import get_detector, list_detectors

    if args.action in ("add", "remove", "export"):
        from geodetect._cli_models import run_models_command

        return run_models_command(args, _say)
    if args.action == "info":
        if not args.name:
            raise ConfigError("`geodetect detectors info` needs a detector name")
        rows = {r.name: r for r in list_detectors(load=True)}
        row = rows.get(args.name)
        if row is None:
            get_detector(args.name)  # raises the standard not-found error
        if row.error:
            raise GeodetectError(row.error)
        spec = row.spec
        fields = [
            ("name", spec.name), ("version", spec.version), ("package", f"{row.package} {row.package_version}".strip()),
            ("target", row.target), ("task", spec.task.name), ("classes", ", ".join(spec.classes)),
            ("bands", ", ".join(map(str, spec.bands))), ("tile size", spec.tile_size), ("overlap", spec.overlap),
            ("GSD (m)", spec.gsd_m if spec.gsd_m is not None else "any"), ("scaling", spec.scaling),
            ("weights sha256", spec.weights_sha256 or "-"), ("licence", spec.licence or "-"),
            ("description", spec.description or "-"),
        ]
        try:
            from geodetect.plugins import get_detector

            opts = detector_options(get_detector(args.name))
        except GeodetectError:
            opts = []
        fields.append(("options (-O)", ", ".join(f"{n}={d!r}" for n, d in opts) or "none"))
        for k, v in fields:
            print(f"{k + ':':16} {v}")
        return EXIT_OK
    rows = list_detectors(load=True)
    if not rows:
        print("no detectors installed")
        return EXIT_OK
    header = ("NAME", "TASK", "CLASSES", "BANDS", "TILE", "GSD_M", "VERSION", "PACKAGE")
    table = []
    for r in rows:
        pkg = f"{r.package} {r.package_version}".strip()
        if r.error:
            table.append((r.name, "BROKEN", r.error, "", "", "", "", pkg))
            continue
        s = r.spec
        table.append((
            s.name, s.task.name, ",".join(s.classes), ",".join(map(str, s.bands)),
            f"{s.tile_size}/{s.overlap}", "any" if s.gsd_m is None else f"{s.gsd_m:g}", s.version, pkg,
        ))
    widths = [max(len(str(x)) for x in col) for col in zip(header, *[t for t in table if t[1] != "BROKEN"] or [header])]
    widths[0] = max(len(t[0]) for t in [header] + table)
    for t in [header] + table:
        if t[1] == "BROKEN":
            print(f"{t[0]:{widths[0]}}  BROKEN  {t[2]}")
        else:
            print("  ".join(f"{str(x):{w}}" for x, w in zip(t, widths)).rstrip())
    return EXIT_OK


def _cmd_evaluate(args) -> int:
    import json

    from geodetect.evaluate import evaluate

    if args.json:
        _check_json_target(args.json)  # before the run, not after it
    ev = evaluate(_detector(args), args.data, iou=args.iou, radius_m=args.radius, reference=args.reference,
                  grouping=args.grouping, bands=args.bands)
    print(ev.to_text())
    if args.json:
        from pathlib import Path

        from geodetect._atomic import atomic_output

        doc = {"detector": ev.detector, "task": ev.task, "scenes": ev.n_scenes, **ev.summary}
        with atomic_output(args.json, what="the evaluation JSON") as tmp:
            Path(tmp).write_text(json.dumps(_json_safe(doc), indent=1, allow_nan=False))
    return EXIT_OK


def _check_json_target(path: str) -> None:
    from pathlib import Path

    from geodetect.errors import OutputError

    p = Path(path)
    if p.is_dir() or path.endswith(("/", "\\")):
        raise OutputError(f"{path}: is a folder; --json takes a file name such as {p / 'scores.json'}")
    parent = p.parent if str(p.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise OutputError(f"{path}: {parent} is a file, not a folder")
    anc = parent
    while not anc.exists():
        anc = anc.parent
    if not os.access(anc, os.W_OK):
        raise OutputError(f"{path}: cannot write in {anc} (permission denied)")


def _json_safe(value):
    """NaN and infinities have no JSON spelling: write them as null (the text report says why)."""
    import math

    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _cmd_counts(args) -> int:
    from geodetect.counts import kaggle_submission

    if not str(args.out).lower().endswith(".csv") or os.path.isdir(args.out):
        raise ConfigError(f"{args.out}: the Kaggle submission is a CSV file; give --out a name ending in .csv")
    table = kaggle_submission(args.detections, args.out)
    print(f"wrote {len(table)} scenes to {args.out}", file=sys.stderr)
    return EXIT_OK


def _cmd_simulate(args) -> int:
    from pathlib import Path

    from geodetect.frames import write
    from geodetect.simulate import make_scene

    kw = {k: v for k, v in dict(size=tuple(args.size) if args.size else None, gsd_m=args.gsd, crs=args.crs,
                                center=tuple(args.center) if args.center else None,
                                n_objects=args.objects).items() if v is not None}
    if args.scenes < 1:
        raise ConfigError(f"--scenes must be >= 1, got {args.scenes}")
    if args.seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {args.seed}")
    from geodetect.simulate import KINDS

    if args.kind not in KINDS:
        raise ConfigError(f"unknown scene kind {args.kind!r}; choose one of {', '.join(sorted(KINDS))}")
    out = Path(args.out)
    if out.suffix and args.scenes == 1 and out.suffix.lower() not in (".tif", ".tiff"):
        raise ConfigError(f"{out}: simulate writes GeoTIFF; give a name ending in .tif, or a folder")
    if out.exists() and out.is_dir() and out.suffix and args.scenes == 1:
        raise ConfigError(f"{out}: is a folder; give a .tif file name")
    if args.scenes > 1 or not out.suffix:
        targets = [out / f"{args.kind}-{args.seed + k}.tif" for k in range(args.scenes)]
    else:
        targets = [out]
    for k, target in enumerate(targets):
        sim = make_scene(target, kind=args.kind, seed=args.seed + k, **kw)
        truth = target.with_name(target.stem + "_truth.geojson")
        write(sim.truth, truth)
        print(f"wrote {sim.path} ({sim.width}x{sim.height}, {sim.crs}) and {truth} ({len(sim.truth)} objects)",
              file=sys.stderr)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``geodetect`` console script."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up chatter is not for users
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_ERROR
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    logging.getLogger("rasterio").setLevel(logging.CRITICAL)  # GDAL noise; our errors say what happened
    if not args.verbose:
        warnings.simplefilter("ignore")
    previous = _on_sigterm()
    try:
        return args.func(args)
    except GeodetectError as exc:
        msg = " ".join(str(exc).split())
        print(f"error: {msg}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except _Terminated:
        print("error: terminated (SIGTERM)", file=sys.stderr)
        return 143
    except BrokenPipeError:
        return EXIT_OK
    except MemoryError:
        print("error: out of memory; use a smaller --tile-size or --batch-size, or fewer scenes at once", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - last resort: a bug must not show users a traceback
        if args.verbose:
            raise
        msg = " ".join(str(exc).split())[:300]
        print(f"error: internal error ({type(exc).__name__}: {msg}); this is a bug in geodetect: please report it "
              "with the output of the same command run with -v", file=sys.stderr)
        return EXIT_ERROR
    finally:
        if previous is not None:
            import signal

            signal.signal(signal.SIGTERM, previous)


class _Terminated(BaseException):
    """Raised in the main thread on SIGTERM, so that ``finally`` blocks remove scratch files and temporaries."""


def _on_sigterm():
    """Turn SIGTERM into :class:`_Terminated` for the duration of a command; returns the previous handler."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise _Terminated()

    try:
        return signal.signal(signal.SIGTERM, handler)
    except (ValueError, OSError):
        return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
