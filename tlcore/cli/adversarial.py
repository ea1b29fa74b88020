"""``attack``, ``robustness``, ``corruptions``, ``harden`` and ``ideal``: probing a trained model, and hardening
it."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from ..io.errors import TLError
from ..jobs.events import REPORT_EVERY
from .options import add_settings, config_from_args, floats, job_options
from .progress import callbacks, phase_callback, run_with_events

__all__ = ["add_parsers", "COMMANDS"]

_ATTACK = ("method", "epsilon", "steps", "step_size", "random_start", "seed")


def add_parsers(sub) -> None:
    """The ``attack``, ``robustness``, ``corruptions``, ``harden`` and ``ideal`` commands."""
    from ..adversarial.attacks import AttackConfig
    from ..adversarial.corruptions import CORRUPTION_SETTINGS, CorruptionConfig
    from ..adversarial.defence import CURVE_RENAMES, CURVE_SETTINGS, DEFAULT_EPSILONS, HARDEN_SETTINGS, HardenConfig
    from ..analysis.explain import IDEAL_SETTINGS, IdealImageConfig

    p = sub.add_parser("attack", help="attack a run's model with adversarial perturbations (FGSM or PGD)")
    p.add_argument("run_dir")
    p.add_argument("data", help="folder (or .zip) of class folders")
    add_settings(p, AttackConfig, _ATTACK)
    p.add_argument("--target", metavar="CLASS", help="targeted attack: push every image towards CLASS")
    p.add_argument("--out", metavar="DIR", help="save the adversarial images (PNG, per true class)")
    job_options(p)

    epsilons = ",".join(f"{e:g}" for e in DEFAULT_EPSILONS)
    p = sub.add_parser("robustness", help="accuracy against epsilon (FGSM and PGD) on a run's held-out images")
    p.add_argument("run_dir")
    p.add_argument("--epsilons", type=floats, default=list(DEFAULT_EPSILONS), help=f"default {epsilons}")
    add_settings(p, HardenConfig, CURVE_SETTINGS, renames=CURVE_RENAMES)
    job_options(p)

    p = sub.add_parser("corruptions", help="accuracy under everyday corruptions (blur, noise, brightness, contrast, "
                       "JPEG, rotation, crop shift) at three severities each")
    p.add_argument("run_dir")
    p.add_argument("data", nargs="?", help="folder (or .zip) of class folders (default: the run's held-out photos, "
                   "its test split, else its validation split)")
    add_settings(p, CorruptionConfig, CORRUPTION_SETTINGS)
    job_options(p)

    p = sub.add_parser("harden", help="adversarial training of a run's head (FGSM images mixed in), curves before/after")
    p.add_argument("run_dir")
    p.add_argument("--out", help="run directory to write (default: RUN_DIR-hardened)")
    add_settings(p, HardenConfig, HARDEN_SETTINGS)
    p.add_argument("--epsilons", type=floats, default=list(DEFAULT_EPSILONS), help=f"curve points, default {epsilons}")
    job_options(p)

    p = sub.add_parser("ideal", help="grow the image a run's model finds most typical of a class")
    p.add_argument("run_dir")
    p.add_argument("--class", dest="class_name", required=True, metavar="CLASS")
    add_settings(p, IdealImageConfig, IDEAL_SETTINGS)
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the snapshots (PNG) and the final image")
    job_options(p)


def _attack(args):
    from dataclasses import replace

    from ..adversarial.attacks import AttackConfig, attack_data
    from ..models.run_files import run_classes

    config = config_from_args(AttackConfig, args, _ATTACK)
    if args.target is not None:
        classes = run_classes(args.run_dir)
        if args.target not in classes:
            raise TLError(f"target class {args.target!r} is not one of the model's classes ({', '.join(classes)})")
        config = replace(config, target=classes.index(args.target))
    events, _, _, _ = callbacks(args)

    def on_progress(step, logs):
        if events:
            events({"type": "attack", **logs})

    def report(r):
        what = f"{r['method']} eps {r['epsilon']:g}" + (f" towards {r['target']!r}" if r["target"] else "")
        print(f"{what}: accuracy {r['clean_accuracy']:.3f} -> {r['adversarial_accuracy']:.3f} on {r['n']} images; "
              f"success rate {r['success_rate']:.3f}; mean L-inf {r['mean_linf']:.4f}; {r['ms_per_image']:.0f} ms/image"
              + (f"; images in {r['out']}" if r["out"] else ""))
        for s in r["skipped"]:
            print(f"skipped {s['path']}: {s['reason']}", file=sys.stderr)

    return run_with_events(args, events, {"command": "attack"}, lambda: attack_data(
        args.run_dir, args.data, config, out=args.out, on_progress=on_progress), report)


def _print_curve(curve: dict) -> None:
    print("epsilon  " + "  ".join(f"{e:>6g}" for e in curve["epsilons"]))
    for method in ("fgsm", "pgd"):
        if method in curve:
            print(f"{method:<8} " + "  ".join(f"{a:>6.3f}" for a in curve[method]))


def _robustness(args):
    from ..adversarial.defence import run_robustness

    events, _, _, _ = callbacks(args)

    def on_progress(step, logs):
        if events:
            events({"type": "robustness", "step": step, "total": 2 * len(args.epsilons), **logs})

    def report(r):
        print(f"accuracy on {r['n']} {r['split']} images (PGD {r['steps']} steps):")
        _print_curve(r)

    return run_with_events(args, events, {"command": "robustness"}, lambda: run_robustness(
        args.run_dir, args.epsilons, steps=args.curve_steps, limit=args.curve_images, on_progress=on_progress,
        on_phase=phase_callback(args, events)), report)


def _corruptions(args):
    from ..adversarial.corruptions import CORRUPTION_SETTINGS, SEVERITIES, CorruptionConfig, run_corruptions

    config = config_from_args(CorruptionConfig, args, CORRUPTION_SETTINGS)
    events, _, _, _ = callbacks(args)

    def on_progress(step, logs):
        if events:
            events({"type": "corruption", "step": step, "total": 3 * len(SEVERITIES), **logs})

    def report(r):
        where = "photos of the folder" if r["source"] == "folder" else f"{r['source']} photos of the run"
        print(f"accuracy on {r['n']} {where}: clean {r['clean_accuracy']:.3f}, mean under corruptions "
              f"{r['mean_accuracy']:.3f} ({r['seconds']:.1f} s)")
        print(f"{'severity':<11} " + "  ".join(f"{s:>6}" for s in (1, 2, 3)))
        for name in SEVERITIES:
            row = {p["severity"]: p["accuracy"] for p in r["results"] if p["corruption"] == name}
            print(f"{name:<11} " + "  ".join(f"{row[s]:>6.3f}" for s in (1, 2, 3)))
        for s in r["skipped"]:
            print(f"skipped {s['path']}: {s['reason']}", file=sys.stderr)

    return run_with_events(args, events, {"command": "corruptions"}, lambda: run_corruptions(
        args.run_dir, args.data, config, on_progress=on_progress, on_phase=phase_callback(args, events)), report)


def _harden(args):
    from ..adversarial.defence import HARDEN_SETTINGS, HardenConfig, harden

    config = config_from_args(HardenConfig, args, HARDEN_SETTINGS)
    events, _, on_epoch, should_stop = callbacks(args)

    def report(r):
        for name in ("before", "after"):
            print(f"{name}:")
            _print_curve(r[name])
        print(f"saved to {r['run_dir']}")

    start = {"command": "harden", "epochs": config.epochs, "fine_tune_epochs": 0}
    return run_with_events(args, events, start, lambda: harden(
        args.run_dir, config, out=args.out, epsilons=args.epsilons, on_epoch=on_epoch, should_stop=should_stop,
        on_phase=phase_callback(args, events)), report)


def _ideal(args):
    from PIL import Image

    from ..analysis.explain import ideal_class_image
    from ..models.run import load_run
    from ..models.run_files import run_classes

    classes = run_classes(args.run_dir)
    if args.class_name not in classes:
        raise TLError(f"class {args.class_name!r} is not one of the model's classes ({', '.join(classes)})")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    events, _, _, should_stop = callbacks(args)
    snapshots = []
    last = [float("-inf")]

    def on_step(step, logs):
        image = logs.get("image")
        if image is not None:  # a snapshot: save it first, then say where it is
            path = out / f"step_{step:04d}.png"
            Image.fromarray(image).save(path)
            snapshots.append(str(path))
        # Every fifth step, and any step after a quarter of a second without one (a big backbone's steps are slow).
        now = time.monotonic()
        if events and (image is not None or step % 5 == 0 or now - last[0] >= REPORT_EVERY):
            last[0] = now
            events({"type": "ideal", "step": step, "total": args.steps,
                    **{k: float(v) for k, v in logs.items() if k != "image"},
                    **({"image": snapshots[-1]} if image is not None else {})})

    def work():
        result = ideal_class_image(load_run(args.run_dir), classes.index(args.class_name), steps=args.steps,
                                   tv_weight=args.tv_weight, seed=args.seed, on_step=on_step,
                                   should_stop=should_stop)
        final = out / "ideal.png"
        Image.fromarray(result["image"]).save(final)
        last = result["history"][-1] if result["history"] else {}
        return {"class": args.class_name, "image": str(final), "snapshots": snapshots, "steps": len(result["history"]) - 1,
                "class_score": last.get("class_score"), "probability": last.get("probability")}

    def report(r):
        print(f"{r['class']}: probability {r['probability']:.3f} after {r['steps']} steps; image {r['image']}")

    return run_with_events(args, events, {"command": "ideal"}, work, report)


COMMANDS = {"attack": _attack, "robustness": _robustness, "corruptions": _corruptions, "harden": _harden,
            "ideal": _ideal}
