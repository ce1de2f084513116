"""Generates the contract's Python stubs from proto/handoff/v1 with grpcio-tools.

    python build_stubs.py [--out DIR]    (default: gen/ beside this file, git-ignored)

Then put DIR on PYTHONPATH: `from handoff.v1 import events_pb2, exchange_pb2_grpc`."""
import argparse
import pathlib
import shutil
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
PROTO = HERE.parent.parent / "proto"


def main() -> int:
    parser = argparse.ArgumentParser(description="Generate the Handoff stubs.")
    parser.add_argument("--proto", type=pathlib.Path, default=PROTO, help="the repo's proto/ dir")
    parser.add_argument("--out", type=pathlib.Path, default=HERE / "gen", help="where to write them")
    args = parser.parse_args()
    files = sorted(str(p) for p in args.proto.glob("handoff/v1/*.proto"))
    if not files:
        sys.exit(f"no .proto files in {args.proto}/handoff/v1")
    shutil.rmtree(args.out / "handoff", ignore_errors=True)   # no stubs of removed files
    args.out.mkdir(parents=True, exist_ok=True)
    out = str(args.out)
    return subprocess.call([sys.executable, "-m", "grpc_tools.protoc", f"-I{args.proto}",
                            f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}",
                            *files])


if __name__ == "__main__":
    sys.exit(main())
