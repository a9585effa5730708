"""``geodetect detectors add | remove | export``: ONNX models described by STAC MLM documents."""

from __future__ import annotations

from geodetect.errors import ConfigError


def run_models_command(args, say) -> int:
    """Run ``detectors add MLM.json``, ``detectors remove NAME`` or ``detectors export NAME --onnx``."""
    if not args.name:
        what = "an MLM document" if args.action == "add" else "a detector name"
        raise ConfigError(f"`geodetect detectors {args.action}` needs {what}")
    if args.action == "add":
        from geodetect.mlm import add_saved_model

        spec, where = add_saved_model(args.name)
        say(args, f"added {spec.name} {spec.version} ({spec.task.name}, classes {', '.join(spec.classes)}, "
                  f"bands {', '.join(map(str, spec.bands))}); checked on random tiles; listed in {where}")
        return 0
    if args.action == "remove":
        from geodetect.mlm import remove_saved_model

        say(args, f"removed {remove_saved_model(args.name)}")
        return 0
    if not args.onnx:
        raise ConfigError("`geodetect detectors export` needs a format: --onnx")
    from geodetect.export import export_onnx

    onnx_path, doc = export_onnx(args.name, args.out)
    say(args, f"wrote {onnx_path} and its MLM document {doc}; use it with `geodetect detectors add {doc}`")
    return 0
