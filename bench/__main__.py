"""``python -m bench all``: every number in docs/benchmarks.md, in one command.

    python -m bench all            # mem0 env + LoCoMo + speed --scale (1M) + the same on PostgreSQL
                                   # (speed-postgres) + fusion study + server
    python -m bench all --quick    # the CI subset: quick LoCoMo and quick speed
    python -m bench locomo [...]   # same as python -m bench.locomo
    python -m bench speed [...]    # same as python -m bench.speed
    python -m bench fusion [...]   # same as python -m bench.fusion_study
    python -m bench retrieval [...]  # same as python -m bench.retrieval (own sets + LoCoMo, vs mem0)
    python -m bench mem0-env       # only create the mem0 2.2.1 virtual environment

Exits non-zero when any benchmark reports a problem (crash, empty result, broken metric).
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    if command == "locomo":
        from bench import locomo

        return locomo.main(rest)
    if command == "speed":
        from bench import speed

        return speed.main(rest)
    if command == "fusion":
        from bench import fusion_study

        return fusion_study.main(rest)
    if command == "retrieval":
        from bench import retrieval

        return retrieval.main(rest)
    if command == "mem0-env":
        from bench.mem0_env import ensure_env

        print(ensure_env(quiet=False))
        return 0
    if command == "all":
        from bench import locomo, speed
        from bench.mem0_env import ensure_env

        quick = "--quick" in rest
        ensure_env(quiet=False)
        codes = [locomo.main(["--quick"] if quick else [])]
        if quick:
            codes.append(speed.main(["--quick"]))
        else:
            from bench import fusion_study, server
            from bench.common import RESULTS

            scale = [] if "--no-scale" in rest else ["--scale"]
            codes.append(speed.main(scale))
            postgres = ["--systems", "engram,engram-pg", "--name", "speed-postgres"]
            codes.append(speed.main([*postgres, *scale]))
            codes.append(fusion_study.main([]))
            server.main(["--json", str(RESULTS / "server.json")])  # raises on failure
            codes.append(0)
        return max(codes)
    print(f"unknown command {command!r}\n{__doc__}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
